"""Controls for DAMPS ablations.

The shuffled-spectrum control is ``DAMPS`` with ``DampsConfig(shuffle_spectrum=True)``.
"""

from __future__ import annotations

from torch import Tensor, nn

from spectune.models.filters import FeatureFilter


class LinearControl(FeatureFilter):
    """Linear control for DAMPS (KDD 2026, "Enhancing Multimodal Recommendation via Multimodal
    Representation Calibration in Spectral Domain"): one extra projection in DAMPS's place.

    For each modality m, with MGCN's projection p_m (N x D): out_m = W_m p_m + b_m, W_m a
    D x D Linear layer with PyTorch's default initialisation. It separates "an extra learned
    projection" from "spectral calibration". Works with any number of modalities.
    """

    def __init__(self, embedding_dim: int, n_modalities: int) -> None:
        super().__init__()
        if embedding_dim < 1:
            raise ValueError(f"LinearControl embedding_dim must be >= 1; got {embedding_dim}")
        if n_modalities < 1:
            raise ValueError(f"LinearControl n_modalities must be >= 1; got {n_modalities}")
        self.reads_backbone = True
        self.n_modalities = n_modalities
        self.layers = nn.ModuleList(
            nn.Linear(embedding_dim, embedding_dim) for _ in range(n_modalities)
        )

    def forward(self, backbone_projections: list[Tensor] | None) -> list[Tensor]:
        if backbone_projections is None or len(backbone_projections) != self.n_modalities:
            got = None if backbone_projections is None else len(backbone_projections)
            raise ValueError(f"LinearControl expects {self.n_modalities} projections; got {got}")
        # each: [N, D] -> [N, D]
        return [layer(p) for layer, p in zip(self.layers, backbone_projections, strict=True)]
