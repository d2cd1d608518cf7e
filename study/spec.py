"""The study spec: everything that defines a study, stored in it once, checked by every worker.

Optuna stores neither the sampler nor the pruner nor the metric's name (Optuna #4927), so
workers started with other settings would join silently. ``spectune study create`` writes this
spec into the study's user attributes; workers rebuild sampler and pruner from it and refuse
to start when their own settings differ.
"""

from __future__ import annotations

import dataclasses
import re
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

import optuna
from optuna.exceptions import ExperimentalWarning

from spectune.storage import attrs
from spectune.storage.errors import StorageError, StudyMismatch
from spectune.study.typed import ConfigError, from_mapping

OBJECTIVES = ("mgcn", "smoke", "ablation")
# Fields that describe where or with what a study was made, not what it is.
_NOT_COMPARED = ("versions", "data_root")


@dataclass(frozen=True)
class SamplerSpec:
    """The sampler every worker builds; each worker seeds it with ``seed + worker index``."""

    name: Literal["tpe", "random", "grid"] = "tpe"
    seed: int = 0
    # TPE: joint sampling of dependent knobs; constant liar keeps parallel workers apart.
    multivariate: bool = True
    constant_liar: bool = True
    n_startup_trials: int = 10

    def __post_init__(self) -> None:
        if self.n_startup_trials < 0:
            raise ValueError(f"n_startup_trials must be >= 0, got {self.n_startup_trials}")


@dataclass(frozen=True)
class PrunerSpec:
    """The pruner; Hyperband's resources are epochs (max_resource = the study's epochs)."""

    name: Literal["median", "hyperband", "none"] = "median"
    n_startup_trials: int = 5  # median: COMPLETE trials, study-wide, before any pruning
    n_warmup_steps: int = 1  # median: epochs of each trial never pruned
    min_resource: int = 1
    max_resource: int = 1
    reduction_factor: int = 3

    def __post_init__(self) -> None:
        if self.n_startup_trials < 0 or self.n_warmup_steps < 0:
            raise ValueError("n_startup_trials and n_warmup_steps must be >= 0")
        if not 1 <= self.min_resource <= self.max_resource:
            raise ValueError(
                f"need 1 <= min_resource <= max_resource, got {self.min_resource}, "
                f"{self.max_resource}"
            )
        if self.reduction_factor < 2:
            raise ValueError(f"reduction_factor must be >= 2, got {self.reduction_factor}")


@dataclass(frozen=True)
class SmokeSpec:
    """The smoke objective's knobs: seconds per epoch, and trials made to fail (tests, drills)."""

    epoch_seconds: float = 0.05
    fail_trial_numbers: tuple[int, ...] = ()  # these trials raise an exception
    nan_trial_numbers: tuple[int, ...] = ()  # these trials return NaN

    def __post_init__(self) -> None:
        if self.epoch_seconds < 0:
            raise ValueError(f"epoch_seconds must be >= 0, got {self.epoch_seconds}")


@dataclass(frozen=True)
class LivenessSpec:
    """Heartbeat settings; every worker must use the same, or one would fail another's trials."""

    heartbeat_interval: int = 60
    heartbeat_grace: int = 600
    max_retry: int = 3


@dataclass(frozen=True)
class StudySpec:
    """What a study is: objective, data, space, budget, metric, sampler, pruner, liveness."""

    study_name: str
    objective: Literal["mgcn", "smoke", "ablation"]
    dataset: str
    n_trials: int
    epochs: int
    search_space: Mapping[str, Any] = field(default_factory=dict)  # the parsed YAML
    metric: str = "recall@20"
    direction: Literal["maximize", "minimize"] = "maximize"
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    smoke: SmokeSpec = SmokeSpec()
    liveness: LivenessSpec = LivenessSpec()
    data_root: str | None = None  # the creator's; a worker's --data-root replaces it
    # ablation studies: the plan (base config, variants, seeds) their enqueued trials rebuild
    ablation: Mapping[str, Any] | None = None
    versions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.study_name:
            raise ConfigError("--study-name must not be empty")
        if self.objective not in OBJECTIVES:
            raise ConfigError(
                f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}"
            )
        if self.n_trials < 1:
            raise ConfigError(f"--n-trials must be >= 1, got {self.n_trials}")
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}")
        if not re.fullmatch(r"[a-z]+@\d+", self.metric):
            raise ConfigError(f"--metric must look like recall@20, got {self.metric!r}")
        if self.direction not in ("maximize", "minimize"):
            raise ConfigError(f"direction must be maximize or minimize, got {self.direction!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly values (tuples become lists)."""
        plain: dict[str, Any] = dataclasses.asdict(self)
        plain["search_space"] = dict(self.search_space)
        plain["versions"] = dict(self.versions)
        return plain

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudySpec:
        """The spec stored in a study; unknown keys mean a newer spectune wrote it."""
        values = dict(data)
        nested = {
            "sampler": SamplerSpec,
            "pruner": PrunerSpec,
            "smoke": SmokeSpec,
            "liveness": LivenessSpec,
        }
        parts: dict[str, Any] = {
            name: from_mapping(kind, values.pop(name, {}), name) for name, kind in nested.items()
        }
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise StorageError(
                f"the stored study spec has unknown field {unknown[0]!r}: it was written by a "
                "newer spectune; upgrade this worker"
            )
        return cls(**values, **parts)


def current_versions() -> dict[str, str]:
    """Versions of the packages that shape results (recorded at create time)."""
    found = {}
    for package in ("spectune", "optuna", "torch"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def flatten(spec: StudySpec) -> dict[str, Any]:
    """``{"sampler.seed": 0, ...}``: the compared fields with dotted names."""
    flat: dict[str, Any] = {}
    for key, value in spec.to_dict().items():
        if key in _NOT_COMPARED:
            continue
        if isinstance(value, dict) and key != "search_space":
            flat.update({f"{key}.{inner}": item for inner, item in value.items()})
        else:
            flat[key] = value
    return flat


def first_difference(stored: StudySpec, requested: StudySpec) -> StudyMismatch | None:
    """The first field where two specs differ (versions and data root aside), or None."""
    # n_trials, epochs and metric follow from an ablation plan: name the plan, not what it implies
    old_plan, new_plan = stored.ablation, requested.ablation
    if old_plan is not None and new_plan is not None and old_plan != new_plan:
        return _plan_difference(stored.study_name, old_plan, new_plan)
    old, new = flatten(stored), flatten(requested)
    for key in old:
        if old[key] != new.get(key):
            return StudyMismatch(key, old[key], new.get(key))
    return None


def _plan_difference(
    study_name: str, stored: Mapping[str, Any], requested: Mapping[str, Any]
) -> StudyMismatch:
    # The plan's layout is AblationPlan.to_dict()'s: ablation.py imports the model stack.
    old, new = _plan_shape(stored), _plan_shape(requested)
    if old == new:
        changed = "base config" if stored["base"] != requested["base"] else "variant settings"
        shown = f"{old}, requested the same with another {changed}"
    else:
        shown = f"{old}, requested {new}"
    return StudyMismatch(
        "ablation",
        stored,
        requested,
        message=f"ablation plan differs from study {study_name}: stored {shown}; use another "
        "--study-name",
    )


def _plan_shape(plan: Mapping[str, Any]) -> str:
    return f"{_counted(list(plan['variants']), 'variant')} x {_counted(plan['seeds'], 'seed')}"


def _counted(items: list[Any], noun: str) -> str:
    """``2 seeds (7, 8)``."""
    plural = "" if len(items) == 1 else "s"
    return f"{len(items)} {noun}{plural} ({', '.join(str(item) for item in items)})"


@dataclass(frozen=True)
class RequestedSettings:
    """Settings a worker was started with; None = not given (nothing to check)."""

    objective: str | None = None
    metric: str | None = None
    direction: str | None = None
    sampler: str | None = None
    pruner: str | None = None
    heartbeat_interval: int | None = None
    heartbeat_grace: int | None = None
    max_retry: int | None = None


def check_worker_settings(stored: StudySpec, requested: RequestedSettings) -> None:
    """Raise StudyMismatch naming the first setting that differs from the stored spec."""
    stored_values: dict[str, tuple[Any, str]] = {
        "objective": (stored.objective, "--objective"),
        "metric": (stored.metric, "--metric"),
        "direction": (stored.direction, "--direction"),
        "sampler": (stored.sampler.name, "--sampler"),
        "pruner": (stored.pruner.name, "--pruner"),
        "heartbeat_interval": (
            stored.liveness.heartbeat_interval,
            "--heartbeat-interval or SPECTUNE_HEARTBEAT_INTERVAL",
        ),
        "heartbeat_grace": (
            stored.liveness.heartbeat_grace,
            "--heartbeat-grace or SPECTUNE_HEARTBEAT_GRACE",
        ),
        "max_retry": (stored.liveness.max_retry, "--max-retry or SPECTUNE_MAX_RETRY"),
    }
    for name, (value, option) in stored_values.items():
        wanted = getattr(requested, name)
        if wanted is not None and wanted != value:
            raise StudyMismatch(name, value, wanted, f"set by {option}")


def save_spec(study: optuna.Study, spec: StudySpec) -> None:
    study.set_user_attr(attrs.SPEC, spec.to_dict())


def load_spec(study: optuna.Study) -> StudySpec | None:
    """The stored spec, or None for a study not made by ``spectune study create``."""
    stored = study.user_attrs.get(attrs.SPEC)
    if stored is None:
        return None
    try:
        return StudySpec.from_dict(stored)
    except (ConfigError, TypeError) as error:
        raise StorageError(
            f"study {study.study_name}: the stored spec is invalid: {error}"
        ) from error


def build_sampler(
    spec: StudySpec, worker_index: int, grid: Mapping[str, list[Any]] | None = None
) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded ``seed + worker_index`` so parallel workers differ (#3626).

    ``grid``: the parameter grid for ``grid`` (see ``search_grid``).
    """
    settings = spec.sampler
    seed = settings.seed + worker_index
    if settings.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.name == "grid":
        if not grid:
            raise ConfigError("the grid sampler needs a grid: a search space of steps and choices")
        return optuna.samplers.GridSampler(dict(grid), seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # multivariate, constant_liar
        return optuna.samplers.TPESampler(
            seed=seed,
            multivariate=settings.multivariate,
            constant_liar=settings.constant_liar,
            n_startup_trials=settings.n_startup_trials,
        )


def build_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The spec's pruner; Hyperband gets its resources from the spec, never guessed (#1252)."""
    settings = spec.pruner
    if settings.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=settings.n_startup_trials, n_warmup_steps=settings.n_warmup_steps
        )
    if settings.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=settings.min_resource,
            max_resource=settings.max_resource,
            reduction_factor=settings.reduction_factor,
        )
    return optuna.pruners.NopPruner()


def search_grid(spec: StudySpec) -> dict[str, list[Any]]:
    """The grid the grid sampler walks: the smoke grid, or the search space's steps/choices."""
    if spec.objective == "smoke":
        from spectune.study.smoke import GRID

        return {name: list(values) for name, values in GRID.items()}
    from spectune.study.space import parse_space  # the MGCN space (imports the model stack)

    return parse_space(spec.search_space).grid()


def create_study(storage: optuna.storages.BaseStorage, spec: StudySpec) -> bool:
    """Create the study with ``spec``; True when created, False when it exists with the same spec.

    Raises StudyMismatch naming the first differing field when it exists with another spec.
    """
    try:
        study = optuna.create_study(
            storage=storage, study_name=spec.study_name, direction=spec.direction
        )
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=spec.study_name, storage=storage)
        stored = _wait_for_spec(study)
        difference = first_difference(stored, spec)
        if difference is not None:
            raise difference from None
        return False
    save_spec(study, spec)
    return True


def _wait_for_spec(study: optuna.Study, seconds: float = 5.0) -> StudySpec:
    # A concurrent `study create` may sit between creating the study and storing its spec.
    deadline = time.monotonic() + seconds
    while (stored := load_spec(study)) is None:
        if time.monotonic() > deadline:
            raise StorageError(
                f"study {study.study_name} exists but has no spectune spec (made by another "
                "tool, or an interrupted `study create`); choose another --study-name"
            )
        time.sleep(0.2)
    return stored
