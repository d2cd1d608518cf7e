"""The spectrum view: what the best trial's DAMPS learned per frequency bin, for both modalities.

Computed from a checkpoint alone (its config and state_dict): no dataset is read and no model
is built. What is shown is what DAMPS multiplies each modality's spectrum by (see
models/damps.py): the gain of the gain branch, the APC phase rotation and the band mask.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from spectune.dashboards.canvas import IMAGE_COLOUR, TEXT_COLOUR, message_figure, styled
from spectune.dashboards.trials import TrialRow, TrialTable

if TYPE_CHECKING:
    from torch import Tensor

    from spectune.study.config import RunConfig

TITLE = "DAMPS learned spectrum"
PREFIX = "feature_filter."  # DAMPS is MGCN's feature filter: its state_dict keys carry this
MODALITY_NAMES = ("image", "text")  # DAMPS's first modality plays image, the second text
COLOURS = dict(zip(MODALITY_NAMES, (IMAGE_COLOUR, TEXT_COLOUR), strict=True))
BAND_COLOUR = "#7f7f7f"  # a band both modalities share belongs to neither colour
FULL_VARIANT = "full"  # an ablation's reference variant (study/ablation.py FULL)
# Reasons torch.load / build_config / a malformed state_dict give for a file we cannot show.
_UNREADABLE = (
    OSError,
    EOFError,
    RuntimeError,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    pickle.UnpicklingError,
)


@dataclass(frozen=True)
class ModalitySpectrum:
    """Per-bin factors DAMPS applies to one modality's spectrum, bins f = 0..F-1."""

    name: str
    gain: tuple[float, ...] | None  # gain-branch multiplier; None: AVRF off or branch unused
    phase: tuple[float, ...] | None  # rotation angle in radians; None: APC off
    band: tuple[float, ...]  # band mask (all ones for the full band)
    band_edges: tuple[float, float] | None  # (low * F, high * F) in bins; None: full band


@dataclass(frozen=True)
class SpectrumData:
    """Everything the figure draws; ``message`` set means there is nothing to draw, and why."""

    trial_number: int | None = None
    n_bins: int = 0
    modalities: tuple[ModalitySpectrum, ...] = ()
    fusion_weights: tuple[float, float] | None = None  # (gain branch, coherence branch)
    settings: dict[str, str | bool | float] = field(default_factory=dict)  # DAMPS config
    valid_metric: str | None = None
    valid_value: float | None = None
    checkpoint: str | None = None
    note: str | None = None
    message: str | None = None
    # The message reports something to fix (a checkpoint missing or unreadable), not a study
    # that has nothing to show yet: `spectune report` also prints it as a warning.
    problem: bool = False


# ---------------------------------------------------------------------------------- compute


def spectrum_from_checkpoint(path: Path, trial_number: int) -> SpectrumData:
    """The learned spectrum of the DAMPS module stored in the checkpoint at ``path``."""
    if not path.is_file():
        return SpectrumData(
            trial_number,
            checkpoint=str(path),
            problem=True,
            message=(
                f"checkpoint of trial {trial_number} not found: {path}. Checkpoints are written "
                "on the machine of the worker that ran the trial; set SPECTUNE_ARTIFACT_DIR to "
                "a folder shared with the workers to see them here"
            ),
        )
    # Imported here: reading a checkpoint needs torch, listing a study does not.
    from spectune.study.checkpoint import load_checkpoint

    try:
        config, payload = load_checkpoint(path)
        if not config.model.use_damps:
            return SpectrumData(
                trial_number,
                checkpoint=str(path),
                message=(
                    f"trial {trial_number} trains vanilla MGCN (model.use_damps false): "
                    "it has no DAMPS module, hence no learned spectrum"
                ),
            )
        return _from_state(config, payload, trial_number, path)
    except _UNREADABLE as error:
        return SpectrumData(
            trial_number,
            checkpoint=str(path),
            problem=True,
            message=f"cannot read checkpoint {path.name} of trial {trial_number}: {_reason(error)}",
        )


def _from_state(
    config: RunConfig, payload: Mapping[str, Any], trial_number: int, path: Path
) -> SpectrumData:
    import torch

    from spectune.models.damps import band_mask

    damps = config.damps
    state = {
        key.removeprefix(PREFIX): value
        for key, value in payload["state_dict"].items()
        if key.startswith(PREFIX)
    }
    n_bins = config.model.embedding_size // 2 + 1

    def vector(key: str, size: int = n_bins) -> Tensor:
        if key not in state:
            raise ValueError(f"its state_dict lacks {PREFIX}{key}, which its config implies")
        value = state[key]
        if tuple(value.shape) != (size,):
            raise ValueError(
                f"{PREFIX}{key} has shape {tuple(value.shape)}, expected ({size},) "
                f"(embedding_size {config.model.embedding_size})"
            )
        return value.detach()

    # Computed as DAMPS computes them (same ops, same dtype), so the values are the ones applied.
    # Left unwrapped: psi is learned freely, and wrapping to (-pi, pi] would draw jumps that the
    # rotation does not have.
    rotations: list[Tensor | None] = [None, None]
    if damps.apc:
        phi = vector("avg_phase_gap") / 2 + vector("psi")
        # official: first -phi, second +phi (the public code's signs); corrected swaps them.
        first_sign = -1.0 if damps.apc_sign == "official" else 1.0
        rotations = [first_sign * phi, -first_sign * phi]
    gains: list[Tensor | None] = [None, None]
    if damps.avrf and damps.uses_gain_branch:
        raw = [vector(f"gains.{m}") for m in range(2)]
        gains = [torch.sigmoid(g) if damps.avrf_gain == "sigmoid" else g for g in raw]

    bands = [(damps.band_low, damps.band_high)]
    bands.append(bands[0] if damps.band_shared else (damps.second_band_low, damps.second_band_high))
    modalities = []
    for m, name in enumerate(MODALITY_NAMES):
        low, high = bands[m]
        mask = band_mask(low, high, damps.band_edge, damps.band_width, n_bins)
        gain, rotation = gains[m], rotations[m]
        modalities.append(
            ModalitySpectrum(
                name=name,
                gain=None if gain is None else _floats(gain),
                phase=None if rotation is None else _floats(rotation),
                band=(1.0,) * n_bins if mask is None else _floats(mask),
                band_edges=None if mask is None else (low * n_bins, high * n_bins),
            )
        )

    if damps.fusion == "learned":
        weights = _floats(torch.softmax(vector("fusion_logits", 2), dim=0))
        fusion = (weights[0], weights[1])
    elif damps.fusion == "fixed":
        fusion = (damps.fusion_weight, 1.0 - damps.fusion_weight)
    else:
        fusion = (1.0, 0.0) if damps.fusion == "gain" else (0.0, 1.0)

    metric = config.train.valid_metric
    value = (payload.get("valid") or {}).get(metric)
    valid = float(value) if isinstance(value, int | float) and math.isfinite(value) else None
    note = None
    if damps.shuffle_spectrum:
        note = "shuffled-spectrum control: the bins are of permuted coordinates, not frequencies"
    return SpectrumData(
        trial_number=trial_number,
        n_bins=n_bins,
        modalities=tuple(modalities),
        fusion_weights=fusion,
        settings={
            "apc": damps.apc,
            "avrf": damps.avrf,
            "imcf": damps.imcf,
            "input_source": damps.input_source,
            "apc_sign": damps.apc_sign,
            "avrf_gain": damps.avrf_gain,
            "imcf_mode": damps.imcf_mode,
            "fusion": damps.fusion,
            "band_edge": damps.band_edge,
            "band_width": damps.band_width,
            "band_shared": damps.band_shared,
            "shuffle_spectrum": damps.shuffle_spectrum,
        },
        valid_metric=metric,
        valid_value=valid,
        checkpoint=str(path),
        note=note,
    )


def _floats(values: Tensor) -> tuple[float, ...]:
    return tuple(float(x) for x in values.tolist())


def _reason(error: BaseException) -> str:
    # torch's messages run to paragraphs; the first line says what went wrong.
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else ""
    return f"{type(error).__name__}: {first[:200]}" if first else type(error).__name__


def _uses_damps(row: TrialRow) -> bool:
    model = (row.config or {}).get("model")
    # A row without a stored config (not an MGCN trial) trains nothing we could show.
    return isinstance(model, Mapping) and bool(model.get("use_damps", False))


def best_spectrum(table: TrialTable) -> SpectrumData:
    """The spectrum of the best COMPLETE trial with DAMPS (an ablation: the best "full" one)."""
    objective = table.spec.objective if table.spec is not None else None
    if objective == "smoke":
        return SpectrumData(message="smoke studies train no model: there is no spectrum to show")
    ranked = table.ranked()
    if not ranked:
        return SpectrumData(message=f"no COMPLETE trial yet in study {table.study_name}")
    notes: list[str] = []
    if objective == "ablation":
        candidates = [row for row in ranked if row.params.get("variant") == FULL_VARIANT]
        if not candidates:
            return SpectrumData(
                message=f'no COMPLETE trial of the reference variant "{FULL_VARIANT}" yet'
            )
        notes.append(
            f'best of {len(candidates)} COMPLETE "{FULL_VARIANT}" trials '
            f"(seed {candidates[0].params.get('seed')})"
        )
    else:
        candidates = ranked
    with_damps = [row for row in candidates if _uses_damps(row)]
    if not with_damps:
        return SpectrumData(
            message=f"none of the {len(candidates)} COMPLETE trials trains DAMPS (vanilla MGCN)"
        )
    chosen = with_damps[0]
    if chosen is not candidates[0]:
        notes.append(
            f"the best trial, {candidates[0].number}, runs without DAMPS; "
            f"showing the best DAMPS trial, {chosen.number}"
        )
    if not chosen.checkpoint:
        return SpectrumData(
            chosen.number,
            problem=True,
            message=f"trial {chosen.number} has no checkpoint path recorded",
        )
    data = spectrum_from_checkpoint(Path(chosen.checkpoint), chosen.number)
    if data.note:
        notes.append(data.note)
    return replace(data, note="; ".join(notes) or None)


# ----------------------------------------------------------------------------------- render


def draw_spectrum(data: SpectrumData) -> go.Figure:
    """Gain (top) and phase rotation (bottom) against frequency bin, the kept band shaded."""
    if data.message is not None:
        return message_figure(TITLE, data.message)
    figure = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        # the gain row's second axis carries soft band masks, which live on [0, 1]
        specs=[[{"secondary_y": True}], [{"secondary_y": False}]],
    )
    bins = list(range(data.n_bins))
    in_legend: set[str] = set()
    for row, attribute in ((1, "gain"), (2, "phase")):
        for modality in data.modalities:
            values: tuple[float, ...] | None = getattr(modality, attribute)
            if values is None:
                continue
            figure.add_trace(
                go.Scatter(
                    x=bins,
                    y=list(values),
                    mode="lines+markers",
                    name=modality.name,
                    legendgroup=modality.name,
                    showlegend=modality.name not in in_legend,
                    line={"color": COLOURS[modality.name]},
                    marker={"size": 4},
                ),
                row=row,
                col=1,
            )
            in_legend.add(modality.name)
        if all(getattr(m, attribute) is None for m in data.modalities):
            figure.add_annotation(
                text=_absent(data, attribute),
                x=0.5,
                y=0.5,
                xref="x domain",
                yref="y domain",
                showarrow=False,
                font={"size": 14, "color": BAND_COLOUR},
                row=row,
                col=1,
            )
    _draw_bands(figure, data)

    gain_title = "gain (sigmoid)" if data.settings.get("avrf_gain") == "sigmoid" else "gain (raw)"
    figure.update_yaxes(title_text=gain_title, row=1, col=1, secondary_y=False)
    figure.update_yaxes(title_text="phase rotation (rad)", row=2, col=1)
    figure.update_xaxes(title_text=f"frequency bin f (F = {data.n_bins})", row=2, col=1)
    figure.update_xaxes(range=[-0.5, data.n_bins - 0.5])
    figure = styled(figure, _title(data), height=640)
    # room for the title's subtitle lines above the plot: one more when there is a note
    figure.update_layout(margin={"t": 130 if data.note else 110})
    return figure


def _draw_bands(figure: go.Figure, data: SpectrumData) -> None:
    """Shade each distinct kept band [low * F, high * F) in both rows.

    Hard edges: the shaded range holds exactly the kept bins. Soft edges: the same range (each
    sigmoid roll-off is centred on its edge) plus the mask itself as a dotted line on the gain
    row's second axis, because a rectangle hides the roll-off and a peak below 1 (narrow band).
    """
    soft = data.settings.get("band_edge") == "soft"
    for label, colour, modality in _distinct_bands(data.modalities):
        assert modality.band_edges is not None
        low, high = modality.band_edges
        for row in (1, 2):
            figure.add_vrect(
                x0=low, x1=high, fillcolor=colour, opacity=0.1, line_width=0, row=row, col=1
            )
        if soft:
            figure.add_trace(
                go.Scatter(
                    x=list(range(data.n_bins)),
                    y=list(modality.band),
                    mode="lines",
                    name=f"{label} mask",
                    line={"color": colour, "dash": "dot"},
                ),
                row=1,
                col=1,
                secondary_y=True,
            )
    if soft:
        figure.update_yaxes(
            title_text="band mask",
            range=[0, 1.05],
            tickvals=[0, 0.5, 1],
            showgrid=False,
            row=1,
            col=1,
            secondary_y=True,
        )


def _distinct_bands(
    modalities: Sequence[ModalitySpectrum],
) -> list[tuple[str, str, ModalitySpectrum]]:
    """(label, colour, modality) per band to draw: a band both modalities share is drawn once."""
    cut = [m for m in modalities if m.band_edges is not None]
    if len(cut) == len(modalities) == 2 and cut[0].band == cut[1].band:
        return [("band", BAND_COLOUR, cut[0])]
    return [(f"{m.name} band", COLOURS[m.name], m) for m in cut]


def _absent(data: SpectrumData, attribute: str) -> str:
    if attribute == "phase":
        return "APC off: no phase rotation"
    if data.settings.get("fusion") == "coherence":
        return "fusion uses the coherence branch only: no gain"
    return "AVRF off: gain 1 on every bin"


def _title(data: SpectrumData) -> str:
    title = f"{TITLE}: trial {data.trial_number}"
    if data.valid_metric is not None and data.valid_value is not None:
        title += f" (valid {data.valid_metric} = {data.valid_value:.4f})"
    lines = [_subtitle(data)]
    if data.note:
        lines.append(data.note)
    return title + "".join(f"<br><sup>{line}</sup>" for line in lines)


def _subtitle(data: SpectrumData) -> str:
    settings = data.settings
    parts = []
    if data.fusion_weights is not None:
        gain, coherence = data.fusion_weights
        parts.append(
            f"fusion ({settings.get('fusion')}): gain {gain:.3f}, coherence {coherence:.3f}"
        )
    parts.append(f"apc_sign {settings.get('apc_sign')}, avrf_gain {settings.get('avrf_gain')}")
    bands = [
        f"{m.name} [{m.band_edges[0]:.4g}, {m.band_edges[1]:.4g})"
        for m in data.modalities
        if m.band_edges is not None
    ]
    if bands:
        edge = settings.get("band_edge")
        width = f", width {settings.get('band_width')}" if edge == "soft" else ""
        parts.append(f"{edge} band in bins: {', '.join(bands)}{width}")
    else:
        parts.append("full band")
    return " | ".join(parts)
