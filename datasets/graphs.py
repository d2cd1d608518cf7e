"""Graph builders: normalised user-item adjacency and per-modality item kNN graphs (MGCN).

Pure functions: numpy/scipy in, scipy CSR float32 with int64 indices out. No files, no caching.
"""

from __future__ import annotations

import hashlib

import numpy as np
import scipy.sparse as sp

from spectune.datasets.mmrec import Split


def as_csr(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    """CSR float32 with int64 index arrays (scipy would downcast them to int32 when they fit)."""
    matrix = sp.csr_matrix(
        (np.asarray(data, dtype=np.float32), indices, indptr), shape=shape, copy=False
    )
    # Entry counts past 2^31 need int64 anyway; one index dtype keeps torch conversion simple.
    matrix.indices = np.asarray(indices, dtype=np.int64)
    matrix.indptr = np.asarray(indptr, dtype=np.int64)
    return matrix


def user_item_adjacency(n_users: int, n_items: int, train: Split) -> sp.csr_matrix:
    """(U+N) x (U+N) bipartite adjacency of the binary train matrix R, normalised D^-1/2 A D^-1/2.

    Users are rows 0..U-1 and items rows U..U+N-1; no self loops; rows of nodes without train
    interactions stay all zero.
    """
    users = np.asarray(train.users, dtype=np.int64)
    items = np.asarray(train.items, dtype=np.int64)
    if len(users) != len(items):
        raise ValueError(f"train users and items differ in length: {len(users)} != {len(items)}")
    if len(users) and (users.min() < 0 or users.max() >= n_users):
        raise ValueError(f"train user ids must be in 0..{n_users - 1}")
    if len(items) and (items.min() < 0 or items.max() >= n_items):
        raise ValueError(f"train item ids must be in 0..{n_items - 1}")
    # R is binary: repeated pairs count once.
    keys = np.sort(users * n_items + items)
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    keys = keys[first]
    users, items = keys // n_items, keys % n_items
    user_degree = np.bincount(users, minlength=n_users).astype(np.float64)
    item_degree = np.bincount(items, minlength=n_items).astype(np.float64)
    weights = 1.0 / np.sqrt(user_degree[users] * item_degree[items])
    size = n_users + n_items
    upper = sp.coo_matrix((weights, (users, n_users + items)), shape=(size, size))
    adjacency = (upper + upper.T).tocsr()
    adjacency.sort_indices()
    return as_csr(adjacency.data, adjacency.indices, adjacency.indptr, (size, size))


def user_item_block(adjacency: sp.csr_matrix, n_users: int) -> sp.csr_matrix:
    """The U x N block R_norm of a (U+N) x (U+N) adjacency from ``user_item_adjacency``."""
    size = adjacency.shape[0]
    if adjacency.shape != (size, size) or not 0 <= n_users <= size:
        raise ValueError(f"need a square adjacency with n_users <= {size}, got {adjacency.shape}")
    block = sp.csr_matrix(adjacency[:n_users, n_users:])
    block.sort_indices()
    return as_csr(block.data, block.indices, block.indptr, (n_users, size - n_users))


def knn_graph(features: np.ndarray, k: int, chunk_rows: int = 1024) -> sp.csr_matrix:
    """N x N item-item graph as MGCN builds it, in O(chunk_rows * N + N * k) memory.

    Cosine similarity of the raw rows (all-zero rows: similarity 0 with every item, itself
    included); per row keep the k largest similarities, the row's own item included, ties to the
    lower item id; the kept similarities are the edge weights; then weight_ij =
    deg_i^-1/2 * s_ij * deg_j^-1/2 with deg_i the sum of row i's kept values and deg <= 0 giving
    0. Every row stores exactly k entries (explicit zeros included), columns ascending.
    """
    table = _float_table(features)
    n_rows = table.shape[0]
    if not 1 <= k <= n_rows:
        raise ValueError(f"knn k must be in 1..{n_rows} (the number of items), got {k}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    # Identical rows are computed once, so their similarities tie exactly (BLAS results can
    # depend on a row's position) and ties then always go to the lower id.
    representatives, inverse = _unique_rows(table)
    duplicated = len(representatives) < n_rows
    unit = _unit_rows(table[representatives] if duplicated else table, chunk_rows)
    columns = np.empty((len(unit), k), dtype=np.int64)
    values = np.empty((len(unit), k), dtype=np.float32)
    for start in range(0, len(unit), chunk_rows):
        stop = min(start + chunk_rows, len(unit))
        similarity = unit[start:stop] @ unit.T  # [chunk, unique rows]
        if duplicated:
            similarity = similarity[:, inverse]  # [chunk, N]
        columns[start:stop], values[start:stop] = _top_k(similarity, k)
        del similarity
    if duplicated:
        columns, values = columns[inverse], values[inverse]
    degree = values.sum(axis=1, dtype=np.float64)
    inv_sqrt = np.zeros(n_rows, dtype=np.float64)
    positive = degree > 0
    inv_sqrt[positive] = degree[positive] ** -0.5
    weights = inv_sqrt[:, None] * values * inv_sqrt[columns]
    indptr = np.arange(n_rows + 1, dtype=np.int64) * k
    return as_csr(weights.ravel(), columns.ravel(), indptr, (n_rows, n_rows))


def _float_table(features: np.ndarray) -> np.ndarray:
    table = np.asarray(features)
    if table.ndim != 2 or table.shape[0] == 0 or table.shape[1] == 0:
        raise ValueError(f"features must be a non-empty 2-D [n_items, d] array, got {table.shape}")
    if not np.issubdtype(table.dtype, np.floating):
        raise ValueError(f"features must be floating point, got {table.dtype}")
    table = np.ascontiguousarray(table, dtype=np.float32)
    if not np.isfinite(table).all():
        raise ValueError("features contain NaN or inf")
    return table


def _unique_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each distinct row's first occurrence, and for every row its distinct-row index."""
    hashes: list[bytes] = []
    for start in range(0, len(table), 1024):
        # +0.0 turns -0.0 into 0.0 so that rows equal in value also hash equal.
        block = table[start : start + 1024] + np.float32(0.0)
        hashes.extend(hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in block)
    digests = np.frombuffer(b"".join(hashes), dtype="V16")
    _, first, inverse = np.unique(digests, return_index=True, return_inverse=True)
    # Renumber distinct rows by first occurrence so representatives stay in item order.
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.ravel()]


def _unit_rows(table: np.ndarray, chunk_rows: int) -> np.ndarray:
    """Rows divided by their L2 norm (computed in float64); all-zero rows stay zero."""
    unit = np.empty_like(table)
    for start in range(0, len(table), chunk_rows):
        block = table[start : start + chunk_rows].astype(np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        unit[start : start + chunk_rows] = block * scale[:, None]
    return unit


def _top_k(similarity: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k largest entries (ties to the lower column), as (columns, values), columns
    ascending."""
    n_columns = similarity.shape[1]
    kth = np.partition(similarity, n_columns - k, axis=1)[:, n_columns - k, None]
    keep = similarity >= kth
    surplus = keep.sum(axis=1) - k
    # Only rows with more entries equal to their k-th value than places left need a choice
    # (rare outside duplicate or all-zero rows): the lowest ids among the tied entries win.
    ambiguous = np.flatnonzero(surplus > 0)
    if len(ambiguous):
        rows_similarity, rows_kth = similarity[ambiguous], kth[ambiguous]
        tied = rows_similarity == rows_kth
        places = tied.sum(axis=1) - surplus[ambiguous]
        rank = np.cumsum(tied, axis=1, dtype=np.int32)
        keep[ambiguous] = (rows_similarity > rows_kth) | (tied & (rank <= places[:, None]))
    rows, columns = np.nonzero(keep)
    return columns.reshape(-1, k), similarity[rows, columns].reshape(-1, k)
