"""The exact global trial budget: COMPLETE + PRUNED == n_trials when all workers are done.

Counting and ``ask`` happen under one study-wide lock (a Postgres advisory lock, or an flock
beside the journal), so two workers never both take the last slot; MaxTrialsCallback, which
counts without a lock, overshoots by up to workers - 1 (Optuna #2907, #3518).

Rule, under the lock: a WAITING trial (a re-queued configuration) is always taken, since its
failed original was counted as RUNNING; otherwise a new trial starts only while
COMPLETE + PRUNED + RUNNING < n_trials. FAIL trials do not count, so a re-queued configuration
counts once. When COMPLETE + PRUNED >= n_trials the worker is done; otherwise others are still
running (and may yet fail and be re-queued), so it waits.

A planned study (an ablation: every trial enqueued by its coordinator) never starts a new trial:
a fresh ``ask`` would sample a cell twice. A cell that failed for good stays missing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from spectune.storage import attrs
from spectune.storage.locks import StudyLock


class Decision(enum.Enum):
    RUN = "run"
    WAIT = "wait"
    DONE = "done"


@dataclass(frozen=True)
class Counts:
    """Trials of a study per state."""

    complete: int = 0
    pruned: int = 0
    running: int = 0
    waiting: int = 0
    failed: int = 0

    @property
    def finished(self) -> int:
        """What the budget counts."""
        return self.complete + self.pruned


@dataclass(frozen=True)
class Claim:
    decision: Decision
    counts: Counts
    trial: optuna.Trial | None = None


def count_trials(study: optuna.Study) -> Counts:
    states = [trial.state for trial in study.get_trials(deepcopy=False)]
    return Counts(
        complete=states.count(TrialState.COMPLETE),
        pruned=states.count(TrialState.PRUNED),
        running=states.count(TrialState.RUNNING),
        waiting=states.count(TrialState.WAITING),
        failed=states.count(TrialState.FAIL),
    )


def decide(counts: Counts, n_trials: int, planned: bool = False) -> Decision:
    """The budget rule (see the module docstring)."""
    if counts.waiting > 0:
        return Decision.RUN
    if planned:
        return Decision.WAIT if counts.running else Decision.DONE
    if counts.finished + counts.running < n_trials:
        return Decision.RUN
    if counts.finished >= n_trials:
        return Decision.DONE
    return Decision.WAIT


def claim_trial(
    study: optuna.Study, lock: StudyLock, n_trials: int, planned: bool = False
) -> Claim:
    """Count and, when the rule allows, ``ask`` for a trial, atomically among all workers."""
    with lock:
        counts = count_trials(study)
        decision = decide(counts, n_trials, planned)
        if decision is not Decision.RUN:
            return Claim(decision, counts)
        # Pops the oldest WAITING trial first. (Optuna warns that heartbeats are meant for
        # optimize(); the worker runs its own heartbeat thread and silences that once.)
        trial = study.ask()
        return Claim(decision, counts, trial)


def next_worker_index(study: optuna.Study, lock: StudyLock) -> int:
    """A study-wide unique index for a starting worker (its sampler seed offset)."""
    with lock:
        index = int(study.user_attrs.get(attrs.NEXT_WORKER_INDEX, 0))
        study.set_user_attr(attrs.NEXT_WORKER_INDEX, index + 1)
    return index
