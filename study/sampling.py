"""Negative sampling for BPR: one uniformly drawn non-positive item per training pair."""

from __future__ import annotations

import numpy as np

from spectune.datasets.mmrec import Split


class NegativeSampler:
    """Draws, for each (user, positive) pair, an item the user has no train interaction with.

    Vectorised rejection sampling: draw uniformly for all pairs, then redraw only the pairs that
    hit a train positive until none does. Users with every item as a positive are rejected by the
    data layer, so this terminates.
    """

    def __init__(self, n_items: int, train: Split) -> None:
        self._n_items = n_items
        self._positive_keys = np.unique(train.users.astype(np.int64) * n_items + train.items)

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users.astype(np.int64) * self._n_items + items
        where = np.searchsorted(self._positive_keys, keys)
        where = np.minimum(where, len(self._positive_keys) - 1)
        return self._positive_keys[where] == keys

    def sample(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        negatives = rng.integers(0, self._n_items, size=len(users), dtype=np.int64)
        redraw = np.flatnonzero(self.is_positive(users, negatives))
        while redraw.size:
            negatives[redraw] = rng.integers(0, self._n_items, size=redraw.size, dtype=np.int64)
            redraw = redraw[self.is_positive(users[redraw], negatives[redraw])]
        return negatives
