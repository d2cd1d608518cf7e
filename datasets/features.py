"""Reading and checking one modality's item feature table (``.npy``, rows indexed by itemID)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from spectune.datasets.errors import DataError

logger = logging.getLogger(__name__)

ACCEPTED_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def load_feature_table(path: Path, modality: str) -> np.ndarray:
    """Load ``path`` as a C-contiguous float32 [n_items, d] array, or raise DataError."""
    raw = _load_npy(path, modality)
    if raw.dtype not in ACCEPTED_DTYPES:
        raise DataError(
            f"{path} (modality {modality}): dtype must be float16, float32 or float64, "
            f"got {raw.dtype}"
        )
    if raw.ndim != 2:
        raise DataError(
            f"{path} (modality {modality}): must be a 2-D [n_items, d] table, got shape {raw.shape}"
        )
    if raw.shape[0] == 0 or raw.shape[1] == 0:
        raise DataError(
            f"{path} (modality {modality}): needs at least one row and one column, "
            f"got shape {raw.shape}"
        )
    _check_finite(raw, path, modality, "")
    with np.errstate(over="ignore"):
        table = np.ascontiguousarray(raw, dtype=np.float32)
    if raw.dtype == np.float64:
        # Values beyond float32's range become inf in the conversion.
        _check_finite(table, path, modality, " after conversion to float32")
    zero_rows = int(np.count_nonzero(~table.any(axis=1)))
    if zero_rows:
        logger.warning(
            "%s (modality %s): %d all-zero rows; their items get cosine similarity 0 "
            "with every item in the kNN graph",
            path,
            modality,
            zero_rows,
        )
    return table


def _load_npy(path: Path, modality: str) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError) as e:
        # numpy raises ValueError for broken headers, truncated data and object (pickled) arrays,
        # which allow_pickle=False refuses.
        raise DataError(
            f"{path} (modality {modality}): not a readable .npy file of dtype float16, float32 "
            f"or float64: {e}"
        ) from e
    if not isinstance(loaded, np.ndarray):
        loaded.close()
        raise DataError(
            f"{path} (modality {modality}): expected one .npy array, got an .npz archive"
        )
    return loaded


def _check_finite(table: np.ndarray, path: Path, modality: str, when: str) -> None:
    finite = np.isfinite(table)
    if finite.all():
        return
    row, column = divmod(int(np.argmax(~finite.ravel())), table.shape[1])
    raise DataError(
        f"{path} (modality {modality}) row {row} (itemID {row}), column {column}: "
        f"feature values must be finite{when}, got {table[row, column]}"
    )
