"""Deterministic synthetic datasets with learnable structure, for tests, smoke runs and benchmarks.

Items fall into topic clusters; each user prefers a few clusters (sparse Dirichlet) and picks
items inside a cluster by a Zipf-like popularity, so a personalised recommender beats
popularity. Feature tables are noisy linear maps of latent item vectors centred on their
cluster, so kNN graphs link items of the same cluster.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from spectune.datasets.inter_file import ITEM_COLUMN, LABEL_COLUMN, USER_COLUMN
from spectune.datasets.layout import CONFIG_FILE, DEFAULT_FEATURE_FILES
from spectune.datasets.mmrec import TEST, TRAIN, VALID, Dataset, Split

logger = logging.getLogger(__name__)

MIN_INTERACTIONS_PER_USER = 5  # the split then gives every user >= 1 valid and >= 1 test row
_LATENT_DIM = 16
_CLUSTER_CONCENTRATION = 0.05  # Dirichlet alpha: small = each user likes few clusters
_POPULARITY_MIX = 0.1  # share of each user's cluster choice that follows global popularity
_ZIPF_EXPONENT = 0.7
_MAX_ROUNDS = 30


@dataclass(frozen=True)
class SyntheticShape:
    n_users: int
    n_items: int
    n_interactions: int
    feature_dims: tuple[tuple[str, int], ...]  # (modality, width), in modality order
    name: str = "synthetic"


# Same sizes as the Amazon sets MGCN reports on (their data is not reachable from CI).
BABY = SyntheticShape(19445, 7050, 160792, (("image", 4096), ("text", 384)), "synthetic-baby")
CLOTHING = SyntheticShape(
    39387, 23033, 278677, (("image", 4096), ("text", 384)), "synthetic-clothing"
)
TINY = SyntheticShape(60, 40, 600, (("image", 32), ("text", 16)), "synthetic-tiny")


def make_synthetic(shape: SyntheticShape, seed: int = 0) -> Dataset:
    """An in-memory dataset of exactly ``shape``; the same seed gives the same arrays."""
    _check_shape(shape)
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    counts = _interactions_per_user(shape, rng)
    n_clusters = max(2, min(shape.n_items, round(np.sqrt(shape.n_items))))
    clusters = rng.integers(0, n_clusters, shape.n_items)
    clusters[rng.permutation(shape.n_items)[:n_clusters]] = np.arange(n_clusters)  # none empty
    popularity = (rng.permutation(shape.n_items) + 1.0) ** -_ZIPF_EXPONENT
    users, items = _sample_interactions(counts, clusters, n_clusters, popularity, rng)
    labels = _split_labels(counts)
    latent = rng.standard_normal((n_clusters, _LATENT_DIM))[clusters]
    latent += 0.5 * rng.standard_normal((shape.n_items, _LATENT_DIM))
    features = {
        modality: _feature_table(modality, width, latent, rng)
        for modality, width in shape.feature_dims
    }
    train, valid, test = (
        _sorted_split(users, items, labels == label) for label in (TRAIN, VALID, TEST)
    )
    logger.info(
        "generated %s (seed %d): %d users, %d items, %d interactions in %.2f s",
        shape.name,
        seed,
        shape.n_users,
        shape.n_items,
        shape.n_interactions,
        time.perf_counter() - start,
    )
    return Dataset(
        name=shape.name,
        path=Path(f"<synthetic {shape.name} seed {seed}>"),
        n_users=shape.n_users,
        n_items=shape.n_items,
        train=train,
        valid=valid,
        test=test,
        modalities=tuple(modality for modality, _ in shape.feature_dims),
        features=features,
        dropped_eval_users=0,
    )


def write_mmrec(dataset: Dataset, directory: Path) -> Path:
    """Write ``dataset`` into ``directory`` so that ``load_dataset(directory.name,
    directory.parent)`` reads it back; returns ``directory``."""
    for modality in dataset.modalities:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", modality):
            raise ValueError(f"modality name {modality!r} cannot be used in a file name")
    directory.mkdir(parents=True, exist_ok=True)
    splits = ((TRAIN, dataset.train), (VALID, dataset.valid), (TEST, dataset.test))
    users = np.concatenate([split.users for _, split in splits])
    items = np.concatenate([split.items for _, split in splits])
    labels = np.concatenate([np.full(len(split), label) for label, split in splits])
    order = np.lexsort((items, labels, users))
    rows = np.column_stack((users, items, labels))[order]
    with (directory / f"{dataset.name}.inter").open("w", encoding="utf-8", newline="\n") as f:
        f.write(f"{USER_COLUMN}\t{ITEM_COLUMN}\t{LABEL_COLUMN}\n")
        np.savetxt(f, rows, fmt="%d", delimiter="\t")
    files = {modality: f"{modality}_feat.npy" for modality in dataset.modalities}
    for modality, file in files.items():
        np.save(directory / file, dataset.features[modality])
    # The default rule takes whichever of image_feat.npy / text_feat.npy exist, in that order.
    default_found = tuple(m for m, file in DEFAULT_FEATURE_FILES if (directory / file).is_file())
    has_config = (directory / CONFIG_FILE).exists() or (directory / f"{dataset.name}.yaml").exists()
    if default_found != dataset.modalities or has_config:
        config = {"modalities": files}
        (directory / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")
    return directory


def _check_shape(shape: SyntheticShape) -> None:
    if shape.n_users < 1 or shape.n_items < MIN_INTERACTIONS_PER_USER:
        raise ValueError(
            f"need n_users >= 1 and n_items >= {MIN_INTERACTIONS_PER_USER}, got {shape}"
        )
    low = MIN_INTERACTIONS_PER_USER * shape.n_users
    high = shape.n_items * shape.n_users
    if not low <= shape.n_interactions <= high:
        raise ValueError(
            f"n_interactions must be in {low}..{high} (every user has "
            f"{MIN_INTERACTIONS_PER_USER}..n_items items), got {shape.n_interactions}"
        )
    names = [modality for modality, _ in shape.feature_dims]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"need at least one modality and unique names, got {names}")
    if any(width < 1 for _, width in shape.feature_dims):
        raise ValueError(f"feature widths must be >= 1, got {shape.feature_dims}")


def _interactions_per_user(shape: SyntheticShape, rng: np.random.Generator) -> np.ndarray:
    """Per-user counts >= the minimum, summing exactly to n_interactions, long-tailed."""
    n_users = shape.n_users
    # At most half the catalogue per user, unless the shape needs denser users.
    cap = shape.n_items // 2
    if cap < MIN_INTERACTIONS_PER_USER or cap * n_users < shape.n_interactions:
        cap = shape.n_items
    activity = rng.lognormal(0.0, 1.0, n_users)
    counts = np.full(n_users, MIN_INTERACTIONS_PER_USER, dtype=np.int64)
    surplus = shape.n_interactions - int(counts.sum())
    while surplus:
        weights = activity * (counts < cap)
        counts += rng.multinomial(surplus, weights / weights.sum())
        over = counts > cap
        surplus = int((counts[over] - cap).sum())
        counts[over] = cap
    return counts


def _flat_cdf(weights: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Cumulative weights within each group, scaled to (0, 1], plus the group index.

    With rows sorted by group, ``searchsorted(result, group + u, side="right")`` for u uniform
    in [0, 1) draws a row of that group with probability proportional to its weight.
    """
    cumulative = np.cumsum(weights)
    ends = np.flatnonzero(np.r_[groups[1:] != groups[:-1], True])
    before = np.r_[0.0, cumulative[ends[:-1]]]
    sizes = np.diff(np.r_[-1, ends])
    totals = cumulative[ends] - before
    within = (cumulative - np.repeat(before, sizes)) / np.repeat(totals, sizes)
    within[ends] = 1.0  # exact, so a draw never leaves its group
    return groups + within


def _sample_interactions(
    counts: np.ndarray,
    clusters: np.ndarray,
    n_clusters: int,
    popularity: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) pairs, ``counts[u]`` per user, grouped by user in draw order."""
    n_users, n_items = len(counts), len(clusters)
    cluster_share = np.bincount(clusters, weights=popularity, minlength=n_clusters)
    cluster_share = cluster_share / cluster_share.sum()
    preference = rng.dirichlet(np.full(n_clusters, _CLUSTER_CONCENTRATION), size=n_users)
    preference = (1 - _POPULARITY_MIX) * preference + _POPULARITY_MIX * cluster_share
    user_cdf = _flat_cdf(preference.ravel(), np.repeat(np.arange(n_users), n_clusters))
    by_cluster = np.argsort(clusters, kind="stable")
    item_cdf = _flat_cdf(popularity[by_cluster], clusters[by_cluster])

    users = np.empty(0, dtype=np.int64)
    items = np.empty(0, dtype=np.int64)
    have = np.zeros(n_users, dtype=np.int64)
    for _ in range(_MAX_ROUNDS):
        need = counts - have
        if not need.any():
            return users, items
        drawers = np.repeat(np.arange(n_users), np.where(need > 0, need + need // 2 + 2, 0))
        position = np.searchsorted(user_cdf, drawers + rng.random(len(drawers)), side="right")
        cluster = np.minimum(position - drawers * n_clusters, n_clusters - 1)
        position = np.searchsorted(item_cdf, cluster + rng.random(len(cluster)), side="right")
        drawn = by_cluster[np.minimum(position, n_items - 1)]
        users, items = _first_distinct(np.r_[users, drawers], np.r_[items, drawn], counts, n_items)
        have = np.bincount(users, minlength=n_users)
    # Rare: a user who wants most of the catalogue; finish with uniform draws from the rest.
    return _fill_uniformly(users, items, counts, n_items, rng)


def _first_distinct(
    users: np.ndarray, items: np.ndarray, counts: np.ndarray, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keep each pair's first draw and each user's first ``counts[u]`` pairs, grouped by user."""
    keys = users * n_items + items
    order = np.argsort(keys, kind="stable")
    first = np.ones(len(order), dtype=bool)
    first[1:] = keys[order[1:]] != keys[order[:-1]]
    kept = np.sort(order[first])  # back to draw order
    kept = kept[np.argsort(users[kept], kind="stable")]
    grouped_users = users[kept]
    starts = np.searchsorted(grouped_users, grouped_users, side="left")
    rank = np.arange(len(kept)) - starts
    kept = kept[rank < counts[grouped_users]]
    return users[kept], items[kept]


def _fill_uniformly(
    users: np.ndarray,
    items: np.ndarray,
    counts: np.ndarray,
    n_items: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    have = np.bincount(users, minlength=len(counts))
    extra_users, extra_items = [], []
    for user in np.flatnonzero(have < counts):
        free = np.setdiff1d(np.arange(n_items), items[users == user])
        chosen = rng.choice(free, counts[user] - have[user], replace=False)
        extra_users.append(np.full(len(chosen), user))
        extra_items.append(chosen)
    all_users = np.concatenate([users, *extra_users])
    all_items = np.concatenate([items, *extra_items])
    order = np.argsort(all_users, kind="stable")
    return all_users[order], all_items[order]


def _split_labels(counts: np.ndarray) -> np.ndarray:
    """x_label of each interaction, users grouped in order: the data README's per-user rule."""
    n_eval = np.where(counts < 10, 2, counts // 5)
    n_valid = np.where(counts < 10, 1, n_eval // 2)
    n_train = counts - n_eval
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    rank = np.arange(int(counts.sum())) - np.repeat(starts, counts)
    n_train, n_valid = np.repeat(n_train, counts), np.repeat(n_valid, counts)
    return np.where(rank < n_train, TRAIN, np.where(rank < n_train + n_valid, VALID, TEST))


def _feature_table(
    modality: str, width: int, latent: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    projection = rng.standard_normal((latent.shape[1], width)) / np.sqrt(latent.shape[1])
    table = (latent @ projection).astype(np.float32)
    table += rng.standard_normal(table.shape, dtype=np.float32)
    if modality == "image":
        np.maximum(table, 0.0, out=table)  # non-negative, like pooled CNN activations
    elif modality == "text":
        # Unit rows, like sentence-embedding models' output.
        table /= np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(table, dtype=np.float32)


def _sorted_split(users: np.ndarray, items: np.ndarray, mask: np.ndarray) -> Split:
    order = np.lexsort((items[mask], users[mask]))
    return Split(
        np.ascontiguousarray(users[mask][order], dtype=np.int64),
        np.ascontiguousarray(items[mask][order], dtype=np.int64),
    )
