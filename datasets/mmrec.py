"""MMRec-format datasets: locate, read and validate everything before any training starts."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spectune.datasets.errors import DataError
from spectune.datasets.features import load_feature_table
from spectune.datasets.inter_file import ITEM_COLUMN, USER_COLUMN, InterTable, read_inter
from spectune.datasets.layout import resolve_layout

logger = logging.getLogger(__name__)

AMAZON_NAMES = ("baby", "sports", "clothing", "elec", "microlens")

TRAIN, VALID, TEST = 0, 1, 2


@dataclass(frozen=True, eq=False)
class Split:
    """One split's interactions: int64 arrays of equal length, entry k is (users[k], items[k])."""

    users: np.ndarray
    items: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A validated dataset; ids are 0..n_users-1 and 0..n_items-1 (feature row = itemID)."""

    name: str
    path: Path
    n_users: int
    n_items: int
    train: Split  # unique (user, item) pairs, sorted by (user, item)
    valid: Split  # unique pairs sorted by (user, item); users without train rows dropped
    test: Split  # same as valid
    modalities: tuple[str, ...]  # in config / default file order
    features: dict[str, np.ndarray]  # float32 [n_items, d], C-contiguous, keyed by modality
    dropped_eval_users: int  # valid/test users dropped for having no train interactions


def dataset_dir(name: str, data_root: Path) -> Path:
    """``<data_root>/<name>``, or a DataError that tells the user how to get the data."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise DataError(f"dataset name must be a plain directory name, got {name!r}")
    directory = data_root / name
    if directory.is_dir():
        return directory
    if name in AMAZON_NAMES:
        raise DataError(
            f"dataset {name!r} not found: no directory {directory}. The Amazon and MicroLens "
            "datasets are not shipped with spectune: the seed's README (the public DAMPS code "
            "spectune builds on) links the preprocessed data on Google Drive (a Baby/Sports/Elec "
            "folder and a MicroLens folder). Download it and place the files "
            f"({name}.inter, image_feat.npy, text_feat.npy) at {directory}/"
        )
    raise DataError(
        f"no dataset directory {directory} holding {name}.inter; "
        f"datasets found under {data_root}: {_available(data_root)}"
    )


def _available(data_root: Path) -> str:
    if not data_root.is_dir():
        return f"none ({data_root} is not a directory)"
    found = sorted(
        child.name
        for child in data_root.iterdir()
        if child.is_dir() and (child / f"{child.name}.inter").is_file()
    )
    return ", ".join(found) if found else "none"


def load_dataset(name: str, data_root: Path) -> Dataset:
    """Read and validate the dataset ``<data_root>/<name>``; raise DataError on any broken rule."""
    start = time.perf_counter()
    directory = dataset_dir(name, data_root)
    layout = resolve_layout(name, directory)
    features = {
        modality: load_feature_table(path, modality) for modality, path in layout.feature_paths
    }
    n_items = _common_row_count(layout.feature_paths, features)
    table = read_inter(layout.inter_path)
    n_users = _check_ids(table, n_items, layout.feature_paths[0][1])
    train, valid, test, dropped = _splits(table, n_users, n_items)
    dataset = Dataset(
        name=name,
        path=directory,
        n_users=n_users,
        n_items=n_items,
        train=train,
        valid=valid,
        test=test,
        modalities=tuple(features),
        features=features,
        dropped_eval_users=dropped,
    )
    logger.info(
        "loaded %s: %d users, %d items, train %d / valid %d / test %d, %s in %.2f s",
        name,
        n_users,
        n_items,
        len(train),
        len(valid),
        len(test),
        ", ".join(f"{m} {features[m].shape[1]}-d" for m in dataset.modalities),
        time.perf_counter() - start,
    )
    return dataset


def _common_row_count(
    feature_paths: tuple[tuple[str, Path], ...], features: dict[str, np.ndarray]
) -> int:
    counts = {modality: features[modality].shape[0] for modality, _ in feature_paths}
    if len(set(counts.values())) > 1:
        listing = ", ".join(f"{path} has {counts[m]}" for m, path in feature_paths)
        raise DataError(
            f"feature tables must have one row per item, but row counts differ: {listing}"
        )
    return next(iter(counts.values()))


def _check_ids(table: InterTable, n_items: int, feature_path: Path) -> int:
    """Items must index feature rows; users must be exactly 0..n_users-1. Returns n_users."""
    beyond = table.items >= n_items
    if beyond.any():
        row = int(np.argmax(beyond))
        raise DataError(
            f"{table.where(row)}: {ITEM_COLUMN} {table.items[row]} is beyond the feature rows "
            f"({feature_path} has {n_items} rows, so ids must be < {n_items})"
        )
    n_users = int(table.users.max()) + 1
    seen = np.zeros(n_users, dtype=bool)
    seen[table.users] = True
    if not seen.all():
        missing = np.flatnonzero(~seen)
        raise DataError(
            f"{table.path}: {USER_COLUMN} must be contiguous 0..{n_users - 1}, but "
            f"{len(missing)} ids never appear, first {int(missing[0])}"
        )
    unused = int(np.count_nonzero(np.bincount(table.items, minlength=n_items) == 0))
    if unused:
        logger.info("%s: %d of %d items have no interaction", table.path, unused, n_items)
    return n_users


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    # Sort-based: numpy 2's hash-based np.unique is several times slower on 1M int64 keys.
    ordered = np.sort(values)
    keep = np.ones(len(ordered), dtype=bool)
    keep[1:] = ordered[1:] != ordered[:-1]
    return ordered[keep]


def _contains(sorted_keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Boolean mask: which ``queries`` are in ``sorted_keys`` (sorted, unique)."""
    if len(sorted_keys) == 0:
        return np.zeros(len(queries), dtype=bool)
    positions = np.minimum(np.searchsorted(sorted_keys, queries), len(sorted_keys) - 1)
    return sorted_keys[positions] == queries


def _unique_pairs(users: np.ndarray, items: np.ndarray, n_items: int) -> tuple[Split, int]:
    """Unique (user, item) pairs sorted by (user, item), and the number of duplicates dropped."""
    keys = _sorted_unique(users * n_items + items)
    split = Split(keys // n_items, keys % n_items)
    return split, len(users) - len(keys)


def _splits(table: InterTable, n_users: int, n_items: int) -> tuple[Split, Split, Split, int]:
    train, duplicates = _unique_pairs(
        table.users[table.labels == TRAIN], table.items[table.labels == TRAIN], n_items
    )
    if duplicates:
        logger.warning("%s: dropped %d duplicate train (user, item) rows", table.path, duplicates)
    train_count = np.bincount(train.users, minlength=n_users)
    full = np.flatnonzero(train_count >= n_items)
    if len(full):
        raise DataError(
            f"{table.path}: {USER_COLUMN} {int(full[0])} has all {n_items} items as train "
            "positives, so no negative item can be sampled for it"
        )
    has_train = train_count > 0
    eval_users: set[int] = set()
    evals = []
    for label, split_name in ((VALID, "valid"), (TEST, "test")):
        rows = table.labels == label
        users, items = table.users[rows], table.items[rows]
        keep = has_train[users]
        eval_users.update(np.unique(users[~keep]).tolist())
        split, duplicates = _unique_pairs(users[keep], items[keep], n_items)
        if duplicates:
            logger.warning(
                "%s: dropped %d duplicate %s (user, item) rows", table.path, duplicates, split_name
            )
        if len(split) == 0:
            raise DataError(
                f"{table.path}: the {split_name} split (x_label {label}) is empty"
                + (" after dropping users without train rows" if rows.any() else "")
            )
        evals.append(split)
    if eval_users:
        logger.warning(
            "%s: dropped the valid/test rows of %d users that have no train interactions "
            "(as MMRec does)",
            table.path,
            len(eval_users),
        )
    _log_train_overlap(table.path, train, evals, n_items)
    return train, evals[0], evals[1], len(eval_users)


def _log_train_overlap(path: Path, train: Split, evals: list[Split], n_items: int) -> None:
    # Full ranking masks a user's train items, so such a valid/test pair can never be a hit.
    # Train keys are already sorted and unique: train is sorted by (user, item).
    train_keys = train.users * n_items + train.items
    for split, split_name in zip(evals, ("valid", "test"), strict=True):
        overlap = int(_contains(train_keys, split.users * n_items + split.items).sum())
        if overlap:
            logger.warning(
                "%s: %d %s (user, item) pairs are also train pairs; ranking excludes train "
                "items, so they can never be hit",
                path,
                overlap,
                split_name,
            )
