"""Graphs for a dataset, cached as .npz files named by a hash of their exact inputs."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from spectune.datasets.graphs import as_csr, knn_graph, user_item_adjacency, user_item_block
from spectune.datasets.mmrec import Dataset

logger = logging.getLogger(__name__)

# Bump when a builder's output changes for the same inputs, so old cache files are not reused.
FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class Graphs:
    adjacency: sp.csr_matrix  # (U+N) x (U+N) normalised user-item graph
    user_item: sp.csr_matrix  # its U x N block
    item_item: dict[str, sp.csr_matrix]  # per modality kNN graph, N x N


def build_graphs(
    dataset: Dataset, knn_k: int | Mapping[str, int], cache_dir: Path | None
) -> Graphs:
    """Build (or load from ``cache_dir``; None = no caching) every graph the model needs."""
    ks = _k_per_modality(dataset, knn_k)
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    n_users, n_items = dataset.n_users, dataset.n_items
    size = n_users + n_items
    adjacency = _cached(
        "user-item graph",
        cache_dir,
        graph_key(
            "user_item",
            (dataset.train.users, dataset.train.items),
            {"n_users": n_users, "n_items": n_items},
        ),
        (size, size),
        lambda: user_item_adjacency(n_users, n_items, dataset.train),
    )
    item_item = {}
    for modality in dataset.modalities:
        table, k = dataset.features[modality], ks[modality]
        item_item[modality] = _cached(
            f"{modality} kNN graph (k={k})",
            cache_dir,
            graph_key("knn", (table,), {"k": k}),
            (n_items, n_items),
            functools.partial(knn_graph, table, k),
        )
    return Graphs(adjacency, user_item_block(adjacency, n_users), item_item)


def graph_key(kind: str, arrays: Sequence[np.ndarray], params: Mapping[str, int]) -> str:
    """sha256 of the graph kind, format version, parameters and the exact bytes, dtype and shape
    of every input array."""
    digest = hashlib.sha256(f"spectune graph cache v{FORMAT_VERSION}\n{kind}\n".encode())
    for name in sorted(params):
        digest.update(f"{name}={params[name]}\n".encode())
    for array in arrays:
        contiguous = np.ascontiguousarray(array)
        digest.update(f"{contiguous.dtype.str} {contiguous.shape}\n".encode())
        digest.update(contiguous.data)
    return digest.hexdigest()


def _k_per_modality(dataset: Dataset, knn_k: int | Mapping[str, int]) -> dict[str, int]:
    if isinstance(knn_k, Mapping):
        unknown = set(knn_k) - set(dataset.modalities)
        missing = [m for m in dataset.modalities if m not in knn_k]
        if unknown or missing:
            raise ValueError(
                f"knn_k must give a k for exactly the modalities {list(dataset.modalities)} "
                f"of {dataset.name}; missing {missing}, unknown {sorted(unknown)}"
            )
        ks = {m: knn_k[m] for m in dataset.modalities}
    else:
        ks = dict.fromkeys(dataset.modalities, knn_k)
    for modality, k in ks.items():
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= dataset.n_items:
            raise ValueError(
                f"knn_k for {modality} must be an integer in 1..{dataset.n_items}, got {k!r}"
            )
    return ks


def _cached(
    what: str,
    cache_dir: Path | None,
    key: str,
    shape: tuple[int, int],
    build: Callable[[], sp.csr_matrix],
) -> sp.csr_matrix:
    start = time.perf_counter()
    path = cache_dir / f"{key}.npz" if cache_dir is not None else None
    if path is not None and path.exists():
        try:
            graph = _read(path, shape)
        except _CorruptCacheFile as e:
            logger.warning("rebuilding %s: cache file %s is unreadable (%s)", what, path, e)
        else:
            logger.info("loaded %s from %s in %.2f s", what, path, time.perf_counter() - start)
            return graph
    graph = build()
    if path is None:
        logger.info("built %s in %.2f s (no cache)", what, time.perf_counter() - start)
    else:
        _write_atomically(path, graph)
        logger.info("built %s in %.2f s, cached as %s", what, time.perf_counter() - start, path)
    return graph


class _CorruptCacheFile(Exception):
    pass


def _write_atomically(path: Path, graph: sp.csr_matrix) -> None:
    # Same directory, so os.replace is an atomic rename: readers see no file or a whole one.
    descriptor, temp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            np.savez(
                handle,
                format_version=np.int64(FORMAT_VERSION),
                shape=np.asarray(graph.shape, dtype=np.int64),
                data=graph.data,
                indices=graph.indices,
                indptr=graph.indptr,
            )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _read(path: Path, shape: tuple[int, int]) -> sp.csr_matrix:
    try:
        with np.load(path, allow_pickle=False) as archive:
            version = int(archive["format_version"])
            stored_shape = tuple(int(n) for n in archive["shape"])
            data, indices, indptr = archive["data"], archive["indices"], archive["indptr"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise _CorruptCacheFile(f"{type(e).__name__}: {e}") from e
    if version != FORMAT_VERSION or stored_shape != shape:
        raise _CorruptCacheFile(
            f"format {version}, shape {stored_shape}; expected {FORMAT_VERSION}, {shape}"
        )
    if (
        data.dtype != np.float32
        or indptr.shape != (shape[0] + 1,)
        or indptr[0] != 0
        or indptr[-1] != len(indices)
        or len(data) != len(indices)
        or np.any(np.diff(indptr) < 0)
        or (len(indices) and (indices.min() < 0 or indices.max() >= shape[1]))
    ):
        raise _CorruptCacheFile("inconsistent sparse arrays")
    return as_csr(data, indices, indptr, shape)
