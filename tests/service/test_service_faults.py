"""Workers killed (SIGKILL) or stopped (SIGTERM) mid-trial: the budget stays exact, each lost
configuration runs again exactly once, and no trial is left RUNNING (RELIABILITY 4, 5, 7)."""

from __future__ import annotations

import signal
import time

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from spectune.storage import attrs
from spectune.storage.factory import open_storage
from spectune.storage.testing import FAST_OPTIONS, Backend, Process, Spectune, poll_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
]


def create(spectune: Spectune, backend: Backend, name: str, *args: str) -> None:
    spectune.create_smoke_study(backend.url, name, "--pruner", "none", *args)


def trials(backend: Backend, name: str) -> list[FrozenTrial]:
    storage = open_storage(backend.target, FAST_OPTIONS)
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def mid_trial(backend: Backend, name: str, *candidates: Process) -> tuple[Process, FrozenTrial]:
    """Wait until one of ``candidates`` runs a trial and has reported an epoch of it."""
    by_pid = {process.pid: process for process in candidates}

    def running() -> tuple[Process, FrozenTrial] | None:
        for trial in trials(backend, name):
            owner = by_pid.get(trial.user_attrs.get(attrs.WORKER_PID, -1))
            if trial.state is TrialState.RUNNING and owner and trial.intermediate_values:
                return owner, trial
        return None

    return poll_until(running, 60, f"a running trial of {sorted(by_pid)}", every=0.05)


def assert_retried_once(found: list[FrozenTrial], lost: FrozenTrial, reason: str) -> None:
    [original] = [t for t in found if t.number == lost.number]
    assert original.state is TrialState.FAIL
    retries = [t for t in found if t.user_attrs.get(attrs.RETRY_OF) == lost.number]
    assert len(retries) == 1, [t.number for t in retries]
    assert retries[0].params == lost.params
    assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert reason in retries[0].user_attrs[attrs.RETRY_REASON]


def assert_budget(found: list[FrozenTrial], n_trials: int) -> None:
    done = [t for t in found if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(done) == n_trials
    assert not [t for t in found if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_killed_and_terminated_workers_mid_trial(
    spectune: Spectune, backend: Backend, study_name: str
) -> None:
    create(
        spectune,
        backend,
        study_name,
        "--n-trials",
        "12",
        "--epochs",
        "8",
        "--smoke-epoch-seconds",
        "0.15",
    )
    worker = ("worker", "--study-name", study_name, "--storage", backend.url)
    killed, stopped, *others = [spectune.start(*worker) for _ in range(4)]

    _, lost_to_kill = mid_trial(backend, study_name, killed)
    killed.popen.send_signal(signal.SIGKILL)
    _, lost_to_term = mid_trial(backend, study_name, stopped)
    sent = time.monotonic()
    stopped.popen.send_signal(signal.SIGTERM)
    assert stopped.finish(timeout=10) == 0, stopped.output
    assert time.monotonic() - sent < 10
    assert "re-queued" in stopped.output
    for process in others:
        assert process.finish() == 0, process.output

    found = trials(backend, study_name)
    assert_budget(found, 12)
    assert_retried_once(found, lost_to_kill, "no heartbeat")
    assert_retried_once(found, lost_to_term, "worker stopped (SIGTERM)")
    [term_trial] = [t for t in found if t.number == lost_to_term.number]
    assert term_trial.user_attrs[attrs.FAIL_REASON] == "worker stopped (SIGTERM)"


def test_the_worker_of_the_last_trial_is_killed(
    spectune: Spectune, backend: Backend, study_name: str
) -> None:
    """The last trial's worker dies while another waits: that one runs it again and exits."""
    create(
        spectune,
        backend,
        study_name,
        "--n-trials",
        "1",
        "--epochs",
        "15",
        "--smoke-epoch-seconds",
        "0.3",
    )
    worker = ("worker", "--study-name", study_name, "--storage", backend.url)
    first, second = spectune.start(*worker), spectune.start(*worker)
    victim, lost = mid_trial(backend, study_name, first, second)
    waiting = second if victim is first else first
    waiting.wait_for(r"worker \d of study")
    victim.popen.send_signal(signal.SIGKILL)
    assert victim.finish() == -signal.SIGKILL
    assert [t.state for t in trials(backend, study_name)] == [TrialState.RUNNING]
    assert waiting.finish() == 0, waiting.output

    found = trials(backend, study_name)
    assert_budget(found, 1)
    assert_retried_once(found, lost, "no heartbeat")


def test_the_worker_of_the_last_trial_is_killed_alone(
    spectune: Spectune, backend: Backend, study_name: str
) -> None:
    """No worker is left: a restarted one sweeps the trial and runs it again (Optuna #3215)."""
    create(
        spectune,
        backend,
        study_name,
        "--n-trials",
        "1",
        "--epochs",
        "10",
        "--smoke-epoch-seconds",
        "0.2",
    )
    worker = ("worker", "--study-name", study_name, "--storage", backend.url)
    victim = spectune.start(*worker)
    _, lost = mid_trial(backend, study_name, victim)
    victim.popen.send_signal(signal.SIGKILL)
    victim.finish()
    assert [t.state for t in trials(backend, study_name)] == [TrialState.RUNNING]

    restarted = spectune.run(*worker)
    assert restarted.popen.returncode == 0, restarted.output
    found = trials(backend, study_name)
    assert_budget(found, 1)
    assert_retried_once(found, lost, "no heartbeat")


def test_the_worker_of_the_last_trial_is_stopped(
    spectune: Spectune, backend: Backend, study_name: str
) -> None:
    create(
        spectune,
        backend,
        study_name,
        "--n-trials",
        "1",
        "--epochs",
        "10",
        "--smoke-epoch-seconds",
        "0.2",
    )
    worker = ("worker", "--study-name", study_name, "--storage", backend.url)
    victim = spectune.start(*worker)
    _, lost = mid_trial(backend, study_name, victim)
    sent = time.monotonic()
    victim.popen.send_signal(signal.SIGTERM)
    assert victim.finish(timeout=10) == 0, victim.output
    assert time.monotonic() - sent < 10
    states = [t.state for t in trials(backend, study_name)]
    assert states == [TrialState.FAIL, TrialState.WAITING]  # nothing left RUNNING

    again = spectune.run(*worker)
    assert again.popen.returncode == 0, again.output
    found = trials(backend, study_name)
    assert_budget(found, 1)
    assert_retried_once(found, lost, "worker stopped (SIGTERM)")
