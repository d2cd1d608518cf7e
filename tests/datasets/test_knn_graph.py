"""knn_graph against a dense reference, its tie rule, chunk independence and memory bound."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from spectune.datasets.graphs import knn_graph

N, D, K = 31, 6, 5
ZERO_ROW = 4
DUPLICATES = {7: 2, 20: 2, 15: 11}  # row -> the earlier row it copies


def features() -> np.ndarray:
    table = np.random.default_rng(3).standard_normal((N, D)).astype(np.float32)
    table[ZERO_ROW] = 0.0
    for row, source in DUPLICATES.items():
        table[row] = table[source]
    return table


def dense_reference(table: np.ndarray, k: int) -> tuple[np.ndarray, list[list[int]]]:
    """The N x N dense computation the chunked one must equal, written the obvious way."""
    x = table.astype(np.float64)
    norms = np.linalg.norm(x, axis=1)
    unit = np.zeros_like(x)
    unit[norms > 0] = x[norms > 0] / norms[norms > 0, None]
    n = len(x)
    # One dot per pair: identical rows give bit-identical similarities, so ties are exact.
    sim = np.array([[float(np.dot(unit[i], unit[j])) for j in range(n)] for i in range(n)])
    kept = np.zeros((n, n))
    columns = []
    for i in range(n):
        top = sorted(range(n), key=lambda j: (-sim[i, j], j))[:k]
        kept[i, top] = sim[i, top]
        columns.append(sorted(top))
    degree = kept.sum(axis=1)
    inv_sqrt = np.zeros(n)
    inv_sqrt[degree > 0] = degree[degree > 0] ** -0.5
    return inv_sqrt[:, None] * kept * inv_sqrt[None, :], columns


@pytest.mark.parametrize("chunk_rows", [1, 7, N + 1, 1024])
def test_equals_dense_reference(chunk_rows: int) -> None:
    table = features()
    graph = knn_graph(table, K, chunk_rows=chunk_rows)
    assert graph.shape == (N, N)
    assert graph.dtype == np.float32
    assert graph.indices.dtype == np.int64 and graph.indptr.dtype == np.int64
    assert graph.has_sorted_indices
    np.testing.assert_array_equal(graph.indptr, np.arange(N + 1) * K)  # exactly k per row
    reference, columns = dense_reference(table, K)
    dense = graph.toarray()
    assert np.isfinite(dense).all()
    np.testing.assert_allclose(dense, reference, atol=1e-6)
    # The same kept entries (explicit zeros included), not only the same values.
    assert graph.indices.reshape(N, K).tolist() == columns


@pytest.mark.parametrize("chunk_rows", [1, 7, N + 1])
def test_structure_and_ties_do_not_depend_on_chunk_size(chunk_rows: int) -> None:
    table = features()
    base = knn_graph(table, K, chunk_rows=1024)
    graph = knn_graph(table, K, chunk_rows=chunk_rows)
    np.testing.assert_array_equal(graph.indices, base.indices)
    np.testing.assert_allclose(graph.data, base.data, atol=1e-7)
    for row, source in DUPLICATES.items():
        # A copied row keeps exactly the same neighbours and weights as its source.
        np.testing.assert_array_equal(graph[row].toarray(), graph[source].toarray())


def test_ties_go_to_the_lower_item_id() -> None:
    table = features()
    graph = knn_graph(table, 1)
    # Rows 2, 7 and 20 are identical: each one's single neighbour is item 2, not itself.
    for row in (2, 7, 20):
        assert graph.indices[row] == 2
    # A row without duplicates keeps itself (similarity 1) as its nearest neighbour.
    assert graph.indices[0] == 0
    # The all-zero row has similarity 0 with everything: the k lowest ids, weight 0.
    graph = knn_graph(table, K)
    zero_row = graph.indices[graph.indptr[ZERO_ROW] : graph.indptr[ZERO_ROW + 1]]
    assert zero_row.tolist() == list(range(K))
    assert not graph[ZERO_ROW].toarray().any()
    assert not graph[:, ZERO_ROW].toarray().any()


def test_weights_are_similarities_not_ones() -> None:
    table = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    graph = knn_graph(table, 2).toarray()
    s = 1 / np.sqrt(2)
    kept = np.array([[1.0, s, 0.0], [s, 1.0, 0.0], [0.0, s, 1.0]])
    degree = kept.sum(axis=1)
    np.testing.assert_allclose(graph, kept / np.sqrt(np.outer(degree, degree)), rtol=1e-6)


def test_non_positive_degree_gives_zero_weights() -> None:
    # Row 0's kept similarities are 1, -1, -1, -1 (sum -2): the official code gives NaN here.
    table = np.array([[1.0], [-1.0], [-1.0], [-1.0]], dtype=np.float32)
    graph = knn_graph(table, 4).toarray()
    assert np.isfinite(graph).all()
    assert not graph[0].any() and not graph[:, 0].any()
    # Rows 1-3 keep -1 (item 0) and three 1s: degree 2, so weight 1 / 2 among them.
    np.testing.assert_allclose(graph[1:, 1:], np.full((3, 3), 0.5), rtol=1e-6)


def test_float64_and_float16_inputs() -> None:
    table = features()
    expected = knn_graph(table, K).toarray()
    np.testing.assert_allclose(
        knn_graph(table.astype(np.float64), K).toarray(), expected, atol=1e-6
    )
    assert knn_graph(table.astype(np.float16), K).shape == (N, N)


@pytest.mark.parametrize(
    ("table", "k", "chunk_rows", "message"),
    [
        (features(), 0, 8, "knn k must be in 1..31"),
        (features(), N + 1, 8, "knn k must be in 1..31"),
        (features(), K, 0, "chunk_rows must be >= 1"),
        (features()[0], K, 8, "2-D"),
        (np.ones((3, 2), dtype=np.int64), 1, 8, "floating point"),
        (np.full((3, 2), np.nan, dtype=np.float32), 1, 8, "NaN or inf"),
    ],
)
def test_bad_arguments(table: np.ndarray, k: int, chunk_rows: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        knn_graph(table, k, chunk_rows=chunk_rows)


def test_memory_is_chunked_never_n_by_n() -> None:
    n, d, k, chunk = 20_000, 64, 10, 512
    table = np.random.default_rng(0).standard_normal((n, d), dtype=np.float32)
    tracemalloc.start()
    try:
        graph = knn_graph(table, k, chunk_rows=chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert graph.nnz == n * k
    dense_bytes = n * n * 4
    # Chunk buffers are a few bytes per entry of a 512 x 20000 block (~10 MiB each).
    assert peak < dense_bytes / 8, f"peak {peak / 2**20:.0f} MiB"
