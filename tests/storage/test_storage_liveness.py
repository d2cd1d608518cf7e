"""Stale trials are failed and re-queued exactly once, on both backends (RELIABILITY 4, 7)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import optuna
import pytest
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from spectune.storage import attrs
from spectune.storage.factory import build_storage, open_storage, study_lock
from spectune.storage.liveness import (
    Requeue,
    TrialBeat,
    fail_and_requeue,
    sweep_stale_trials,
)
from spectune.storage.locks import StudyLock
from spectune.storage.testing import FAST_OPTIONS, Backend, poll_until

pytestmark = [
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
    pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed"),
]


def _study(backend: Backend, name: str) -> tuple[optuna.Study, BaseStorage, StudyLock]:
    storage = open_storage(backend.target, FAST_OPTIONS, create=True)
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    lock = study_lock(storage, backend.target, name, storage.get_study_id_from_name(name))
    return study, storage, lock


def _dead_trial(study: optuna.Study, storage: BaseStorage, backend: Backend) -> optuna.Trial:
    """A trial whose worker beat once, reported an epoch, then died."""
    trial = study.ask()
    trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
    trial.suggest_categorical("apc", [True, False])
    TrialBeat(storage, backend.target, trial, interval=1).beat()
    trial.report(0.1, 0)
    return trial


def _by_state(study: optuna.Study, state: TrialState) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(state,))


def test_a_dead_workers_trial_is_failed_and_requeued_once(
    backend: Backend, study_name: str
) -> None:
    study, storage, lock = _study(backend, study_name)
    trial = _dead_trial(study, storage, backend)
    sweep = (study, storage, backend.target, FAST_OPTIONS, lock)
    assert sweep_stale_trials(*sweep) == []  # fresh: not stale yet

    swept = poll_until(lambda: sweep_stale_trials(*sweep), timeout=15, what="the stale sweep")

    assert swept == [trial.number]
    [failed] = _by_state(study, TrialState.FAIL)
    [retry] = _by_state(study, TrialState.WAITING)
    assert failed.number == trial.number and retry.params == failed.params
    assert retry.user_attrs == {
        attrs.RETRY_OF: trial.number,
        attrs.RETRY_REASON: retry.user_attrs[attrs.RETRY_REASON],
    }
    assert "no heartbeat" in retry.user_attrs[attrs.RETRY_REASON]
    assert attrs.LEASE not in retry.system_attrs
    assert Requeue.retry_history(retry) == [trial.number]
    assert sweep_stale_trials(*sweep) == []
    assert len(_by_state(study, TrialState.WAITING)) == 1


def test_a_trial_that_never_beat_is_judged_by_its_start(backend: Backend, study_name: str) -> None:
    study, storage, lock = _study(backend, study_name)
    trial = study.ask()  # the worker died between ask and its first heartbeat
    trial.suggest_float("x", 0, 1)
    sweep = (study, storage, backend.target, FAST_OPTIONS, lock)
    assert sweep_stale_trials(*sweep) == []
    assert poll_until(lambda: sweep_stale_trials(*sweep), 15, "the sweep") == [trial.number]
    [retry] = _by_state(study, TrialState.WAITING)
    assert retry.user_attrs[attrs.RETRY_OF] == trial.number


def test_racing_workers_requeue_a_trial_once(backend: Backend, study_name: str) -> None:
    study, storage, _ = _study(backend, study_name)
    trial = _dead_trial(study, storage, backend)
    frozen = storage.get_trial(trial._trial_id)
    requeue = Requeue(max_retry=3, stale_reason="test")
    results: list[bool] = []

    def judge() -> None:
        # Each "worker" has its own storage object (own connections / journal lock).
        own = build_storage(backend.target, FAST_OPTIONS)
        own_study = optuna.load_study(study_name=study_name, storage=own)
        results.append(fail_and_requeue(own_study, own, frozen, "stale", requeue))

    threads = [threading.Thread(target=judge) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False, False, False, True]
    assert len(_by_state(study, TrialState.FAIL)) == 1
    assert len(_by_state(study, TrialState.WAITING)) == 1


def test_the_owner_of_a_trial_failed_by_another_worker_learns_it(
    backend: Backend, study_name: str
) -> None:
    """A heartbeat false positive: the owner's next report, beat and tell all raise."""
    study, storage, _ = _study(backend, study_name)
    trial = _dead_trial(study, storage, backend)  # alive in fact: it goes on below
    requeue = Requeue(max_retry=3, stale_reason="test")
    assert fail_and_requeue(study, storage, storage.get_trial(trial._trial_id), "stale", requeue)

    with pytest.raises(UpdateFinishedTrialError):
        trial.report(0.2, 1)
    with pytest.raises(UpdateFinishedTrialError):
        TrialBeat(storage, backend.target, trial, interval=1).beat()
    with pytest.raises(ValueError, match="Cannot tell a FAIL trial"):
        study.tell(trial, 0.2)
    assert not fail_and_requeue(study, storage, storage.get_trial(trial._trial_id), "x", requeue)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.WAITING]


def test_requeues_stop_after_max_retry(backend: Backend, study_name: str) -> None:
    study, storage, _ = _study(backend, study_name)
    requeue = Requeue(max_retry=2, stale_reason="test")
    trial = _dead_trial(study, storage, backend)
    for _ in range(3):  # the original and its two retries all die
        assert trial.params  # a retry keeps the configuration
        fail_and_requeue(study, storage, storage.get_trial(trial._trial_id), "stale", requeue)
        waiting = _by_state(study, TrialState.WAITING)
        if not waiting:
            break
        trial = study.ask()
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL] * 3  # original + max_retry retries, none waiting
    histories = [Requeue.retry_history(t) for t in study.get_trials()]
    assert histories == [[], [0], [0, 1]]


def test_a_beating_trial_is_never_swept(backend: Backend, study_name: str) -> None:
    options = replace(FAST_OPTIONS, heartbeat_grace=2)
    study, storage, lock = _study(backend, study_name)
    trial = _dead_trial(study, storage, backend)
    beat = TrialBeat(storage, backend.target, trial, interval=0.5)
    beat.start()
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            assert sweep_stale_trials(study, storage, backend.target, options, lock) == []
    finally:
        beat.stop()
    assert not beat.lost
    assert storage.get_trial(trial._trial_id).state == TrialState.RUNNING
