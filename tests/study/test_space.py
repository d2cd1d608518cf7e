"""The search space file: validation, conditional sampling, trial -> config."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from spectune.study.config import build_config
from spectune.study.space import load_search_space, parse_space
from spectune.study.typed import ConfigError


def test_default_space_covers_the_knobs() -> None:
    space = parse_space(load_search_space(None))
    names = {param.name for param in space.params}
    expected = {
        "band_low",
        "band_high",
        "band_width",
        "band_shared",
        "fusion_weight",
        "psi_smoothness",
        "avrf_gain",
        "apc",
        "avrf",
        "imcf",
        "input_source",
        "use_damps",
        "learning_rate",
        "reg_weight",
        "cl_loss",
        "temperature",
        "knn_k",
        "n_layers",
        "n_ui_layers",
    }
    assert expected <= names


def test_conditional_parameters_follow_their_switches() -> None:
    space = parse_space(load_search_space(None))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen_vanilla = seen_soft = False
    for _ in range(40):
        trial = study.ask()
        config = space.config(trial, build_config({"dataset": "x"}))
        params = trial.params
        if not params["use_damps"]:
            seen_vanilla = True
            assert not any(name in params for name in ("apc", "band_low", "fusion", "avrf_gain"))
            assert not config.model.use_damps
        else:
            assert config.damps.band_low == params["band_low"]
            assert 0 <= config.damps.band_low < config.damps.band_high <= 1
            assert ("band_width" in params) == (params["band_edge"] == "soft")
            seen_soft |= params["band_edge"] == "soft"
            assert ("fusion_weight" in params) == (params["fusion"] == "fixed")
        assert config.train.learning_rate == params["learning_rate"]
        assert config.model.knn_k in (5, 10, 15, 20)
        study.tell(trial, 0.0)
    assert seen_vanilla and seen_soft


def test_grid_needs_discrete_values() -> None:
    space = parse_space(
        {
            "params": {
                "apc": {"choice": [True, False]},
                "knn_k": {"int": [5, 15], "step": 5},
                "band_high": {"float": [0.5, 1.0], "step": 0.25},
            }
        }
    )
    assert space.grid() == {
        "apc": [True, False],
        "knn_k": [5, 10, 15],
        "band_high": [0.5, 0.75, 1.0],
    }
    with pytest.raises(ConfigError, match="learning_rate is continuous"):
        parse_space({"params": {"learning_rate": {"float": [1e-4, 1e-2], "log": True}}}).grid()


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"params": {"knn": {"int": [5, 10]}}}, "unknown config key 'knn'"),
        (
            {"params": {"knn_k": {"float": [5, 10], "int": [1, 2]}}},
            "exactly one of float, int, choice",
        ),
        ({"params": {"learning_rate": {"float": [0, 1], "log": True}}}, "log scale needs low > 0"),
        ({"params": {"band_low": {"float": [0.5, 0.1]}}}, "low <= high"),
        (
            {"params": {"apc": {"choice": [True], "when": {"use_damps": True}}}},
            "not an earlier parameter",
        ),
        (
            {"params": {"apc_sign": {"choice": ["official", "upside-down"]}}},
            "damps.apc_sign|apc_sign must be one of",
        ),
        ({"params": {"knn_k": {"int": [5, 10], "stepp": 2}}}, "unknown key 'stepp'"),
        ({"parms": {}}, "unknown top-level key 'parms'"),
        ({"params": {"band_high": {"float": [0.5, 1.5]}}}, "band_high = 1.5"),
        ({"params": {"knn_k": {"int": [0, 10]}}}, "knn_k must be >= 1"),
        ({"params": {"knn_k": {"int": [5, 10]}}, "fixed": {"knn_k": 3}}, "both sampled"),
        ({"params": {}, "fixed": {"epochs": 3}}, r"epochs is set by the study \(--epochs\)"),
    ],
)
def test_bad_space_files_are_rejected_with_the_parameter_named(mapping: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_space(mapping, "space.yaml")


def test_load_from_file(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(
        "params:\n  knn_k: {int: [5, 10]}\n  learning_rate: {float: [1e-4, 1e-2], log: true}\n"
        "fixed:\n  patience: 3\n"
    )
    mapping = load_search_space(path)
    space = parse_space(mapping)
    study = optuna.create_study()
    config = space.config(study.ask(), build_config({}))
    assert config.train.patience == 3 and 5 <= config.model.knn_k <= 10
    assert 1e-4 <= config.train.learning_rate <= 1e-2  # 1e-4 (no dot) is a number
    with pytest.raises(ConfigError, match="cannot read search space"):
        load_search_space(tmp_path / "nope.yaml")
