"""A study's trials as plain rows: the one place the reports read Optuna trial objects."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from spectune.storage import attrs
from spectune.study.spec import StudySpec, load_spec


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    params: dict[str, Any]
    distributions: dict[str, BaseDistribution]
    value: float | None  # the objective (best validation metric) of a COMPLETE trial
    intermediate: dict[int, float]  # epoch -> reported validation metric
    seconds_per_epoch: float | None  # training time per epoch (the cost), when known
    config: dict[str, Any] | None  # the resolved RunConfig of an MGCN trial
    result: dict[str, Any]  # best epoch, valid metrics, timings of a COMPLETE MGCN trial
    test_metrics: dict[str, float]  # reported only; never used to choose
    checkpoint: str | None
    fail_reason: str | None


@dataclass(frozen=True)
class TrialTable:
    study_name: str
    direction: str  # "maximize" or "minimize"
    metric: str  # the objective's name, e.g. "recall@20"
    spec: StudySpec | None
    rows: list[TrialRow] = field(default_factory=list)

    def in_state(self, *states: str) -> list[TrialRow]:
        return [row for row in self.rows if row.state in states]

    @property
    def complete(self) -> list[TrialRow]:
        return self.in_state("COMPLETE")

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for row in self.rows:
            found[row.state] = found.get(row.state, 0) + 1
        return found

    def ranked(self) -> list[TrialRow]:
        """COMPLETE trials best first by validation value; ties: the lower number."""
        sign = -1.0 if self.direction == "maximize" else 1.0
        scored = [row for row in self.complete if row.value is not None]
        return sorted(scored, key=lambda row: (sign * float(row.value or 0.0), row.number))


def trial_table(study: optuna.Study) -> TrialTable:
    spec = load_spec(study)
    direction = study.direction.name.lower()
    metric = spec.metric if spec is not None else "value"
    rows = [_row(trial) for trial in study.get_trials(deepcopy=False)]
    return TrialTable(study.study_name, direction, metric, spec, rows)


def _row(trial: FrozenTrial) -> TrialRow:
    user = trial.user_attrs
    result = dict(user.get(attrs.RESULT) or {})
    value = trial.value if trial.state == TrialState.COMPLETE else None
    return TrialRow(
        number=trial.number,
        state=trial.state.name,
        params=dict(trial.params),
        distributions=dict(trial.distributions),
        value=float(value) if value is not None else None,
        intermediate={int(step): float(v) for step, v in trial.intermediate_values.items()},
        seconds_per_epoch=_seconds_per_epoch(trial, result),
        config=user.get(attrs.CONFIG),
        result=result,
        test_metrics=dict(user.get(attrs.TEST_METRICS) or {}),
        checkpoint=user.get(attrs.CHECKPOINT),
        fail_reason=user.get(attrs.FAIL_REASON),
    )


def _seconds_per_epoch(trial: FrozenTrial, result: Mapping[str, Any]) -> float | None:
    """The trainer's mean training seconds per epoch; else wall time per reported epoch."""
    for measured in (result.get("seconds_per_epoch"), trial.user_attrs.get(attrs.EPOCH_SECONDS)):
        if isinstance(measured, int | float) and math.isfinite(measured) and measured > 0:
            return float(measured)
    start, end = trial.datetime_start, trial.datetime_complete
    if start is None or end is None or not trial.intermediate_values:
        return None
    seconds = (end - start).total_seconds() / len(trial.intermediate_values)
    return seconds if seconds > 0 else None
