"""Keeping running trials alive, and failing + re-queueing those whose worker died.

Postgres: Optuna's heartbeat (server clock) decides staleness, and a subclass of Optuna's
bounded retry callback re-queues. Journal file: Optuna has no heartbeat there, so each running
trial carries a lease (a system attribute holding unix time) that its worker refreshes; one
machine, one clock. On both, a trial that never got its first lease (its worker died right
after ``ask``) is judged by its start time.
"""

from __future__ import annotations

import copy
import functools
import logging
import threading
import time
import warnings
from datetime import datetime

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from spectune.storage import attrs
from spectune.storage.locks import StudyLock
from spectune.storage.options import StorageOptions
from spectune.storage.urls import StorageTarget

log = logging.getLogger(__name__)


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage id of a trial (Optuna exposes only the number publicly)."""
    return trial._trial_id


class Requeue(RetryHeartbeatStaleTrialCallback):
    """Optuna's bounded retry, marking the copy with ``retry_of`` and ``retry_reason``.

    The copy keeps the parameters and Optuna's retry history (system attributes) and drops
    everything its dead worker wrote (host, pid, partial results, the lease).
    """

    def __init__(self, max_retry: int, stale_reason: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            super().__init__(max_retry=max_retry)
        self.max_retry = max_retry
        self.stale_reason = stale_reason

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.requeue(study, trial, self.stale_reason)

    def requeue(self, study: optuna.Study, trial: FrozenTrial, reason: str) -> bool:
        """Enqueue ``trial``'s configuration again unless it already ran ``max_retry`` times."""
        runs = len(trial.system_attrs.get("retry_history", [])) + 1
        if runs > self.max_retry:
            log.warning(
                "trial %d (%s) not re-queued: its configuration already ran %d times (max retry "
                "%d); it stays FAIL and does not count toward the budget",
                trial.number,
                reason,
                runs,
                self.max_retry,
            )
            return False
        template = copy.deepcopy(trial)
        template.user_attrs = {attrs.RETRY_OF: trial.number, attrs.RETRY_REASON: reason}
        # From the copy: Optuna's callback appends to the retry history list it finds.
        template.system_attrs = {k: v for k, v in template.system_attrs.items() if k != attrs.LEASE}
        super().__call__(study, template)
        log.info("trial %d (%s): configuration re-queued", trial.number, reason)
        return True


@functools.cache
def stale_requeue(options: StorageOptions) -> Requeue:
    """The callback that re-queues trials whose worker was lost (one per settings)."""
    grace = options.heartbeat_grace
    return Requeue(options.max_retry, f"no heartbeat for {grace} s (worker lost)")


def fail_and_requeue(
    study: optuna.Study, storage: BaseStorage, trial: FrozenTrial, reason: str, requeue: Requeue
) -> bool:
    """Fail a RUNNING trial with ``reason`` and re-queue it; False when it had already finished.

    The state change is the arbiter: only the caller whose FAIL lands re-queues, so a trial is
    re-queued at most once however many workers race (its owner included). Hold the study lock
    around it, or a budget claim between the two steps would start one trial too many.
    """
    try:
        storage.set_trial_user_attr(trial_id(trial), attrs.FAIL_REASON, reason)
        if not storage.set_trial_state_values(trial_id(trial), TrialState.FAIL):
            return False
    except UpdateFinishedTrialError:
        return False
    requeue.requeue(study, storage.get_trial(trial_id(trial)), reason)
    return True


def sweep_stale_trials(
    study: optuna.Study,
    storage: BaseStorage,
    target: StorageTarget,
    options: StorageOptions,
    lock: StudyLock,
) -> list[int]:
    """Fail and re-queue the study's RUNNING trials whose worker stopped; their numbers.

    Under the study lock: between the FAIL and the re-queued copy, a budget claim would see a
    free slot and start one trial too many. The common case, nothing stale, takes no lock.
    """
    if not _stale_trials(study, storage, target, options.heartbeat_grace):
        return []
    requeue = stale_requeue(options)
    swept: list[int] = []
    with lock:
        for trial, reason in _stale_trials(study, storage, target, options.heartbeat_grace):
            if fail_and_requeue(study, storage, trial, reason, requeue):
                swept.append(trial.number)
    if swept:
        log.warning("failed stale trials %s; their configurations are re-queued", swept)
    return swept


def _stale_trials(
    study: optuna.Study, storage: BaseStorage, target: StorageTarget, grace: int
) -> list[tuple[FrozenTrial, str]]:
    """RUNNING trials without a sign of life for ``grace`` seconds, with the reason."""
    stale_ids: set[int] = set()
    if target.kind == "postgres":
        # Optuna's heartbeat check, on the server clock (the method RDBStorage implements for
        # fail_stale_trials; called directly so the failed trial gets its reason).
        study_id = storage.get_study_id_from_name(study.study_name)
        stale_ids.update(storage._get_stale_trial_ids(study_id))  # type: ignore[attr-defined]
    now = time.time()
    found = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        lease = trial.system_attrs.get(attrs.LEASE)
        if trial_id(trial) in stale_ids:
            found.append((trial, f"no heartbeat for over {grace} s (worker lost)"))
        elif lease is None or target.kind == "journal":
            # Postgres trials with a lease are judged by Optuna's heartbeat above.
            last_sign = float(lease) if lease is not None else _started(trial)
            if now - last_sign > grace:
                reason = f"no heartbeat for {now - last_sign:.1f} s > {grace} s (worker lost)"
                found.append((trial, reason))
    return found


def _started(trial: FrozenTrial) -> float:
    start = trial.datetime_start
    return start.timestamp() if isinstance(start, datetime) else time.time()


class TrialBeat:
    """Refreshes one running trial's heartbeat and lease from a background thread."""

    def __init__(
        self, storage: BaseStorage, target: StorageTarget, trial: optuna.Trial, interval: float
    ) -> None:
        self._storage = storage
        self._postgres = target.kind == "postgres"
        self._trial_id = trial_id(trial)
        self._number = trial.number
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False  # another worker failed this trial (a heartbeat false positive)

    def beat(self) -> None:
        """One sign of life; raises UpdateFinishedTrialError once the trial has finished."""
        if self._postgres:
            self._storage.record_heartbeat(self._trial_id)  # type: ignore[attr-defined]
        self._storage.set_trial_system_attr(self._trial_id, attrs.LEASE, time.time())

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"beat-trial-{self._number}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.beat()
            except UpdateFinishedTrialError:
                self.lost = not self._stop.is_set()
                if self.lost:
                    log.warning("trial %d was finished by another worker", self._number)
                return
            except Exception as error:  # a storage outage: keep trying, the grace is long
                log.warning("heartbeat of trial %d failed: %s", self._number, error)


class PeriodicSweep:
    """Sweeps stale trials on a timer while this worker trains (a background thread)."""

    def __init__(
        self,
        study: optuna.Study,
        storage: BaseStorage,
        target: StorageTarget,
        options: StorageOptions,
        lock: StudyLock,
    ) -> None:
        self._arguments = (study, storage, target, options, lock)
        self._interval = options.heartbeat_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep", daemon=True)

    def __enter__(self) -> PeriodicSweep:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                sweep_stale_trials(*self._arguments)
            except Exception as error:  # never let a storage hiccup kill the worker
                log.warning("sweeping stale trials failed: %s", error)
