"""A fast stand-in objective: checks a deployment (storage, workers, pruning) without a GPU.

Three knobs are sampled on a small fixed space; each epoch's value follows a fixed saturating
curve whose ceiling depends on the knobs, so some configurations are clearly worse and the
pruner has something to prune. Trials can be made to raise or to yield NaN by number
(``SmokeSpec``), to drill the worker's failure handling.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna

from spectune.study.spec import StudySpec

if TYPE_CHECKING:
    from spectune.study.worker import Progress

GRID: dict[str, tuple[object, ...]] = {
    "learning_rate": (1e-3, 1e-2),
    "band_high": (0.6, 0.9),
    "apc": (True, False),
}


class SmokeFailure(RuntimeError):
    """Raised by trials listed in ``smoke.fail_trial_numbers``."""


def ceiling(learning_rate: float, band_high: float, apc: bool) -> float:
    """The value a configuration converges to: best near lr 3e-3, band_high 0.75, apc on."""
    value = 0.30 - 0.04 * (math.log10(learning_rate) + 2.5) ** 2 - 0.3 * (band_high - 0.75) ** 2
    return value if apc else value - 0.08


def curve(top: float, epoch: int) -> float:
    """Epoch ``epoch`` (from 0) of a curve rising to ``top``; same ranking at every epoch."""
    return top * (1 - 0.5 ** (epoch + 1))


def make_objective(
    spec: StudySpec, device: str, progress: Progress
) -> Callable[[optuna.Trial], float]:
    """The smoke objective for ``spec`` (``device`` is unused: nothing is computed)."""
    smoke = spec.smoke

    def objective(trial: optuna.Trial) -> float:
        learning_rate = trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
        band_high = trial.suggest_float("band_high", 0.5, 1.0)
        apc = bool(trial.suggest_categorical("apc", [True, False]))
        top = ceiling(learning_rate, band_high, apc)
        value = math.nan
        with progress.epochs(spec.epochs, trial.number) as bar:
            for epoch in range(spec.epochs):
                time.sleep(smoke.epoch_seconds)
                if trial.number in smoke.fail_trial_numbers and epoch == min(1, spec.epochs - 1):
                    raise SmokeFailure(
                        f"trial {trial.number} is listed in smoke.fail_trial_numbers"
                    )
                value = curve(top, epoch) if spec.direction == "maximize" else 1 - curve(top, epoch)
                if trial.number in smoke.nan_trial_numbers and epoch == spec.epochs - 1:
                    value = math.nan
                if not math.isfinite(value):
                    # Returned, not reported: a pruner would prune it silently; the worker
                    # fails the trial with the reason instead.
                    return value
                trial.report(value, epoch)  # once per epoch, step = epoch index from 0
                bar.advance(value)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"{spec.metric} {value:.4f} at epoch {epoch}")
        return value

    return objective
