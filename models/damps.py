"""DAMPS: spectral calibration of the projected modality features, as a MGCN feature filter."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from spectune.models.filters import FeatureFilter

InputSource = Literal["own", "backbone"]
ApcSign = Literal["official", "corrected"]
AvrfGain = Literal["raw", "sigmoid"]
ImcfMode = Literal["official", "averaged"]
Fusion = Literal["learned", "fixed", "gain", "coherence"]
BandEdge = Literal["hard", "soft"]

# Constants of the public code (see shared/design/DAMPS.md).
MAD_SCALE = 1.4826  # median absolute deviation -> standard deviation of a normal
RATIO_EPS = 1e-6  # between / (between + within + eps), and the z-score's std + eps
LOGIT_EPS = 1e-6  # torch.logit(sigmoid(z), eps): the stored gain is clamped to +-13.8
MSC_EPS = 1e-8  # coherence denominator

_CHOICES: dict[str, tuple[str, ...]] = {
    "input_source": get_args(InputSource),
    "apc_sign": get_args(ApcSign),
    "avrf_gain": get_args(AvrfGain),
    "imcf_mode": get_args(ImcfMode),
    "fusion": get_args(Fusion),
    "band_edge": get_args(BandEdge),
}
_SWITCHES = ("apc", "avrf", "imcf", "band_shared", "shuffle_spectrum")
_REALS = (
    "fusion_weight",
    "band_low",
    "band_high",
    "second_band_low",
    "second_band_high",
    "band_width",
    "psi_init_scale",
    "psi_smoothness",
)


def _invalid(name: str, rule: str, value: object) -> ValueError:
    return ValueError(f"DampsConfig.{name} {rule}; got {value!r}")


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class DampsConfig:
    """The DAMPS components and their variants; the defaults reproduce the public code.

    Bands are half-open intervals [low, high) of bin positions f / F, f = 0..F-1. With
    ``band_shared`` the first band applies to both modalities; otherwise ``second_band_*``
    applies to the second modality.
    """

    apc: bool = True
    avrf: bool = True
    imcf: bool = True
    input_source: InputSource = "own"
    apc_sign: ApcSign = "official"
    avrf_gain: AvrfGain = "raw"
    imcf_mode: ImcfMode = "official"
    fusion: Fusion = "learned"  # "gain" / "coherence": that branch alone
    fusion_logits: tuple[float, float] = (0.6, 0.4)  # initial learnable logits ("learned")
    fusion_weight: float = 0.55  # weight of the gain branch ("fixed")
    band_low: float = 0.0
    band_high: float = 1.0
    band_shared: bool = True
    second_band_low: float = 0.0
    second_band_high: float = 1.0
    band_edge: BandEdge = "hard"
    band_width: float = 0.05  # soft roll-off width, a fraction of F
    psi_init_scale: float = 0.0  # psi ~ N(0, scale) at init; 0 = zeros (official)
    psi_smoothness: float = 0.0  # weight of sum((psi[f + 1] - psi[f]) ** 2) in the loss
    shuffle_spectrum: bool = False  # control: permute the D coordinates before the rFFT
    shuffle_seed: int = 0

    def __post_init__(self) -> None:
        for name in _SWITCHES:
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise _invalid(name, "must be a bool", value)
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if not isinstance(value, str) or value not in choices:
                raise _invalid(name, f"must be one of {', '.join(choices)}", value)
        for name in _REALS:
            value = getattr(self, name)
            if not _is_real(value):
                raise _invalid(name, "must be a finite real number", value)
        logits = self.fusion_logits
        if (
            not isinstance(logits, tuple | list)
            or len(logits) != 2
            or not all(_is_real(x) for x in logits)
        ):
            raise _invalid("fusion_logits", "must be two finite real numbers", logits)
        object.__setattr__(self, "fusion_logits", (float(logits[0]), float(logits[1])))
        if not 0.0 <= self.fusion_weight <= 1.0:
            raise _invalid(
                "fusion_weight", "must satisfy 0 <= fusion_weight <= 1", self.fusion_weight
            )
        for low, high in (("band_low", "band_high"), ("second_band_low", "second_band_high")):
            lo, hi = getattr(self, low), getattr(self, high)
            if not 0.0 <= lo < hi <= 1.0:
                raise ValueError(
                    f"DampsConfig.{low}/{high} must satisfy 0 <= {low} < {high} <= 1; "
                    f"got {low}={lo!r}, {high}={hi!r}"
                )
        if not self.band_width > 0:
            raise _invalid("band_width", "must be > 0", self.band_width)
        for name in ("psi_init_scale", "psi_smoothness"):
            if getattr(self, name) < 0:
                raise _invalid(name, "must be >= 0", getattr(self, name))
        seed = self.shuffle_seed
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise _invalid("shuffle_seed", "must be an int >= 0", seed)

    @property
    def uses_gain_branch(self) -> bool:
        return self.fusion != "coherence"

    @property
    def uses_coherence_branch(self) -> bool:
        return self.fusion != "gain"


def band_mask(low: float, high: float, edge: BandEdge, width: float, n_bins: int) -> Tensor | None:
    """Gain per bin for the band [low, high) of positions f / n_bins; None for the full band.

    hard: 1 inside, 0 outside. soft: sigmoid((x - low) / width) * sigmoid((high - x) / width),
    leaving the bottom edge alone when low == 0 and the top edge when high == 1.
    """
    x = torch.arange(n_bins, dtype=torch.float64) / n_bins  # [F]
    if low <= 0.0 and high >= 1.0:
        return None  # no attenuation at either edge: skip the multiply (bit-exact official)
    if edge == "hard":
        return ((x >= low) & (x < high)).to(torch.get_default_dtype())
    mask = torch.ones(n_bins, dtype=torch.float64)
    if low > 0.0:
        mask = mask * torch.sigmoid((x - low) / width)
    if high < 1.0:
        mask = mask * torch.sigmoid((high - x) / width)
    return mask.to(torch.get_default_dtype())


def circular_mean_phase_gap(first: Tensor, second: Tensor) -> Tensor:
    """Per-bin circular mean over items of angle(second) - angle(first); N x F -> F."""
    gap = second.angle() - first.angle()  # [N, F]
    return torch.polar(torch.ones_like(gap), gap).mean(dim=0).angle()  # [F]


def variance_ratio_logits(spectrum: Tensor) -> Tensor:
    """AVRF's initial gain per bin from the magnitudes of an N x F spectrum; returns F values.

    Per bin, over items, with a = |X[:, f]|: total = population variance of a; within =
    (1.4826 * median(|a - median(a)|))^2; between = max(total - within, 0); ratio = between /
    (between + within + 1e-6); the F ratios are z-scored (population std + 1e-6) and stored as
    logit(sigmoid(z)) (eps 1e-6). Medians are torch.median's: the lower of the two middle
    values for an even number of items.
    """
    a = spectrum.abs()  # [N, F]
    total = a.var(dim=0, correction=0)  # [F]
    median = a.median(dim=0).values  # [F]
    mad = (a - median).abs().median(dim=0).values  # [F]
    within = (MAD_SCALE * mad).square()
    between = (total - within).clamp_min(0.0)
    ratio = between / (between + within + RATIO_EPS)
    z = (ratio - ratio.mean()) / (ratio.std(correction=0) + RATIO_EPS)
    return torch.logit(torch.sigmoid(z), eps=LOGIT_EPS)


class DAMPS(FeatureFilter):
    """DAMPS (KDD 2026, "Enhancing Multimodal Recommendation via Multimodal Representation
    Calibration in Spectral Domain"), as the public code computes it (shared/design/DAMPS.md).

    For the two modalities (first = "v", second = "t") with projections p_v, p_t (N x D):
        X_m = rFFT(p_m) (ortho, F = D // 2 + 1 bins)
        APC:  phi = avg_R / 2 + psi; X_v exp(-i phi), X_t exp(+i phi)   (avg_R: circular mean
              of the phase gap at init; "corrected" swaps the signs)
        AVRF: gain_m, a learnable F-vector initialised from variance ratios of |X_m|
        IMCF: msc = |X_v conj X_t|^2 / (|X_v|^2 |X_t|^2 + 1e-8)   (per item and bin)
        out_m = irFFT(mask_m * (l_0 APC(X_m) gain_m + l_1 APC(X_m) msc)), l = softmax(logits)

    ``input_source="own"`` (official): the module holds the SAME nn.Parameter feature tables as
    MGCN (storage aliased, nothing copied) and its own Linear projections; ``forward`` ignores
    its argument and MGCN skips its own projections. ``"backbone"``: ``forward`` calibrates the
    projections MGCN hands it. Statistics (avg_R, gain init) are set by ``initialise``.
    """

    def __init__(
        self,
        embedding_dim: int,
        feature_tables: Sequence[nn.Parameter],
        config: DampsConfig = DampsConfig(),
    ) -> None:
        super().__init__()
        if len(feature_tables) != 2:
            raise ValueError(
                "DAMPS needs exactly two modalities (the first plays image, the second text); "
                f"got {len(feature_tables)} feature tables"
            )
        if embedding_dim < 1:
            raise ValueError(f"DAMPS embedding_dim must be >= 1; got {embedding_dim}")
        for m, table in enumerate(feature_tables):
            if table.dim() != 2:
                raise ValueError(f"DAMPS feature table {m} must be 2-D; got {tuple(table.shape)}")
        if feature_tables[0].shape[0] != feature_tables[1].shape[0]:
            raise ValueError(
                "DAMPS feature tables must have one row per item in both modalities; got "
                f"{feature_tables[0].shape[0]} and {feature_tables[1].shape[0]} rows"
            )
        self.config = config
        self.embedding_dim = embedding_dim
        self.n_bins = embedding_dim // 2 + 1
        self.n_modalities = 2
        self.reads_backbone = config.input_source == "backbone"
        n_bins = self.n_bins

        if self.reads_backbone:
            self.feature_tables = None
            self.projections = None
        else:
            for m, table in enumerate(feature_tables):
                if not isinstance(table, nn.Parameter):
                    raise ValueError(
                        'DAMPS input_source="own" shares MGCN\'s feature tables: pass the '
                        f"nn.Parameter objects MGCN uses; table {m} is a {type(table).__name__}"
                    )
            self.feature_tables = nn.ParameterList(feature_tables)  # the same objects
            self.projections = nn.ModuleList(
                nn.Linear(table.shape[1], embedding_dim) for table in feature_tables
            )

        if config.apc:
            psi = torch.zeros(n_bins)
            if config.psi_init_scale > 0:
                psi = torch.randn(n_bins) * config.psi_init_scale
            self.psi = nn.Parameter(psi)
            self.register_buffer("avg_phase_gap", torch.zeros(n_bins))
        else:
            self.register_parameter("psi", None)
            self.register_buffer("avg_phase_gap", None)

        # Gains exist only when AVRF is on and its branch is used by the fusion.
        if config.avrf and config.uses_gain_branch:
            self.gains = nn.ParameterList(nn.Parameter(torch.zeros(n_bins)) for _ in range(2))
        else:
            self.gains = None

        if config.fusion == "learned":
            self.fusion_logits = nn.Parameter(torch.tensor(config.fusion_logits))
        else:
            self.register_parameter("fusion_logits", None)

        second = (
            (config.band_low, config.band_high)
            if config.band_shared
            else (config.second_band_low, config.second_band_high)
        )
        masks = [
            band_mask(low, high, config.band_edge, config.band_width, n_bins)
            for low, high in ((config.band_low, config.band_high), second)
        ]
        for m, mask in enumerate(masks):
            if mask is not None and not bool(mask.any()):
                raise ValueError(
                    f"DAMPS band for modality {m} keeps none of the {n_bins} bins "
                    f"(positions f / {n_bins}); widen it"
                )
        if all(mask is None for mask in masks):
            self.register_buffer("band_masks", None, persistent=False)
        else:
            full = torch.ones(n_bins)
            stacked = torch.stack([full if mask is None else mask for mask in masks])  # [2, F]
            self.register_buffer("band_masks", stacked, persistent=False)

        if config.shuffle_spectrum:
            generator = torch.Generator().manual_seed(config.shuffle_seed)
            perm = torch.randperm(embedding_dim, generator=generator)
            self.register_buffer("permutation", perm, persistent=False)
            self.register_buffer("inverse_permutation", torch.argsort(perm), persistent=False)
        else:
            self.register_buffer("permutation", None, persistent=False)
            self.register_buffer("inverse_permutation", None, persistent=False)

        self._initialised = False
        # A checkpoint holds the statistics (avg_phase_gap, gains): loading one initialises.
        self.register_load_state_dict_post_hook(_mark_initialised)

    # ------------------------------------------------------------------ statistics

    @torch.no_grad()
    def initialise(self, backbone_projections: list[Tensor]) -> None:
        """Set avg_R (APC) and the AVRF gains from the initial projections.

        ``input_source="own"``: from this module's own projections of the tables (the
        argument is ignored). ``"backbone"``: from ``backbone_projections``.
        """
        spectra = self._spectra(self._inputs(backbone_projections))
        if self.avg_phase_gap is not None:
            self.avg_phase_gap.copy_(circular_mean_phase_gap(spectra[0], spectra[1]))
        if self.gains is not None:
            for gain, spectrum in zip(self.gains, spectra, strict=True):
                gain.copy_(variance_ratio_logits(spectrum))
        self._initialised = True

    # ------------------------------------------------------------------ forward

    def forward(self, backbone_projections: list[Tensor] | None) -> list[Tensor]:
        """Calibrated projections, N x D per modality.

        ``input_source="own"`` ignores the argument (MGCN passes None) and reads the shared
        feature tables through this module's projections.
        """
        if not self._initialised:
            raise RuntimeError("DAMPS.initialise() must run before forward()")
        cfg = self.config
        spectra = self._spectra(self._inputs(backbone_projections))  # 2 x [N, F] complex
        rotated = self._rotate(spectra)  # 2 x [N, F] complex
        msc = self._coherence(spectra) if cfg.imcf and cfg.uses_coherence_branch else None
        weights = self._fusion_weights()
        outputs = []
        for m, x in enumerate(rotated):
            gain_branch = None
            coherence_branch = None
            if cfg.uses_gain_branch:
                gain_branch = x * self._gain(m) if self.gains is not None else x  # [N, F]
            if cfg.uses_coherence_branch:
                coherence_branch = x * msc if msc is not None else x  # [N, F]
            if gain_branch is None:
                fused = coherence_branch
            elif coherence_branch is None:
                fused = gain_branch
            else:
                fused = weights[0] * gain_branch + weights[1] * coherence_branch  # [N, F]
            if self.band_masks is not None:
                fused = fused * self.band_masks[m]
            out = torch.fft.irfft(fused, n=self.embedding_dim, dim=-1, norm="ortho")  # [N, D]
            if self.inverse_permutation is not None:
                out = out[:, self.inverse_permutation]
            outputs.append(out)
        return outputs

    def regularization(self) -> Tensor:
        """psi_smoothness * sum over adjacent bins of (psi[f + 1] - psi[f])^2."""
        if self.psi is None or self.config.psi_smoothness == 0:
            return self._zero
        return self.config.psi_smoothness * torch.diff(self.psi).square().sum()

    # ------------------------------------------------------------------ parts

    def _inputs(self, backbone_projections: list[Tensor] | None) -> list[Tensor]:
        if self.projections is not None:
            assert self.feature_tables is not None
            # [N, d_m] -> [N, D]
            return [proj(t) for proj, t in zip(self.projections, self.feature_tables, strict=True)]
        if backbone_projections is None or len(backbone_projections) != 2:
            got = None if backbone_projections is None else len(backbone_projections)
            raise ValueError(f'DAMPS input_source="backbone" needs 2 projections; got {got}')
        for m, p in enumerate(backbone_projections):
            if p.dim() != 2 or p.shape[1] != self.embedding_dim:
                raise ValueError(
                    f"DAMPS projection {m} must be N x {self.embedding_dim}; got {tuple(p.shape)}"
                )
        return list(backbone_projections)

    def _spectra(self, projections: list[Tensor]) -> list[Tensor]:
        if self.permutation is not None:
            projections = [p[:, self.permutation] for p in projections]  # [N, D]
        return [torch.fft.rfft(p, dim=-1, norm="ortho") for p in projections]  # [N, F]

    def _rotate(self, spectra: list[Tensor]) -> list[Tensor]:
        if self.psi is None:
            return spectra
        phi = self.avg_phase_gap / 2 + self.psi  # [F]
        ones = torch.ones_like(phi)
        minus = torch.polar(ones, -phi)  # exp(-i phi)
        plus = torch.polar(ones, phi)  # exp(+i phi)
        if self.config.apc_sign == "official":
            return [spectra[0] * minus, spectra[1] * plus]
        return [spectra[0] * plus, spectra[1] * minus]

    def _coherence(self, spectra: list[Tensor]) -> Tensor:
        """Magnitude-squared coherence from the un-rotated spectra: [N, F] or [F] (averaged)."""
        first, second = spectra
        power_first = first.real.square() + first.imag.square()  # |X_v|^2, [N, F]
        power_second = second.real.square() + second.imag.square()  # |X_t|^2, [N, F]
        if self.config.imcf_mode == "official":
            # |X_v conj(X_t)|^2 equals |X_v|^2 |X_t|^2: per item this is an energy threshold.
            power = power_first * power_second
            return power / (power + MSC_EPS)  # [N, F]
        cross = (first * second.conj()).mean(dim=0)  # [F]
        numerator = cross.real.square() + cross.imag.square()
        return numerator / (power_first.mean(dim=0) * power_second.mean(dim=0) + MSC_EPS)  # [F]

    def _gain(self, m: int) -> Tensor:
        assert self.gains is not None
        gain = self.gains[m]  # [F]
        return torch.sigmoid(gain) if self.config.avrf_gain == "sigmoid" else gain

    def _fusion_weights(self) -> tuple[Tensor | float, Tensor | float]:
        if self.fusion_logits is not None:
            weights = torch.softmax(self.fusion_logits, dim=0)
            return weights[0], weights[1]
        if self.config.fusion == "fixed":
            return self.config.fusion_weight, 1.0 - self.config.fusion_weight
        return (1.0, 0.0) if self.config.fusion == "gain" else (0.0, 1.0)


def _mark_initialised(module: nn.Module, incompatible_keys: object) -> None:
    assert isinstance(module, DAMPS)
    module._initialised = True
