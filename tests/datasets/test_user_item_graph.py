"""user_item_adjacency and user_item_block against a dense reference."""

from __future__ import annotations

import numpy as np
import pytest

from spectune.datasets.graphs import user_item_adjacency, user_item_block
from spectune.datasets.mmrec import Split

N_USERS, N_ITEMS = 5, 7
# User 3 and item 6 have no train interaction; (0, 1) appears twice.
USERS = [0, 0, 0, 1, 1, 2, 4, 4, 4, 0]
ITEMS = [1, 2, 5, 0, 2, 3, 1, 4, 5, 1]


def dense_reference() -> np.ndarray:
    r = np.zeros((N_USERS, N_ITEMS))
    r[USERS, ITEMS] = 1.0  # binary: the repeated pair counts once
    a = np.block([[np.zeros((N_USERS, N_USERS)), r], [r.T, np.zeros((N_ITEMS, N_ITEMS))]])
    degree = a.sum(axis=1)
    inv_sqrt = np.zeros_like(degree)
    inv_sqrt[degree > 0] = degree[degree > 0] ** -0.5
    return inv_sqrt[:, None] * a * inv_sqrt[None, :]


def train() -> Split:
    return Split(np.array(USERS, dtype=np.int64), np.array(ITEMS, dtype=np.int64))


def test_adjacency_equals_dense_reference() -> None:
    adjacency = user_item_adjacency(N_USERS, N_ITEMS, train())
    size = N_USERS + N_ITEMS
    assert adjacency.shape == (size, size)
    assert adjacency.dtype == np.float32
    assert adjacency.indices.dtype == np.int64 and adjacency.indptr.dtype == np.int64
    assert adjacency.has_sorted_indices
    dense = adjacency.toarray()
    np.testing.assert_allclose(dense, dense_reference(), rtol=1e-6)
    np.testing.assert_array_equal(dense, dense.T)
    assert not np.diag(dense).any()  # no self loops
    assert not dense[3].any() and not dense[N_USERS + 6].any()  # zero degree stays zero
    assert adjacency.nnz == 2 * 9


def test_block_is_the_user_item_part() -> None:
    adjacency = user_item_adjacency(N_USERS, N_ITEMS, train())
    block = user_item_block(adjacency, N_USERS)
    assert block.shape == (N_USERS, N_ITEMS)
    assert block.dtype == np.float32 and block.indices.dtype == np.int64
    np.testing.assert_allclose(block.toarray(), dense_reference()[:N_USERS, N_USERS:], rtol=1e-6)


def test_empty_train_gives_an_all_zero_graph() -> None:
    empty = Split(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    adjacency = user_item_adjacency(2, 3, empty)
    assert adjacency.shape == (5, 5) and adjacency.nnz == 0


@pytest.mark.parametrize(
    ("users", "items", "message"),
    [
        ([0, 5], [0, 1], "user ids must be in 0..4"),
        ([0, -1], [0, 1], "user ids must be in 0..4"),
        ([0, 1], [0, 7], "item ids must be in 0..6"),
        ([0, 1], [0], "differ in length"),
    ],
)
def test_bad_ids(users: list[int], items: list[int], message: str) -> None:
    split = Split(np.array(users, dtype=np.int64), np.array(items, dtype=np.int64))
    with pytest.raises(ValueError, match=message):
        user_item_adjacency(N_USERS, N_ITEMS, split)


def test_block_needs_a_square_adjacency() -> None:
    adjacency = user_item_adjacency(N_USERS, N_ITEMS, train())
    with pytest.raises(ValueError, match="square adjacency"):
        user_item_block(adjacency[:N_USERS], N_USERS)
