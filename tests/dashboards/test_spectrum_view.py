"""The spectrum view on real checkpoints of MGCN + DAMPS whose DAMPS parameters are set by hand."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from spectune.dashboards.spectrum import (
    SpectrumData,
    best_spectrum,
    draw_spectrum,
    spectrum_from_checkpoint,
)
from spectune.dashboards.trials import trial_table
from spectune.datasets.cache import build_graphs
from spectune.datasets.synthetic import TINY, make_synthetic
from spectune.study.build import build_model
from spectune.study.checkpoint import save_checkpoint
from spectune.study.config import RunConfig, build_config
from spectune.study.run import PreparedData
from spectune.study.spec import StudySpec, save_spec
from spectune.study.trainer import TrainResult

F = 9  # embedding_size 16 -> 16 // 2 + 1 bins
BINS = range(F)
# The values the tests store in DAMPS, as plain floats (the expectations are computed from these).
AVG_PHASE_GAP = [0.1 * (f - 4) for f in BINS]
PSI = [0.05 * f for f in BINS]
GAINS = ([f - 4.0 for f in BINS], [0.5 * (4 - f) for f in BINS])
FUSION_LOGITS = [1.0, 0.0]
VALID = 0.1234


@pytest.fixture(scope="module")
def tiny() -> PreparedData:
    dataset = make_synthetic(TINY, seed=0)
    return PreparedData(dataset, build_graphs(dataset, 5, None), 0.0)


@pytest.fixture
def make_checkpoint(tiny: PreparedData, tmp_path: Path) -> Any:
    """(name, **config overrides) -> a saved checkpoint holding the known DAMPS values."""

    def make(name: str = "model", **overrides: object) -> Path:
        config = small_config(**overrides)
        torch.manual_seed(0)
        model = build_model(config, tiny.dataset, tiny.graphs)
        damps = model.feature_filter
        if damps is not None:
            with torch.no_grad():
                if damps.psi is not None:
                    damps.psi.copy_(torch.tensor(PSI))
                    damps.avg_phase_gap.copy_(torch.tensor(AVG_PHASE_GAP))
                if damps.gains is not None:
                    for gain, values in zip(damps.gains, GAINS):
                        gain.copy_(torch.tensor(values))
                if damps.fusion_logits is not None:
                    damps.fusion_logits.copy_(torch.tensor(FUSION_LOGITS))
        result = TrainResult(
            config=config.to_dict(),
            best_epoch=0,
            valid={"recall@20": VALID},
            test={"recall@20": 0.2},
            epochs_run=1,
            stopped_by="epochs",
            seconds_per_epoch=0.1,
            eval_seconds=0.1,
        )
        path = tmp_path / f"{name}.pt"
        save_checkpoint(path, model, result)
        return path

    return make


def small_config(**overrides: object) -> RunConfig:
    base = {"dataset": TINY.name, "knn_k": 5, "embedding_size": 16, "topk": [5, 10, 20]}
    return build_config({}, base | overrides)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def phi() -> list[float]:
    return [a / 2 + p for a, p in zip(AVG_PHASE_GAP, PSI)]


def close(values: tuple[float, ...] | None, expected: list[float]) -> bool:
    assert values is not None
    return list(values) == pytest.approx(expected, rel=1e-6, abs=1e-6)


def hard(low: float, high: float) -> list[float]:
    return [1.0 if low <= f / F < high else 0.0 for f in BINS]


# --------------------------------------------------------------------- spectrum_from_checkpoint


def test_official_sign_raw_gain_and_learned_fusion(make_checkpoint: Any) -> None:
    data = spectrum_from_checkpoint(make_checkpoint(), 7)
    assert data.message is None and data.note is None
    assert data.trial_number == 7 and data.n_bins == F
    image, text = data.modalities
    assert (image.name, text.name) == ("image", "text")
    assert close(image.gain, GAINS[0]) and close(text.gain, GAINS[1])  # raw: negative kept
    assert close(image.phase, [-x for x in phi()]) and close(text.phase, phi())
    assert image.band == text.band == (1.0,) * F
    assert image.band_edges is None and text.band_edges is None
    e = math.exp(1.0)
    assert data.fusion_weights == pytest.approx((e / (e + 1), 1 / (e + 1)))
    assert data.valid_metric == "recall@20" and data.valid_value == pytest.approx(VALID)
    assert data.settings["apc_sign"] == "official" and data.settings["avrf_gain"] == "raw"


def test_corrected_sign_swaps_rotations_and_sigmoid_gain(make_checkpoint: Any) -> None:
    data = spectrum_from_checkpoint(make_checkpoint(apc_sign="corrected", avrf_gain="sigmoid"), 1)
    image, text = data.modalities
    assert close(image.phase, phi()) and close(text.phase, [-x for x in phi()])
    assert close(image.gain, [sigmoid(g) for g in GAINS[0]])
    assert close(text.gain, [sigmoid(g) for g in GAINS[1]])


@pytest.mark.parametrize(
    ("overrides", "has_gain", "has_phase", "fusion"),
    [
        ({"apc": False}, True, False, None),
        ({"avrf": False}, False, True, None),
        ({"fusion": "coherence"}, False, True, (0.0, 1.0)),
        ({"fusion": "gain"}, True, True, (1.0, 0.0)),
        ({"fusion": "fixed", "fusion_weight": 0.7}, True, True, (0.7, 0.3)),
    ],
)
def test_components_off_leave_their_curve_out(
    make_checkpoint: Any,
    overrides: dict[str, object],
    has_gain: bool,
    has_phase: bool,
    fusion: tuple[float, float] | None,
) -> None:
    data = spectrum_from_checkpoint(make_checkpoint(**overrides), 2)
    assert data.message is None
    for modality, gains, sign in zip(data.modalities, GAINS, (-1.0, 1.0)):
        if has_gain:
            assert close(modality.gain, gains)
        else:
            assert modality.gain is None
        if has_phase:
            assert close(modality.phase, [sign * x for x in phi()])
        else:
            assert modality.phase is None
    if fusion is not None:
        assert data.fusion_weights == pytest.approx(fusion)


def test_hard_band_is_one_exactly_inside(make_checkpoint: Any) -> None:
    data = spectrum_from_checkpoint(make_checkpoint(band_low=0.2, band_high=0.6), 3)
    expected = hard(0.2, 0.6)
    assert expected.count(1.0) == 4  # bins 2..5 of 9: the test is not vacuous
    for modality in data.modalities:
        assert list(modality.band) == expected
        assert modality.band_edges == pytest.approx((0.2 * F, 0.6 * F))


def test_soft_band_follows_the_sigmoid_roll_off(make_checkpoint: Any) -> None:
    path = make_checkpoint(band_low=0.2, band_high=0.6, band_edge="soft", band_width=0.1)
    data = spectrum_from_checkpoint(path, 4)
    expected = [sigmoid((f / F - 0.2) / 0.1) * sigmoid((0.6 - f / F) / 0.1) for f in BINS]
    for modality in data.modalities:
        assert close(modality.band, expected)


def test_bands_per_modality_when_not_shared(make_checkpoint: Any) -> None:
    path = make_checkpoint(
        band_low=0.0, band_high=0.5, band_shared=False, second_band_low=0.5, second_band_high=1.0
    )
    image, text = spectrum_from_checkpoint(path, 5).modalities
    assert list(image.band) == hard(0.0, 0.5) and list(text.band) == hard(0.5, 1.0)
    assert image.band_edges == pytest.approx((0.0, 0.5 * F))
    assert text.band_edges == pytest.approx((0.5 * F, F))


def test_shuffled_spectrum_is_noted(make_checkpoint: Any) -> None:
    data = spectrum_from_checkpoint(make_checkpoint(shuffle_spectrum=True), 6)
    assert data.message is None and data.note is not None and "shuffled" in data.note


def test_vanilla_mgcn_has_no_spectrum(make_checkpoint: Any) -> None:
    data = spectrum_from_checkpoint(make_checkpoint(use_damps=False), 8)
    assert data.message is not None and "no DAMPS" in data.message and "trial 8" in data.message
    assert data.modalities == ()


def test_missing_and_unreadable_files_give_messages(tmp_path: Path) -> None:
    missing = spectrum_from_checkpoint(tmp_path / "gone.pt", 9)
    assert missing.message is not None
    assert "gone.pt" in missing.message and "SPECTUNE_ARTIFACT_DIR" in missing.message
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    unreadable = spectrum_from_checkpoint(garbage, 9)
    assert unreadable.message is not None
    assert "cannot read checkpoint garbage.pt" in unreadable.message


def test_state_dict_that_contradicts_its_config_gives_a_message(
    tiny: PreparedData, tmp_path: Path
) -> None:
    model = build_model(small_config(apc=False), tiny.dataset, tiny.graphs)
    # The stored config says APC is on, but the weights hold no psi.
    result = TrainResult(small_config().to_dict(), 0, {}, {}, 1, "epochs", 0.1, 0.1)
    path = tmp_path / "mixed.pt"
    save_checkpoint(path, model, result)
    data = spectrum_from_checkpoint(path, 3)
    assert data.message is not None and "mixed.pt" in data.message
    assert "lacks feature_filter.avg_phase_gap" in data.message


# -------------------------------------------------------------------------------- best_spectrum


def add_trial(
    study: optuna.Study,
    value: float | None,
    config: RunConfig | None,
    checkpoint: Path | str | None,
    params: dict[str, Any] | None = None,
    state: TrialState = TrialState.COMPLETE,
) -> None:
    user_attrs: dict[str, Any] = {}
    if config is not None:
        user_attrs["config"] = config.to_dict()
    if checkpoint is not None:
        user_attrs["checkpoint"] = str(checkpoint)
    params = params or {}
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            value=value,
            params=params,
            distributions={name: CategoricalDistribution([v]) for name, v in params.items()},
            user_attrs=user_attrs,
        )
    )


def new_study() -> optuna.Study:
    return optuna.create_study(direction="maximize")


def test_best_damps_trial_is_chosen_and_a_better_vanilla_one_noted(make_checkpoint: Any) -> None:
    damps, vanilla = make_checkpoint("damps"), make_checkpoint("vanilla", use_damps=False)
    study = new_study()
    add_trial(study, 0.3, small_config(), damps)
    add_trial(study, 0.5, small_config(use_damps=False), vanilla)
    add_trial(study, 0.4, small_config(), damps)
    add_trial(study, None, small_config(), damps, state=TrialState.FAIL)
    data = best_spectrum(trial_table(study))
    assert data.message is None and data.trial_number == 2
    assert data.note is not None and "best trial, 1, runs without DAMPS" in data.note
    assert close(data.modalities[0].gain, GAINS[0])


def test_best_trial_with_damps_has_no_note(make_checkpoint: Any) -> None:
    study = new_study()
    add_trial(study, 0.3, small_config(use_damps=False), make_checkpoint(use_damps=False))
    add_trial(study, 0.4, small_config(), make_checkpoint("damps"))
    data = best_spectrum(trial_table(study))
    assert data.message is None and data.trial_number == 1 and data.note is None


def test_ablation_shows_the_best_full_trial(make_checkpoint: Any) -> None:
    study = new_study()
    save_spec(study, StudySpec("ablate", "ablation", TINY.name, n_trials=3, epochs=1))
    path = make_checkpoint()
    add_trial(study, 0.6, small_config(apc=False), path, {"variant": "no_apc", "seed": 1})
    add_trial(study, 0.5, small_config(), path, {"variant": "full", "seed": 1})
    add_trial(study, 0.55, small_config(), path, {"variant": "full", "seed": 2})
    data = best_spectrum(trial_table(study))
    assert data.message is None and data.trial_number == 2
    assert data.note is not None and "seed 2" in data.note


@pytest.mark.parametrize(
    ("trials", "expected"),
    [
        ([], "no COMPLETE trial"),
        ([(None, True, "x.pt", TrialState.FAIL)], "no COMPLETE trial"),
        ([(0.4, False, "x.pt", TrialState.COMPLETE)], "trains DAMPS"),
        ([(0.4, True, None, TrialState.COMPLETE)], "no checkpoint path"),
        ([(0.4, True, "elsewhere/x.pt", TrialState.COMPLETE)], "SPECTUNE_ARTIFACT_DIR"),
    ],
)
def test_nothing_to_show_gives_a_message(
    trials: list[tuple[float | None, bool, str | None, TrialState]], expected: str
) -> None:
    study = new_study()
    for value, use_damps, checkpoint, state in trials:
        add_trial(study, value, small_config(use_damps=use_damps), checkpoint, state=state)
    data = best_spectrum(trial_table(study))
    assert data.message is not None and expected in data.message


# ------------------------------------------------------------------------------------- figure


def traces_by_name(figure: Any) -> dict[tuple[str, str], Any]:
    return {(trace.name, trace.yaxis): trace for trace in figure.data}


def test_figure_draws_gain_and_phase_per_modality(make_checkpoint: Any) -> None:
    data = spectrum_from_checkpoint(make_checkpoint(band_low=0.2, band_high=0.6), 7)
    figure = draw_spectrum(data)
    traces = traces_by_name(figure)
    assert len(figure.data) == 4
    image, text = data.modalities
    assert traces["image", "y"].y == image.gain and traces["text", "y"].y == text.gain
    assert traces["image", "y3"].y == image.phase and traces["text", "y3"].y == text.phase
    assert list(traces["image", "y"].x) == list(BINS)
    assert len(figure.layout.shapes) == 2  # one shared band, shaded in both rows
    assert {(s.x0, s.x1) for s in figure.layout.shapes} == {image.band_edges}
    title = figure.layout.title.text
    assert "DAMPS learned spectrum: trial 7" in title and "recall@20 = 0.1234" in title
    assert "gain 0.731" in title  # the learned fusion weights, softmax(1, 0)


def test_figure_shades_each_modality_band_and_none_for_the_full_band(
    make_checkpoint: Any,
) -> None:
    split = make_checkpoint(
        "split", band_high=0.5, band_shared=False, second_band_low=0.5, second_band_high=1.0
    )
    assert len(draw_spectrum(spectrum_from_checkpoint(split, 1)).layout.shapes) == 4
    assert len(draw_spectrum(spectrum_from_checkpoint(make_checkpoint(), 1)).layout.shapes) == 0


def test_figure_draws_a_soft_mask_on_the_second_axis(make_checkpoint: Any) -> None:
    path = make_checkpoint(band_low=0.2, band_high=0.6, band_edge="soft", band_width=0.1)
    data = spectrum_from_checkpoint(path, 4)
    figure = draw_spectrum(data)
    assert len(figure.data) == 5
    assert traces_by_name(figure)["band mask", "y2"].y == data.modalities[0].band


def test_figure_without_apc_has_no_phase_curves(make_checkpoint: Any) -> None:
    figure = draw_spectrum(spectrum_from_checkpoint(make_checkpoint(apc=False), 1))
    assert [trace.yaxis for trace in figure.data] == ["y", "y"]
    assert any("APC off" in a.text for a in figure.layout.annotations)


def test_message_figure_when_there_is_nothing_to_draw() -> None:
    figure = draw_spectrum(SpectrumData(message="no COMPLETE trial yet"))
    assert len(figure.data) == 0
    assert [a.text for a in figure.layout.annotations] == ["no COMPLETE trial yet"]


def test_a_long_message_is_wrapped_to_fit_the_figure() -> None:
    message = (
        "checkpoint of trial 13 not found: /runs/artifacts/demo/trial-13/model.pt. Checkpoints "
        "are written on the machine of the worker that ran the trial"
    )
    figure = draw_spectrum(SpectrumData(message=message, problem=True))
    lines = figure.layout.annotations[0].text.split("<br>")
    assert len(lines) == 3 and max(len(line) for line in lines) <= 70
    assert " ".join(lines) == message
