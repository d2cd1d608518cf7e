"""Loss terms of MGCN (ACM MM 2023): BPR, the batch L2 penalty and InfoNCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def bpr_loss(u: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """Bayesian personalised ranking: ``-mean(logsigmoid(<u, pos> - <u, neg>))`` over the rows."""
    pos_scores = (u * pos).sum(dim=-1)  # [B]
    neg_scores = (u * neg).sum(dim=-1)  # [B]
    return -F.logsigmoid(pos_scores - neg_scores).mean()


def l2_regularizer(*embs: Tensor, denominator: int) -> Tensor:
    """``sum over tensors of 0.5 * sum of squares``, divided by ``denominator``.

    MGCN divides by the configured batch size, also for a smaller last batch; the caller passes
    that number, not the number of rows.
    """
    if not embs:
        raise ValueError("l2_regularizer needs at least one tensor")
    if denominator < 1:
        raise ValueError(f"l2_regularizer denominator must be >= 1; got {denominator}")
    total = torch.stack([0.5 * e.square().sum() for e in embs]).sum()
    return total / denominator


def info_nce(view1: Tensor, view2: Tensor, temperature: float) -> Tensor:
    """InfoNCE between row-aligned views, the other rows of ``view2`` acting as negatives.

    Rows are L2-normalised; with ``s_ij = <v1_i, v2_j> / temperature`` the loss is
    ``mean_i -log(exp(s_ii) / sum_j exp(s_ij))``. It is evaluated as
    ``logsumexp_j(s_ij) - s_ii`` (the same value, without overflow for small temperatures).
    """
    if view1.shape != view2.shape or view1.dim() != 2:
        raise ValueError(
            f"info_nce needs two B x D views of the same shape; got {tuple(view1.shape)} "
            f"and {tuple(view2.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"info_nce temperature must be > 0; got {temperature}")
    v1 = F.normalize(view1, dim=1)  # [B, D]
    v2 = F.normalize(view2, dim=1)  # [B, D]
    logits = v1 @ v2.T / temperature  # [B, B]
    return (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()
