"""The configuration of one training run: what the CLI, a config file and a trial fill in.

Built once at the edge (defaults < file < ``--set`` overrides), frozen afterwards, and written
into every checkpoint, result and trial so any result can rebuild its model.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from spectune.models.damps import DampsConfig
from spectune.study.typed import ConfigError, from_mapping, load_yaml, to_plain

METRICS = ("recall", "ndcg", "precision", "map")


@dataclass(frozen=True)
class ModelConfig:
    """MGCN backbone hyperparameters (MMRec's MGCN.yaml defaults) and the feature filter choice."""

    model: Literal["MGCN"] = "MGCN"
    embedding_size: int = 64
    n_layers: int = 1
    n_ui_layers: int = 2
    knn_k: int = 10
    second_knn_k: int | None = None  # kNN size of the second modality; None = knn_k
    reg_weight: float = 1e-4
    cl_loss: float = 0.01
    temperature: float = 0.2  # InfoNCE temperature, hard-coded to 0.2 in the public code
    use_damps: bool = True
    control: Literal["none", "linear"] = "none"  # linear: an extra Linear(D, D) instead of DAMPS

    def __post_init__(self) -> None:
        for name in ("embedding_size", "knn_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.embedding_size % 2:
            # DAMPS's rFFT and its inverse round-trip exactly only for an even width.
            raise ValueError(f"embedding_size must be even, got {self.embedding_size}")
        if self.second_knn_k is not None and self.second_knn_k < 1:
            raise ValueError(f"second_knn_k must be >= 1 or null, got {self.second_knn_k}")
        for name in ("n_layers", "n_ui_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("reg_weight", "cl_loss"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.control == "linear" and self.use_damps:
            raise ValueError("control 'linear' replaces DAMPS: set use_damps to false with it")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and evaluation (MMRec's overall.yaml defaults)."""

    learning_rate: float = 1e-3
    # lr at epoch e = learning_rate * lr_decay ** (e / lr_decay_step), as MMRec's scheduler.
    lr_decay: float = 1.0
    lr_decay_step: int = 50
    epochs: int = 1000
    patience: int = 20  # epochs without improvement of the validation metric before stopping
    batch_size: int = 2048
    eval_batch_size: int = 4096
    valid_metric: str = "recall@20"
    topk: tuple[int, ...] = (5, 10, 20, 50)
    seed: int = 999

    def __post_init__(self) -> None:
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 < self.lr_decay <= 1 or self.lr_decay_step < 1:
            raise ValueError(
                f"lr_decay must be in (0, 1] and lr_decay_step >= 1, got "
                f"{self.lr_decay} and {self.lr_decay_step}"
            )
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")
        if not self.topk or min(self.topk) < 1:
            raise ValueError(f"topk must be a non-empty list of positive integers: {self.topk}")
        metric, _, k = self.valid_metric.partition("@")
        if metric not in METRICS or not k.isdigit() or int(k) not in self.topk:
            raise ValueError(
                f"valid_metric must be <metric>@<k> with metric in {', '.join(METRICS)} and k "
                f"in topk {list(self.topk)}, got {self.valid_metric!r}"
            )


EXPORT_METADATA_KEY = "selection"
SECTIONS: dict[str, type] = {"model": ModelConfig, "damps": DampsConfig, "train": TrainConfig}


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs besides the data root and the device."""

    dataset: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    damps: DampsConfig = field(default_factory=DampsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        plain: dict[str, Any] = {"dataset": self.dataset}
        for section in SECTIONS:
            plain[section] = to_plain(getattr(self, section))
        return plain

    def replace(self, overrides: Mapping[str, Any]) -> RunConfig:
        """A copy with ``{"section.key" or "key": value}`` applied (see ``resolve_key``)."""
        return build_config(self.to_dict(), overrides)


def _field_sections() -> dict[str, str]:
    owners: dict[str, str] = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert f.name not in owners, f"field {f.name} is in two sections"
            owners[f.name] = section
    return owners


FIELD_SECTION = _field_sections()


def resolve_key(key: str) -> tuple[str, str]:
    """``"damps.band_high"`` or the unique field name ``"band_high"`` -> ("damps", "band_high")."""
    if key == "dataset":
        return "", "dataset"
    section, dot, name = key.partition(".")
    if dot:
        if section not in SECTIONS:
            raise ConfigError(
                f"unknown section {section!r} in {key!r}; sections: model, damps, train"
            )
        return section, name
    if key not in FIELD_SECTION:
        close = difflib.get_close_matches(key, FIELD_SECTION, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown config key {key!r}{hint}")
    return FIELD_SECTION[key], key


def build_config(base: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Defaults < ``base`` (a file's contents) < ``overrides`` (flat or dotted keys)."""
    if not isinstance(base, Mapping):
        raise ConfigError(f"a config must be a mapping of sections, got {type(base).__name__}")
    unknown = sorted(set(base) - {"dataset", *SECTIONS})
    if unknown:
        raise ConfigError(
            f"unknown top-level key {unknown[0]!r}; expected dataset, model, damps, train"
        )
    merged: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        values = base.get(section) or {}
        if not isinstance(values, Mapping):
            raise ConfigError(f"section {section} must be a mapping, got {values!r}")
        merged[section] = dict(values)
    dataset = base.get("dataset")
    for key, value in (overrides or {}).items():
        section, name = resolve_key(key)
        if section:
            merged[section][name] = value
        else:
            dataset = value
    if dataset is not None and not isinstance(dataset, str):
        raise ConfigError(f"dataset must be a name, got {dataset!r}")
    built = {
        section: from_mapping(cls, merged[section], section) for section, cls in SECTIONS.items()
    }
    return RunConfig(dataset=dataset, **built)


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML config (``spectune export`` writes the same layout)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    try:
        content = load_yaml(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
    if not isinstance(content, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(content).__name__}")
    # An exported best config carries how it was selected beside the settings.
    return {key: value for key, value in content.items() if key != EXPORT_METADATA_KEY}


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """``["damps.band_high=0.5", "apc=false"]`` -> typed values (YAML scalars)."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, eq, raw = pair.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        try:
            overrides[key.strip()] = load_yaml(raw)
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {pair!r}: value is not a YAML scalar") from error
    return overrides
