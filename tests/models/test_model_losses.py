"""Losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from spectune.models.losses import bpr_loss, info_nce, l2_regularizer


def test_bpr_loss_hand_computed() -> None:
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    pos = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    neg = torch.tensor([[0.0, 1.0], [0.0, 3.0]], dtype=torch.float64)
    # score gaps: 2 - 0 = 2 and 1 - 3 = -2
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(2))) / 2
    assert bpr_loss(u, pos, neg).item() == pytest.approx(expected, rel=1e-12)


def test_l2_regularizer_hand_computed() -> None:
    a = torch.tensor([[1.0, 2.0]])
    b = torch.tensor([[3.0]])
    # 0.5 * (1 + 4) + 0.5 * 9 = 7, over 2
    assert l2_regularizer(a, b, denominator=2).item() == pytest.approx(3.5)
    with pytest.raises(ValueError, match="denominator must be >= 1"):
        l2_regularizer(a, denominator=0)
    with pytest.raises(ValueError, match="at least one tensor"):
        l2_regularizer(denominator=1)


def test_info_nce_hand_computed() -> None:
    view1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    view2 = torch.tensor([[2.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    # normalised views are the identity: logits diag 1 / 0.5 = 2, off-diagonal 0
    assert info_nce(view1, view2, 0.5).item() == pytest.approx(math.log(1 + math.exp(-2)))

    view2 = torch.tensor([[1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    c = 1 / math.sqrt(2)
    # similarities: row 0: (c, 0), row 1: (c, 1); positives on the diagonal
    row0 = -math.log(math.exp(c) / (math.exp(c) + 1))
    row1 = -math.log(math.e / (math.exp(c) + math.e))
    assert info_nce(view1, view2, 1.0).item() == pytest.approx((row0 + row1) / 2, rel=1e-12)


def test_info_nce_small_temperature_is_finite() -> None:
    torch.manual_seed(0)
    view1, view2 = torch.randn(5, 4), torch.randn(5, 4)
    assert torch.isfinite(info_nce(view1, view2, 1e-3))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        info_nce(view1, view2, 0.0)
    with pytest.raises(ValueError, match="same shape"):
        info_nce(view1, view2[:3], 0.2)
