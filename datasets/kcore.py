"""k-core filtering of an interaction list: the unique maximal subset where every user and every
item has at least k interactions."""

from __future__ import annotations

import numpy as np


def k_core(users: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Keep mask of the maximal k-core of the (users[j], items[j]) rows, and the passes it took.

    ``users`` and ``items`` are non-negative int arrays of equal length; every row counts as one
    interaction (repeated pairs count repeatedly). Each pass drops, at once, every row whose user
    or item has fewer than ``k`` rows left; passes repeat until one changes nothing (that last
    pass is counted).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    keep = np.ones(len(users), dtype=bool)
    n_users = int(users.max()) + 1 if len(users) else 0
    n_items = int(items.max()) + 1 if len(items) else 0
    passes = 0
    while True:
        passes += 1
        user_counts = np.bincount(users[keep], minlength=n_users)
        item_counts = np.bincount(items[keep], minlength=n_items)
        kept = keep & (user_counts[users] >= k) & (item_counts[items] >= k)
        if np.array_equal(kept, keep):
            return keep, passes
        keep = kept
