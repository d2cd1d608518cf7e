"""MGCN and the DAMPS feature filter: pure torch modules, tensors in, tensors out."""

from spectune.models.controls import LinearControl
from spectune.models.damps import DAMPS, DampsConfig
from spectune.models.filters import FeatureFilter
from spectune.models.losses import bpr_loss, info_nce, l2_regularizer
from spectune.models.mgcn import MGCN, feature_parameters

__all__ = [
    "DAMPS",
    "MGCN",
    "DampsConfig",
    "FeatureFilter",
    "LinearControl",
    "bpr_loss",
    "feature_parameters",
    "info_nce",
    "l2_regularizer",
]
