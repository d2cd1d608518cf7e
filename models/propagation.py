"""Sparse x dense products whose backward uses a transpose built once, not on every step."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class _Propagate(torch.autograd.Function):
    """y = A x with dL/dx = A^T dL/dy. torch's own backward of a CSR product re-sorts A^T on
    every call (a fifth of a training step at Amazon Baby shape); the graphs never change."""

    @staticmethod
    def forward(ctx: Any, matrix: Tensor, transpose: Tensor, dense: Tensor) -> Tensor:
        ctx.save_for_backward(transpose)
        return torch.sparse.mm(matrix, dense)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, None, Tensor | None]:
        (transpose,) = ctx.saved_tensors
        return None, None, torch.sparse.mm(transpose, grad) if ctx.needs_input_grad[2] else None


def propagate(matrix: Tensor, transpose: Tensor, dense: Tensor) -> Tensor:
    """``matrix @ dense`` for a constant sparse ``matrix`` whose transpose is ``transpose``."""
    return _Propagate.apply(matrix, transpose, dense)


def sparse_transpose(matrix: Tensor) -> Tensor:
    """The transpose in the same sparse layout (COO coalesced, CSR with sorted indices)."""
    if matrix.layout == torch.sparse_csr:
        return matrix.t().to_sparse_csr()
    return matrix.t().coalesce()
