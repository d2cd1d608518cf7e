"""``spectune data check``: validate a dataset with the training loader and summarise it.

Besides counts, a content-only kNN Recall@20 per modality, next to random features and
popularity, tells whether the feature rows belong to the right items (a shifted or shuffled
table scores like random): per user, profile = mean of the train items' feature rows (centred
over items, rows L2-normalised); items scored by dot product, train items masked, ties to the
lower itemID; Recall@20 on the test split, averaged over users with a test item.

The kNN check is skipped on fewer than 2 x 20 = 40 items: the top 20 are then over half of all
items (and more of a user's unseen ones), so random features score about as high as real ones,
and "no better than random" would flag sound features.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from spectune.datasets.mmrec import Dataset, Split, load_dataset

logger = logging.getLogger(__name__)

TOP_K = 20
MIN_KNN_ITEMS = 2 * TOP_K  # fewer items: Recall@20 cannot tell features from noise
RANDOM_DIM = 384
RANDOM_SEED = 0
_USER_BATCH = 512

ScoreFunction = Callable[[np.ndarray], np.ndarray]  # user ids -> float [len(users), n_items]


@dataclass(frozen=True)
class ModalityStats:
    name: str
    dim: int
    duplicate_rows: int  # items whose feature row equals an earlier item's row
    zero_rows: int


@dataclass(frozen=True)
class KnnRecalls:
    """Content-only kNN Recall@20 on the test split, and the two baselines."""

    modalities: tuple[tuple[str, float], ...]  # (name, recall) in file order
    random: float  # the same kNN with seeded N(0, 1) features
    popularity: float  # items ranked by train interaction count


@dataclass(frozen=True)
class DatasetStats:
    name: str
    path: Path
    n_users: int
    n_items: int
    split_sizes: tuple[int, int, int]  # unique (user, item) pairs: train, valid, test
    dropped_eval_users: int
    modalities: tuple[ModalityStats, ...]
    knn: KnnRecalls | None  # None when skipped
    knn_skipped: str | None  # why the kNN check was skipped (too few items), else None
    users_evaluated: int

    @property
    def n_interactions(self) -> int:
        return sum(self.split_sizes)

    @property
    def density(self) -> float:
        return self.n_interactions / (self.n_users * self.n_items)


def check_dataset(folder: Path) -> DatasetStats:
    """Load ``folder`` (``<data root>/<name>``) with every check of training; DataError if bad."""
    dataset = load_dataset(folder.name, folder.parent)
    modalities = tuple(
        ModalityStats(
            name=name,
            dim=int(table.shape[1]),
            duplicate_rows=len(table) - len(np.unique(table, axis=0)),
            zero_rows=int(np.count_nonzero(~table.any(axis=1))),
        )
        for name, table in dataset.features.items()
    )
    skipped = knn_skip_reason(dataset.n_items)
    return DatasetStats(
        name=dataset.name,
        path=folder,
        n_users=dataset.n_users,
        n_items=dataset.n_items,
        split_sizes=(len(dataset.train), len(dataset.valid), len(dataset.test)),
        dropped_eval_users=dataset.dropped_eval_users,
        modalities=modalities,
        knn=None if skipped else _knn_recalls(dataset),
        knn_skipped=skipped,
        users_evaluated=len(np.unique(dataset.test.users)),
    )


def knn_skip_reason(n_items: int) -> str | None:
    """Why the kNN check says nothing on ``n_items`` items, or None when it is meaningful."""
    if n_items >= MIN_KNN_ITEMS:
        return None
    return (
        f"{n_items} items, fewer than {MIN_KNN_ITEMS} (2 x {TOP_K}): the top {TOP_K} would "
        "hold over half of all items, so even random features would score high"
    )


def _knn_recalls(dataset: Dataset) -> KnnRecalls:
    noise = np.random.default_rng(RANDOM_SEED).standard_normal((dataset.n_items, RANDOM_DIM))
    popularity = np.bincount(dataset.train.items, minlength=dataset.n_items).astype(np.float64)
    return KnnRecalls(
        modalities=tuple(
            (name, knn_recall(table, dataset)) for name, table in dataset.features.items()
        ),
        random=knn_recall(noise, dataset),
        popularity=_recall(dataset, lambda users: np.tile(popularity, (len(users), 1))),
    )


def knn_recall(features: np.ndarray, dataset: Dataset) -> float:
    """Content-only kNN Recall@20 of one feature table (see the module docstring)."""
    table = features.astype(np.float64)
    table -= table.mean(axis=0)
    norms = np.linalg.norm(table, axis=1, keepdims=True)
    table /= np.where(norms > 0, norms, 1.0)
    train = _matrix(dataset.train, dataset.n_users, dataset.n_items)
    counts = np.asarray(train.sum(axis=1)).ravel()
    profiles = (train @ table) / np.maximum(counts, 1)[:, None]
    return _recall(dataset, lambda users: profiles[users] @ table.T)


def _recall(dataset: Dataset, scores_of: ScoreFunction) -> float:
    train = _matrix(dataset.train, dataset.n_users, dataset.n_items)
    test = _matrix(dataset.test, dataset.n_users, dataset.n_items)
    users = np.unique(dataset.test.users)
    total = 0.0
    for start in range(0, len(users), _USER_BATCH):
        batch = users[start : start + _USER_BATCH]
        scores = scores_of(batch)
        scores[train[batch].toarray() > 0] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :TOP_K]
        relevant = test[batch].toarray() > 0
        hits = np.take_along_axis(relevant, top, axis=1).sum(axis=1)
        total += float((hits / relevant.sum(axis=1)).sum())
    return total / len(users)


def _matrix(split: Split, n_users: int, n_items: int) -> sp.csr_matrix:
    ones = np.ones(len(split), dtype=np.float64)
    return sp.csr_matrix((ones, (split.users, split.items)), shape=(n_users, n_items))
