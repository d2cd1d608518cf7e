"""Top-K ranking metrics with MMRec's definitions (``utils/metrics.py`` of the toolbox).

``hits[u, j]`` is 1 when the item ranked j-th (0-based) for user u is one of the user's held-out
items, ``n_relevant[u]`` is how many held-out items the user has. Each metric is the mean over
users of a per-user value at cut-off K.
"""

from __future__ import annotations

import numpy as np


def recall(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    """Held-out items in the top K / held-out items."""
    return float(np.mean(hits[:, :k].sum(axis=1) / n_relevant))


def precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    """Held-out items in the top K / K."""
    return float(np.mean(hits[:, :k].sum(axis=1) / k))


def ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    """DCG of the top K (gain 1/log2(rank + 1)) over the ideal DCG of min(n_relevant, K) hits."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits[:, :k] * discounts).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, k) - 1]
    return float(np.mean(dcg / ideal))


def average_precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    """MAP@K: sum of precision@j over the hit ranks j <= K, divided by min(n_relevant, K)."""
    top = hits[:, :k].astype(np.float64)
    precision_at = np.cumsum(top, axis=1) / np.arange(1, k + 1)
    return float(np.mean((precision_at * top).sum(axis=1) / np.minimum(n_relevant, k)))


METRIC_FUNCTIONS = {
    "recall": recall,
    "ndcg": ndcg,
    "precision": precision,
    "map": average_precision,
}


def ranking_metrics(
    hits: np.ndarray, n_relevant: np.ndarray, topk: tuple[int, ...]
) -> dict[str, float]:
    """All metrics at every K in ``topk``: ``{"recall@20": ..., ...}``."""
    if hits.shape[1] < max(topk):
        raise ValueError(f"hits has {hits.shape[1]} columns, fewer than the largest K {max(topk)}")
    if hits.shape[0] == 0:
        raise ValueError("no users to evaluate")
    if np.any(n_relevant < 1):
        raise ValueError("every evaluated user needs at least one held-out item")
    return {
        f"{name}@{k}": function(hits, n_relevant, k)
        for name, function in METRIC_FUNCTIONS.items()
        for k in topk
    }
