"""The search space: a YAML file -> validated parameters -> one RunConfig per Optuna trial.

Parameter names equal config field names, so a trial's params are exactly the ``--set``
overrides that rebuild its model (``spectune train --set ...``).
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import optuna
import yaml

from spectune.study.config import SECTIONS, RunConfig, build_config, resolve_key
from spectune.study.typed import ConfigError, coerce, from_mapping, load_yaml

KINDS = ("float", "int", "choice")
# Settings the study fixes for every trial (the pruner's resource, the objective's metric).
STUDY_SETTINGS = {"epochs": "--epochs", "valid_metric": "--metric", "dataset": "--dataset"}


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # float | int | choice
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    when: tuple[tuple[str, Any], ...] = ()  # sampled only when these earlier params match

    def active(self, sampled: Mapping[str, Any]) -> bool:
        return all(name in sampled and sampled[name] == value for name, value in self.when)

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        # the value is used exactly as Optuna stores it, so a trial's params rebuild its config
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def grid(self) -> list[Any]:
        if self.kind == "choice":
            return list(self.choices)
        if self.step is None:
            raise ConfigError(
                f"search space: {self.name} is continuous; a grid needs `step` or `choice`"
            )
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        values = [self.low + i * self.step for i in range(count)]
        return [int(v) for v in values] if self.kind == "int" else [round(v, 10) for v in values]


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...]
    fixed: Mapping[str, Any]

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """Suggest every active parameter in file order; returns {field name: value}."""
        sampled: dict[str, Any] = {}
        for param in self.params:
            if param.active(sampled):
                sampled[param.name] = param.suggest(trial)
        return sampled

    def config(self, trial: optuna.Trial, base: RunConfig) -> RunConfig:
        """The trial's RunConfig: base < fixed < sampled."""
        return base.replace({**self.fixed, **self.sample(trial)})

    def grid(self) -> dict[str, list[Any]]:
        return {param.name: param.grid() for param in self.params}


def default_space_text() -> str:
    return (
        resources.files("spectune.study").joinpath("default_space.yaml").read_text(encoding="utf-8")
    )


def load_search_space(path: Path | None) -> dict[str, Any]:
    """Read a search-space YAML (default: the packaged one) and validate it; returns the mapping
    that is stored in the study (so every worker samples the same space)."""
    source = str(path) if path else "the default search space"
    if path is None:
        text = default_space_text()
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"cannot read search space {path}: {error.strerror}") from error
    try:
        mapping = load_yaml(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"search space {source} is not valid YAML: {error}") from error
    parse_space(mapping, source)
    return mapping


def parse_space(mapping: Any, source: str = "search space") -> SearchSpace:
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{source}: expected a mapping with `params` (and optional `fixed`)")
    unknown = sorted(set(mapping) - {"params", "fixed"})
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key {unknown[0]!r}; expected params, fixed")
    raw_params = mapping.get("params") or {}
    fixed = dict(mapping.get("fixed") or {})
    if not isinstance(raw_params, Mapping):
        raise ConfigError(f"{source}: `params` must be a mapping of parameter name -> spec")
    params: list[Param] = []
    for name, spec in raw_params.items():
        params.append(_parse_param(str(name), spec, [p.name for p in params], source))
    space = SearchSpace(tuple(params), fixed)
    # every name must be a config field and every value must fit it: fail now, not in a trial
    overlap = sorted({p.name for p in params} & set(fixed))
    if overlap:
        raise ConfigError(f"{source}: {overlap[0]} is both sampled (params) and fixed")
    for name in [p.name for p in params] + list(fixed):
        try:
            _, field = resolve_key(name)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from error
        if field in STUDY_SETTINGS:
            raise ConfigError(f"{source}: {name} is set by the study ({STUDY_SETTINGS[field]})")
    build_config({}, fixed)
    for param in params:
        for value in param.grid() if param.kind == "choice" else [param.low, param.high]:
            _check_value(param, value, source)
    return space


def _check_value(param: Param, value: Any, source: str) -> None:
    """The value must have the field's type (ranges and cross-field rules are checked per trial)."""
    section, name = resolve_key(param.name)
    kind = typing.get_type_hints(SECTIONS[section])[name] if section else str | None
    probe = int(value) if param.kind == "int" else value
    try:
        coerce(kind, probe, param.name)
        if param.kind != "choice":  # a range's ends must be valid settings on their own
            from_mapping(SECTIONS[section], {name: probe}, section)
    except ConfigError as error:
        raise ConfigError(f"{source}: {param.name} = {value!r}: {error}") from error


def _parse_param(name: str, spec: Any, earlier: list[str], source: str) -> Param:
    where = f"{source}: parameter {name}"
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where} must be a mapping like {{float: [low, high]}}")
    kinds = [kind for kind in KINDS if kind in spec]
    if len(kinds) != 1:
        raise ConfigError(f"{where} needs exactly one of float, int, choice")
    kind = kinds[0]
    extra = sorted(set(spec) - {kind, "log", "step", "when"})
    if extra:
        raise ConfigError(f"{where}: unknown key {extra[0]!r}; allowed: {kind}, log, step, when")
    when_spec = spec.get("when") or {}
    if not isinstance(when_spec, Mapping):
        raise ConfigError(f"{where}: `when` must map earlier parameter names to values")
    for other in when_spec:
        if other not in earlier:
            raise ConfigError(
                f"{where}: `when` refers to {other!r}, which is not an earlier parameter"
            )
    when = tuple(when_spec.items())
    if kind == "choice":
        choices = spec["choice"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: choice must be a non-empty list")
        return Param(name, kind, choices=tuple(choices), when=when)
    bounds = spec[kind]
    if (
        not isinstance(bounds, list)
        or len(bounds) != 2
        or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
        or bounds[0] > bounds[1]
    ):
        raise ConfigError(
            f"{where}: {kind} must be [low, high] numbers with low <= high, got {bounds!r}"
        )
    log, step = bool(spec.get("log", False)), spec.get("step")
    if log and bounds[0] <= 0:
        raise ConfigError(f"{where}: a log scale needs low > 0, got {bounds[0]}")
    if log and step is not None:
        raise ConfigError(f"{where}: use either log or step, not both")
    if step is not None and (not isinstance(step, (int, float)) or step <= 0):
        raise ConfigError(f"{where}: step must be a positive number, got {step!r}")
    if kind == "int" and not all(isinstance(b, int) for b in bounds):
        raise ConfigError(f"{where}: int bounds must be integers, got {bounds!r}")
    return Param(name, kind, float(bounds[0]), float(bounds[1]), log, step, when=when)
