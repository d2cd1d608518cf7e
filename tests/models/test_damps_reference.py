"""DAMPS against an independent float64 reference of shared/design/DAMPS.md (loops, numpy)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from spectune.models.damps import DAMPS, DampsConfig

# ---------------------------------------------------------------- the reference


def dft(p: np.ndarray) -> np.ndarray:
    """Orthonormal real DFT along the last axis: N x D -> N x (D // 2 + 1)."""
    n_items, dim = p.shape
    out = np.zeros((n_items, dim // 2 + 1), dtype=complex)
    for f in range(dim // 2 + 1):
        for n in range(dim):
            out[:, f] += p[:, n] * np.exp(-2j * np.pi * f * n / dim)
    return out / np.sqrt(dim)


def idft(spectrum: np.ndarray, dim: int) -> np.ndarray:
    """Inverse of ``dft`` for a Hermitian spectrum; imaginary parts of DC/Nyquist are dropped."""
    n_items, n_bins = spectrum.shape
    out = np.zeros((n_items, dim))
    for n in range(dim):
        acc = spectrum[:, 0].real.copy()
        for f in range(1, n_bins):
            weight = 1.0 if (dim % 2 == 0 and f == dim // 2) else 2.0
            acc += weight * (spectrum[:, f] * np.exp(2j * np.pi * f * n / dim)).real
        out[:, n] = acc / np.sqrt(dim)
    return out


def sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-x))


def lower_median(values: np.ndarray) -> float:
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def reference_avg_gap(x_v: np.ndarray, x_t: np.ndarray) -> np.ndarray:
    n_bins = x_v.shape[1]
    gap = np.zeros(n_bins)
    for f in range(n_bins):
        unit = [np.exp(1j * (np.angle(x_t[i, f]) - np.angle(x_v[i, f]))) for i in range(len(x_v))]
        gap[f] = np.angle(np.mean(unit))
    return gap


def reference_gain(x: np.ndarray) -> np.ndarray:
    n_bins = x.shape[1]
    ratio = np.zeros(n_bins)
    for f in range(n_bins):
        a = np.abs(x[:, f])
        total = np.mean((a - a.mean()) ** 2)
        mad = lower_median(np.abs(a - lower_median(a)))
        within = (1.4826 * mad) ** 2
        between = max(total - within, 0.0)
        ratio[f] = between / (between + within + 1e-6)
    z = (ratio - ratio.mean()) / (np.sqrt(np.mean((ratio - ratio.mean()) ** 2)) + 1e-6)
    p = np.clip(sigmoid(z), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def reference_mask(low: float, high: float, edge: str, width: float, n_bins: int) -> np.ndarray:
    mask = np.ones(n_bins)
    for f in range(n_bins):
        x = f / n_bins
        if edge == "hard":
            mask[f] = 1.0 if low <= x < high else 0.0
        else:
            if low > 0:
                mask[f] *= sigmoid((x - low) / width)
            if high < 1:
                mask[f] *= sigmoid((high - x) / width)
    return mask


def reference_damps(
    p_v: np.ndarray,
    p_t: np.ndarray,
    config: DampsConfig,
    avg_gap: np.ndarray | None,
    psi: np.ndarray | None,
    gains: list[np.ndarray] | None,
    logits: np.ndarray | None,
) -> list[np.ndarray]:
    dim = p_v.shape[1]
    n_bins = dim // 2 + 1
    perm = None
    if config.shuffle_spectrum:
        generator = torch.Generator().manual_seed(config.shuffle_seed)
        perm = torch.randperm(dim, generator=generator).numpy()
        p_v, p_t = p_v[:, perm], p_t[:, perm]
    x = [dft(p_v), dft(p_t)]

    # APC
    if config.apc:
        phi = avg_gap / 2 + psi
        signs = (-1, 1) if config.apc_sign == "official" else (1, -1)
        rotated = [x[m] * np.exp(1j * signs[m] * phi) for m in range(2)]
    else:
        rotated = x
    # AVRF
    if config.avrf and config.fusion != "coherence":
        gain = [g if config.avrf_gain == "raw" else sigmoid(g) for g in gains]
    else:
        gain = [np.ones(n_bins), np.ones(n_bins)]
    # IMCF
    msc = np.ones_like(x[0].real)
    if config.imcf and config.imcf_mode == "official":
        for i in range(len(p_v)):
            for f in range(n_bins):
                cross = x[0][i, f] * np.conj(x[1][i, f])
                power = abs(x[0][i, f]) ** 2 * abs(x[1][i, f]) ** 2
                msc[i, f] = abs(cross) ** 2 / (power + 1e-8)
    elif config.imcf:
        for f in range(n_bins):
            cross = np.mean(x[0][:, f] * np.conj(x[1][:, f]))
            power = np.mean(abs(x[0][:, f]) ** 2) * np.mean(abs(x[1][:, f]) ** 2)
            msc[:, f] = abs(cross) ** 2 / (power + 1e-8)
    # fusion weights
    if config.fusion == "learned":
        lam = np.exp(logits) / np.exp(logits).sum()
    elif config.fusion == "fixed":
        lam = np.array([config.fusion_weight, 1 - config.fusion_weight])
    elif config.fusion == "gain":
        lam = np.array([1.0, 0.0])
    else:
        lam = np.array([0.0, 1.0])
    bands = [(config.band_low, config.band_high)]
    if config.band_shared:
        bands.append((config.band_low, config.band_high))
    else:
        bands.append((config.second_band_low, config.second_band_high))

    outputs = []
    for m in range(2):
        fused = lam[0] * rotated[m] * gain[m] + lam[1] * rotated[m] * msc
        low, high = bands[m]
        fused = fused * reference_mask(low, high, config.band_edge, config.band_width, n_bins)
        out = idft(fused, dim)
        if perm is not None:
            unshuffled = np.zeros_like(out)
            for j in range(dim):
                unshuffled[:, perm[j]] = out[:, j]
            out = unshuffled
        outputs.append(out)
    return outputs


# ---------------------------------------------------------------- helpers

N_ITEMS = 10
WIDTHS = (11, 6)


@contextmanager
def float64_default() -> Iterator[None]:
    """Build modules in float64 (their band masks are computed in the default dtype)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _row_scales(n_items: int, generator: torch.Generator) -> torch.Tensor:
    """Per-item scales 10^-3..1, so that the per-item coherence is not ~1 everywhere."""
    return 10 ** (-3 * torch.rand(n_items, 1, generator=generator, dtype=torch.float64))


def make_damps(
    config: DampsConfig, dim: int = 8, n_items: int = N_ITEMS, seed: int = 0
) -> tuple[DAMPS, list[nn.Parameter], list[torch.Tensor]]:
    """A float64 DAMPS, initialised, with its tables and some backbone projections."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    tables = [
        nn.Parameter(
            torch.randn(n_items, w, generator=generator, dtype=torch.float64)
            * _row_scales(n_items, generator)
        )
        for w in WIDTHS
    ]
    with float64_default():
        damps = DAMPS(dim, tables, config)
    if damps.projections is not None:
        with torch.no_grad():
            for proj in damps.projections:
                proj.weight.copy_(0.3 * torch.randn(proj.weight.shape, generator=generator))
                proj.bias.copy_(1e-3 * torch.randn(proj.bias.shape, generator=generator))
    projections = [
        torch.randn(n_items, dim, generator=generator, dtype=torch.float64)
        * _row_scales(n_items, generator)
        for _ in range(2)
    ]
    damps.initialise(projections)
    return damps, tables, projections


def perturb(damps: DAMPS, seed: int = 1) -> None:
    """Move every learned value (and avg_R) away from its init so the comparison is sensitive."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if damps.psi is not None:
            damps.psi.copy_(0.7 * torch.randn(damps.psi.shape, generator=generator))
            gap = (2 * torch.rand(damps.psi.shape, generator=generator) - 1) * math.pi
            damps.avg_phase_gap.copy_(gap)
        if damps.gains is not None:
            for gain in damps.gains:
                gain.copy_(torch.randn(gain.shape, generator=generator))
        if damps.fusion_logits is not None:
            damps.fusion_logits.copy_(torch.randn(2, generator=generator))


def damps_inputs(damps: DAMPS, projections: list[torch.Tensor]) -> list[np.ndarray]:
    """What DAMPS calibrates: its own projections of the tables, or the backbone's."""
    if damps.projections is None:
        return [p.numpy() for p in projections]
    return [
        (t.detach() @ proj.weight.detach().T + proj.bias.detach()).numpy()
        for proj, t in zip(damps.projections, damps.feature_tables, strict=True)
    ]


def check_against_reference(damps: DAMPS, projections: list[torch.Tensor]) -> None:
    def array(t: torch.Tensor | None) -> np.ndarray | None:
        return None if t is None else t.detach().numpy()

    inputs = damps_inputs(damps, projections)
    expected = reference_damps(
        inputs[0],
        inputs[1],
        damps.config,
        array(damps.avg_phase_gap),
        array(damps.psi),
        None if damps.gains is None else [array(g) for g in damps.gains],
        array(damps.fusion_logits),
    )
    with torch.no_grad():
        actual = damps(projections if damps.reads_backbone else None)
    for a, e in zip(actual, expected, strict=True):
        assert a.shape == e.shape
        np.testing.assert_allclose(a.numpy(), e, rtol=1e-6, atol=1e-9)


VARIANTS = {
    "official": {},
    "apc_sign_corrected": {"apc_sign": "corrected"},
    "avrf_gain_sigmoid": {"avrf_gain": "sigmoid"},
    "imcf_averaged": {"imcf_mode": "averaged"},
    "fusion_fixed": {"fusion": "fixed", "fusion_weight": 0.3},
    "fusion_gain": {"fusion": "gain"},
    "fusion_coherence": {"fusion": "coherence"},
    "apc_off": {"apc": False},
    "avrf_off": {"avrf": False},
    "imcf_off": {"imcf": False},
    "all_off": {"apc": False, "avrf": False, "imcf": False},
    "hard_band": {"band_low": 0.2, "band_high": 0.7},
    "soft_band": {"band_low": 0.2, "band_high": 0.7, "band_edge": "soft", "band_width": 0.1},
    "soft_top_only": {"band_high": 0.6, "band_edge": "soft"},
    "per_modality_band": {"band_shared": False, "second_band_low": 0.4},
    "shuffle": {"shuffle_spectrum": True, "shuffle_seed": 3},
}


# ---------------------------------------------------------------- forward against the reference


@pytest.mark.parametrize("input_source", ["own", "backbone"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_forward_matches_reference(input_source: str, variant: str) -> None:
    config = DampsConfig(input_source=input_source, **VARIANTS[variant])
    damps, _, projections = make_damps(config)
    perturb(damps)
    check_against_reference(damps, projections)


@pytest.mark.parametrize("dim", [9, 16])
def test_forward_matches_reference_other_sizes(dim: int) -> None:
    """An odd D (no Nyquist bin) and a larger even one."""
    damps, _, projections = make_damps(DampsConfig(input_source="backbone"), dim=dim)
    perturb(damps)
    check_against_reference(damps, projections)


def test_official_msc_is_not_trivially_one_in_this_test() -> None:
    """Guard for the test itself: the per-item coherence varies, so IMCF is exercised."""
    damps, _, projections = make_damps(DampsConfig(input_source="backbone"))
    spectra = damps._spectra(projections)
    msc = damps._coherence(spectra)
    assert msc.min() < 0.5 < msc.max()


@pytest.mark.parametrize("input_source", ["own", "backbone"])
@pytest.mark.parametrize("n_items", [10, 11])
def test_initial_statistics_match_reference(input_source: str, n_items: int) -> None:
    damps, _, projections = make_damps(DampsConfig(input_source=input_source), n_items=n_items)
    inputs = damps_inputs(damps, projections)
    x_v, x_t = dft(inputs[0]), dft(inputs[1])
    expected_gap = reference_avg_gap(x_v, x_t)
    # angles are compared on the circle (+-pi are the same calibration)
    np.testing.assert_allclose(
        np.exp(1j * damps.avg_phase_gap.numpy()), np.exp(1j * expected_gap), atol=1e-9
    )
    for gain, x in zip(damps.gains, (x_v, x_t), strict=True):
        np.testing.assert_allclose(gain.detach().numpy(), reference_gain(x), rtol=1e-6, atol=1e-9)
    assert torch.count_nonzero(damps.psi) == 0


def test_psi_init_scale_draws_psi() -> None:
    damps, _, _ = make_damps(DampsConfig(psi_init_scale=0.5))
    assert torch.count_nonzero(damps.psi) == damps.n_bins
    assert 0.05 < damps.psi.std().item() < 2.0


def test_fusion_logits_initial_softmax() -> None:
    damps, _, _ = make_damps(DampsConfig())
    weights = torch.softmax(damps.fusion_logits, dim=0)
    expected = torch.softmax(torch.tensor([0.6, 0.4], dtype=torch.float64), dim=0)
    torch.testing.assert_close(weights, expected)


# ---------------------------------------------------------------- bands


def _outputs(config: DampsConfig, seed: int = 0) -> list[torch.Tensor]:
    damps, _, projections = make_damps(config, seed=seed)
    perturb(damps)
    with torch.no_grad():
        return damps(projections)


@pytest.mark.parametrize(
    "band",
    [
        {"band_low": 0.0, "band_high": 1.0},
        {"band_low": 0.0, "band_high": 1.0, "band_edge": "soft"},
        {"band_shared": False, "second_band_low": 0.0, "second_band_high": 1.0},
    ],
)
def test_full_band_is_bit_exact_official(band: dict) -> None:
    official = _outputs(DampsConfig(input_source="backbone"))
    banded = _outputs(DampsConfig(input_source="backbone", **band))
    for a, b in zip(official, banded, strict=True):
        assert torch.equal(a, b)


def test_hard_band_zeroes_bins_outside() -> None:
    base = DampsConfig(input_source="backbone")
    official = _outputs(base)
    banded = _outputs(replace(base, band_low=0.25, band_high=0.75))
    n_bins = 8 // 2 + 1
    inside = torch.tensor([0.25 <= f / n_bins < 0.75 for f in range(n_bins)])
    assert 0 < int(inside.sum()) < n_bins
    for a, b in zip(official, banded, strict=True):
        spectrum_a = torch.fft.rfft(a, dim=-1, norm="ortho")
        spectrum_b = torch.fft.rfft(b, dim=-1, norm="ortho")
        assert spectrum_b[:, ~inside].abs().max() < 1e-12
        torch.testing.assert_close(spectrum_b[:, inside], spectrum_a[:, inside])


def test_soft_band_differs_from_hard() -> None:
    base = DampsConfig(input_source="backbone", band_low=0.25, band_high=0.75)
    hard = _outputs(base)
    soft = _outputs(replace(base, band_edge="soft"))
    for a, b in zip(hard, soft, strict=True):
        assert not torch.allclose(a, b)


def test_soft_band_width_matters() -> None:
    base = DampsConfig(input_source="backbone", band_low=0.25, band_edge="soft")
    narrow = _outputs(base)
    wide = _outputs(replace(base, band_width=0.3))
    assert not torch.allclose(narrow[0], wide[0])


def test_per_modality_band_differs_from_shared() -> None:
    base = DampsConfig(input_source="backbone", band_low=0.0, band_high=0.5)
    shared = _outputs(base)
    split = _outputs(replace(base, band_shared=False, second_band_low=0.5, second_band_high=1.0))
    assert torch.equal(shared[0], split[0])
    assert not torch.allclose(shared[1], split[1])


def test_empty_hard_band_is_rejected() -> None:
    with pytest.raises(ValueError, match="keeps none"):
        make_damps(DampsConfig(band_low=0.5, band_high=0.55))


# ---------------------------------------------------------------- input source


def test_backbone_input_output_depends_on_projections() -> None:
    damps, _, projections = make_damps(DampsConfig(input_source="backbone"))
    assert damps.reads_backbone
    with torch.no_grad():
        before = damps(projections)
        after = damps([p + 0.1 for p in projections])
    assert not torch.allclose(before[0], after[0])
    assert not torch.allclose(before[1], after[1])
    assert not any("feature_tables" in name for name, _ in damps.named_parameters())


def test_own_input_ignores_argument_and_reads_tables() -> None:
    damps, tables, projections = make_damps(DampsConfig())
    assert not damps.reads_backbone
    with torch.no_grad():
        from_none = damps(None)
        from_args = damps([p * 5 for p in projections])
        assert all(torch.equal(a, b) for a, b in zip(from_none, from_args, strict=True))
        tables[0].add_(0.5)  # the tables are read in place
        changed = damps(None)
    assert not torch.allclose(from_none[0], changed[0])
    assert all(a is b for a, b in zip(damps.feature_tables, tables, strict=True))


def test_forward_before_initialise_raises() -> None:
    tables = [nn.Parameter(torch.randn(4, w)) for w in WIDTHS]
    with pytest.raises(RuntimeError, match="initialise"):
        DAMPS(8, tables)(None)


def test_load_state_dict_restores_statistics() -> None:
    damps, tables, _ = make_damps(DampsConfig(psi_init_scale=0.3))
    perturb(damps)
    with float64_default():
        fresh = DAMPS(8, tables, DampsConfig(psi_init_scale=0.3))
    fresh.load_state_dict(damps.state_dict())
    with torch.no_grad():
        for a, b in zip(damps(None), fresh(None), strict=True):
            assert torch.equal(a, b)


def test_regularization_is_psi_smoothness() -> None:
    damps, _, _ = make_damps(DampsConfig(psi_smoothness=0.3))
    assert damps.regularization().item() == 0.0  # psi starts at zero
    perturb(damps)
    psi = damps.psi.detach().numpy()
    expected = 0.3 * sum((psi[f + 1] - psi[f]) ** 2 for f in range(len(psi) - 1))
    assert damps.regularization().item() == pytest.approx(expected, rel=1e-12)
    off, _, _ = make_damps(DampsConfig(apc=False, psi_smoothness=0.3))
    assert off.regularization().item() == 0.0


def test_switched_off_components_have_no_parameters() -> None:
    damps, _, _ = make_damps(
        DampsConfig(apc=False, avrf=False, fusion="fixed", input_source="backbone")
    )
    assert list(damps.parameters()) == []
    damps, _, _ = make_damps(DampsConfig(fusion="coherence", input_source="backbone"))
    assert [name for name, _ in damps.named_parameters()] == ["psi"]


def test_gradients_reach_damps_parameters() -> None:
    damps, tables, _ = make_damps(DampsConfig(psi_smoothness=0.1))
    perturb(damps)
    outputs = damps(None)
    (sum(o.square().sum() for o in outputs) + damps.regularization()).backward()
    for name, param in damps.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert tables[0].grad is not None


# ---------------------------------------------------------------- construction errors


@pytest.mark.parametrize("n_modalities", [1, 3])
def test_damps_needs_two_modalities(n_modalities: int) -> None:
    tables = [nn.Parameter(torch.randn(4, 3)) for _ in range(n_modalities)]
    with pytest.raises(ValueError, match="exactly two modalities"):
        DAMPS(8, tables)


def test_own_input_needs_parameters() -> None:
    with pytest.raises(ValueError, match=r"nn\.Parameter"):
        DAMPS(8, [torch.randn(4, 3), torch.randn(4, 2)])


def test_tables_need_equal_rows() -> None:
    with pytest.raises(ValueError, match="one row per item"):
        DAMPS(8, [nn.Parameter(torch.randn(4, 3)), nn.Parameter(torch.randn(5, 3))])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"apc": "yes"}, r"DampsConfig\.apc must be a bool; got 'yes'"),
        ({"input_source": "mine"}, r"input_source must be one of own, backbone; got 'mine'"),
        ({"apc_sign": "minus"}, "apc_sign must be one of"),
        ({"avrf_gain": "tanh"}, "avrf_gain must be one of"),
        ({"imcf_mode": "local"}, "imcf_mode must be one of"),
        ({"fusion": "mean"}, "fusion must be one of"),
        ({"band_edge": "smooth"}, "band_edge must be one of"),
        ({"fusion_logits": (1.0,)}, "fusion_logits must be two finite real numbers"),
        ({"fusion_logits": (1.0, math.inf)}, "fusion_logits must be two finite"),
        ({"fusion_weight": 1.5}, r"0 <= fusion_weight <= 1; got 1\.5"),
        ({"band_low": 0.5, "band_high": 0.5}, r"band_low=0\.5, band_high=0\.5"),
        ({"band_low": -0.1}, r"0 <= band_low < band_high <= 1"),
        ({"band_high": 1.2}, r"band_high=1\.2"),
        ({"second_band_low": 0.9, "second_band_high": 0.1}, "second_band_low < second_band_high"),
        ({"band_low": math.nan}, "band_low must be a finite real number; got nan"),
        ({"band_width": 0.0}, r"band_width must be > 0; got 0\.0"),
        ({"psi_init_scale": -1.0}, r"psi_init_scale must be >= 0; got -1\.0"),
        ({"psi_smoothness": -0.1}, "psi_smoothness must be >= 0"),
        ({"shuffle_seed": -1}, "shuffle_seed must be an int >= 0; got -1"),
        ({"shuffle_seed": 1.5}, "shuffle_seed must be an int"),
        ({"band_width": True}, "band_width must be a finite real number"),
    ],
)
def test_config_validation(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DampsConfig(**fields)


def test_config_normalises_logits() -> None:
    assert DampsConfig(fusion_logits=[1, 2]).fusion_logits == (1.0, 2.0)
