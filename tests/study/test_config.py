"""Config building: defaults, file sections, overrides, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from spectune.study.config import RunConfig, build_config, load_config_file, parse_overrides
from spectune.study.typed import ConfigError


def test_defaults_are_the_seed_configuration() -> None:
    config = build_config({})
    assert config.model.embedding_size == 64 and config.model.knn_k == 10
    assert config.model.n_ui_layers == 2 and config.model.n_layers == 1
    assert config.model.temperature == 0.2 and config.model.use_damps
    assert config.train.batch_size == 2048 and config.train.learning_rate == 1e-3
    assert config.train.valid_metric == "recall@20" and config.train.patience == 20
    assert config.damps.apc_sign == "official" and config.damps.fusion_logits == (0.6, 0.4)


def test_overrides_flat_and_dotted_with_yaml_values() -> None:
    overrides = parse_overrides(
        [
            "band_high=0.5",
            "damps.apc=false",
            "train.epochs=3",
            "fusion_logits=[1, 0]",
            "lr_decay=9e-1",
        ]
    )
    config = build_config({"model": {"knn_k": 5}}, overrides)
    assert config.damps.band_high == 0.5 and config.damps.apc is False
    assert config.train.epochs == 3 and config.model.knn_k == 5
    assert config.train.lr_decay == 0.9
    assert config.damps.fusion_logits == (1.0, 0.0)


def test_round_trip_through_dict() -> None:
    config = build_config(
        {"dataset": "ml-100k"}, {"band_low": 0.1, "use_damps": True, "topk": [10, 20]}
    )
    assert build_config(config.to_dict()) == config
    assert isinstance(config, RunConfig)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"knn": 3}, "unknown config key 'knn'; did you mean knn_k"),
        ({"model.foo": 1}, "unknown key model.foo"),
        ({"knn_k": "ten"}, "model.knn_k must be an integer, got 'ten'"),
        ({"apc": 1}, "damps.apc must be true or false, got 1"),
        ({"apc_sign": "flipped"}, "damps.apc_sign must be one of 'official', 'corrected'"),
        ({"learning_rate": -1}, "learning_rate must be > 0"),
        ({"valid_metric": "auc@20"}, "valid_metric must be"),
        ({"valid_metric": "recall@15"}, "k in topk"),
        ({"embedding_size": 63}, "embedding_size must be even"),
        ({"control": "linear"}, "control 'linear' replaces DAMPS"),
        ({"band_low": 0.6, "band_high": 0.5}, "band"),
        ({"fusion_logits": [1, 2, 3]}, "damps.fusion_logits must have 2 entries"),
    ],
)
def test_bad_values_name_the_key_and_rule(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        build_config({}, overrides)


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config_file(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("modle:\n  knn_k: 3\n")
    with pytest.raises(ConfigError, match="unknown top-level key 'modle'"):
        build_config(load_config_file(wrong))
    with pytest.raises(ConfigError, match="--set expects key=value"):
        parse_overrides(["knn_k"])
