"""The protocol between MGCN and a feature filter (DAMPS, its controls)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FeatureFilter(nn.Module):
    """A module that replaces MGCN's projected modality features ``p_m`` (N x D each).

    MGCN feeds the filter's outputs to its purifier gates instead of its own projections.

    Attributes a subclass sets in its constructor:
        reads_backbone: True when ``forward`` reads MGCN's projections. False when the filter
            computes its own from the feature tables: MGCN then skips its projections and passes
            ``None`` to ``forward``.
        n_modalities: how many modalities the filter takes and returns, in MGCN's order.

    Contract:
        ``initialise(projections)`` is called once by ``MGCN.__init__`` under ``torch.no_grad``
        with MGCN's initial projections (N x D each), for filters that derive statistics from
        them. ``forward`` returns one N x D tensor per modality. ``regularization()`` is added to
        MGCN's loss (a zero tensor when the filter has none).
    """

    reads_backbone: bool
    n_modalities: int

    def __init__(self) -> None:
        super().__init__()
        # The value of regularization() for filters without one; a buffer so it follows .to().
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    def initialise(self, backbone_projections: list[Tensor]) -> None:
        """Compute initial statistics; the default has none."""

    def forward(self, backbone_projections: list[Tensor] | None) -> list[Tensor]:
        raise NotImplementedError

    def regularization(self) -> Tensor:
        """Extra loss term; the default is a zero scalar."""
        return self._zero
