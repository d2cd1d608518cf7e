"""Ranking metrics against values worked out by hand (MMRec's definitions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spectune.study.metrics import ranking_metrics

# user A: hits at ranks 1 and 3, 2 held-out items; user B: hit at rank 5, 3 held-out items
HITS = np.array([[1, 0, 1, 0, 0], [0, 0, 0, 0, 1]], dtype=bool)
N_RELEVANT = np.array([2, 3])


def test_recall_precision_by_hand() -> None:
    metrics = ranking_metrics(HITS, N_RELEVANT, (1, 5))
    assert metrics["recall@1"] == pytest.approx((1 / 2 + 0) / 2)
    assert metrics["recall@5"] == pytest.approx((2 / 2 + 1 / 3) / 2)
    assert metrics["precision@1"] == pytest.approx((1 + 0) / 2)
    assert metrics["precision@5"] == pytest.approx((2 / 5 + 1 / 5) / 2)


def test_ndcg_by_hand() -> None:
    metrics = ranking_metrics(HITS, N_RELEVANT, (5,))
    user_a = (1 / math.log2(2) + 1 / math.log2(4)) / (1 / math.log2(2) + 1 / math.log2(3))
    user_b = (1 / math.log2(6)) / (1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4))
    assert metrics["ndcg@5"] == pytest.approx((user_a + user_b) / 2)
    assert metrics["ndcg@5"] == pytest.approx(0.5506315, abs=1e-6)


def test_map_by_hand() -> None:
    metrics = ranking_metrics(HITS, N_RELEVANT, (5, 1))
    # A: (1/1 + 2/3) / min(2, 5); B: (1/5) / min(3, 5)
    assert metrics["map@5"] == pytest.approx(((1 + 2 / 3) / 2 + (1 / 5) / 3) / 2)
    # at K = 1 the denominator is min(n_relevant, 1) = 1: A 1, B 0
    assert metrics["map@1"] == pytest.approx(0.5)


def test_ideal_dcg_caps_at_k() -> None:
    # 4 held-out items, all 2 slots hit: perfect NDCG@2 and MAP@2 even though recall is 1/2
    metrics = ranking_metrics(np.ones((1, 2), dtype=bool), np.array([4]), (2,))
    assert metrics["ndcg@2"] == pytest.approx(1.0)
    assert metrics["map@2"] == pytest.approx(1.0)
    assert metrics["recall@2"] == pytest.approx(0.5)


def test_rejects_users_without_held_out_items() -> None:
    with pytest.raises(ValueError, match="at least one held-out item"):
        ranking_metrics(HITS, np.array([2, 0]), (5,))
