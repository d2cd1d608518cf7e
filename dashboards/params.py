"""Every trial's value for every sampled parameter, conditional ones included.

A conditional parameter (``apc`` is sampled only when ``use_damps`` is on) is absent from the
trials that did not sample it, and Optuna's importance evaluators and plots then read only the
trials that hold every parameter: every vanilla trial would vanish. Here the gaps are filled:
a categorical parameter takes the level ``"inactive"``, a numeric one the value its run actually
used (from the trial's resolved config), and one distribution per parameter holds all values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from spectune.dashboards.trials import TrialRow
from spectune.study.config import resolve_key
from spectune.study.typed import ConfigError

INACTIVE = "inactive"


@dataclass(frozen=True)
class CompletedParams:
    values: list[dict[str, Any]]  # one dict per row, every parameter present
    distributions: dict[str, BaseDistribution]  # merged: holds every row's value
    filled: int  # values that were absent from their trial

    def varying(self) -> list[str]:
        return [name for name, dist in self.distributions.items() if not dist.single()]


def complete_params(rows: list[TrialRow]) -> CompletedParams:
    sampled: dict[str, list[BaseDistribution]] = {}
    for row in rows:
        for param, distribution in row.distributions.items():
            sampled.setdefault(param, []).append(distribution)
    values = []
    filled = 0
    for row in rows:
        completed = {}
        for param, distributions in sampled.items():
            if param in row.params:
                completed[param] = row.params[param]
            else:
                completed[param] = _inactive_value(row, param, distributions[0])
                filled += 1
        values.append(completed)
    merged = {
        param: _merged([row[param] for row in values], found) for param, found in sampled.items()
    }
    for row in values:
        for param, distribution in merged.items():
            if isinstance(distribution, CategoricalDistribution):
                row[param] = _level(row[param])
    return CompletedParams(values, merged, filled)


def _inactive_value(row: TrialRow, param: str, distribution: BaseDistribution) -> Any:
    if isinstance(distribution, CategoricalDistribution):
        return INACTIVE
    try:
        section, name = resolve_key(param)
    except ConfigError:
        section, name = "", param
    config = row.config or {}
    used = config.get(section, {}).get(name) if section else config.get(name)
    # No run value to stand in (not an MGCN trial): a level of its own.
    return used if is_number(used) else INACTIVE


def _merged(values: list[Any], sampled: list[BaseDistribution]) -> BaseDistribution:
    """One distribution holding every value: ranges widened, steps dropped."""
    numeric = all(isinstance(d, FloatDistribution | IntDistribution) for d in sampled)
    if numeric and all(is_number(v) for v in values):
        low, high = min(values), max(values)
        log = all(getattr(d, "log", False) for d in sampled) and low > 0
        if all(isinstance(d, IntDistribution) for d in sampled):
            return IntDistribution(int(low), int(high), log=log)
        return FloatDistribution(float(low), float(high), log=log)
    return CategoricalDistribution(list(dict.fromkeys(_level(v) for v in values)))


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _level(value: Any) -> Any:
    """A categorical level Optuna accepts: None, bool, int, float or str."""
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)
