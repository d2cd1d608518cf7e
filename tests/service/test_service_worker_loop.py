"""The worker loop in-process (a heartbeat false positive), and GPU slots across processes."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import replace

import optuna
import pytest
from optuna.trial import TrialState

from spectune.storage import attrs
from spectune.storage.factory import build_storage, open_storage, study_lock
from spectune.storage.liveness import TrialBeat, sweep_stale_trials
from spectune.storage.options import StorageOptions
from spectune.storage.testing import Backend, Spectune, poll_until
from spectune.study.cli import main
from spectune.study.smoke import make_objective
from spectune.study.spec import LivenessSpec, SmokeSpec, StudySpec, create_study
from spectune.study.worker import Progress, WorkerSettings, run_worker

pytestmark = [
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
    pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed"),
]

# The owner beats rarely; a second worker with a short grace judges its trial stale.
OWNER = StorageOptions(heartbeat_interval=30, heartbeat_grace=60, connect_tries=1)
JUDGE = StorageOptions(heartbeat_interval=1, heartbeat_grace=2, connect_tries=1)


def test_a_live_trial_failed_by_another_worker_ends_once(backend: Backend, study_name: str) -> None:
    """RELIABILITY 7: the owner's next report raises; it logs, goes on, and the budget holds."""
    spec = StudySpec(
        study_name=study_name,
        objective="smoke",
        dataset="toy",
        n_trials=3,
        epochs=3,
        smoke=SmokeSpec(epoch_seconds=0.01),
        liveness=LivenessSpec(OWNER.heartbeat_interval, OWNER.heartbeat_grace, OWNER.max_retry),
    )
    create_study(open_storage(backend.target, OWNER, create=True), spec)
    judge = build_storage(backend.target, JUDGE)
    judge_study = optuna.load_study(study_name=study_name, storage=judge)
    judge_lock = study_lock(judge, backend.target, study_name, judge_study._study_id)

    def factory(
        spec: StudySpec, device: str, progress: Progress
    ) -> Callable[[optuna.Trial], float]:
        smoke = make_objective(spec, device, progress)

        def objective(trial: optuna.Trial) -> float:
            if trial.number == 0:
                # The smoke objective's parameters, then the false positive.
                trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
                trial.suggest_float("band_high", 0.5, 1.0)
                trial.suggest_categorical("apc", [True, False])
                # Another worker, with a short grace, sweeps this live trial as stale.
                poll_until(
                    lambda: sweep_stale_trials(
                        judge_study, judge, backend.target, JUDGE, judge_lock
                    ),
                    timeout=20,
                    what="the judge's sweep",
                )
            return smoke(trial)

        return objective

    settings = WorkerSettings(study_name, backend.target, OWNER, gpu="cpu")
    report = run_worker(settings, factory)

    found = optuna.load_study(study_name=study_name, storage=judge).get_trials()
    assert report.stopped_by == "budget" and report.states["LOST"] == 1
    assert found[0].state is TrialState.FAIL
    assert "no heartbeat" in found[0].user_attrs[attrs.FAIL_REASON]
    retries = [t for t in found if t.user_attrs.get(attrs.RETRY_OF) == 0]
    assert len(retries) == 1 and retries[0].params == found[0].params
    done = [t for t in found if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(done) == 3 and len(found) == 4
    judge_lock.close()


def test_consecutive_failures_stop_a_worker(backend: Backend, study_name: str) -> None:
    options = replace(OWNER, heartbeat_interval=1, heartbeat_grace=3)
    spec = StudySpec(
        study_name=study_name,
        objective="smoke",
        dataset="toy",
        n_trials=5,
        epochs=2,
        smoke=SmokeSpec(epoch_seconds=0.01, fail_trial_numbers=(0, 1, 2, 3)),
        liveness=LivenessSpec(1, 3, options.max_retry),
    )
    create_study(open_storage(backend.target, options, create=True), spec)
    settings = WorkerSettings(
        study_name, backend.target, options, gpu="cpu", max_consecutive_failures=3
    )
    report = run_worker(settings)
    assert report.stopped_by == "failures" and report.states == {"FAIL": 3}


@pytest.mark.slow
def test_gpu_slots_across_worker_processes(spectune: Spectune, study_name: str) -> None:
    """Simulated 2 GPUs, at most 2 workers each: 4 workers get GPUs 0, 1, 0, 1; a 5th none."""
    created = spectune.run(
        "study",
        "create",
        "--study-name",
        study_name,
        "--dataset",
        "toy",
        "--objective",
        "smoke",
        "--n-trials",
        "1000",
        "--epochs",
        "3",
    )
    assert created.popen.returncode == 0, created.output
    gpus = {"SPECTUNE_GPU_COUNT": "2"}
    worker = ("worker", "--study-name", study_name, "--trials-per-gpu", "2")
    workers, devices = [], []
    for _ in range(4):
        workers.append(spectune.start(*worker, env=gpus))
        devices.append(workers[-1].wait_for(r"of study .* on (cuda:\d)").group(1))
    assert devices == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    fifth = spectune.run(*worker, env=gpus)
    assert fifth.popen.returncode == 2
    assert "all 2 GPUs already run 2 worker(s) each" in fifth.output
    for process in workers:
        process.popen.send_signal(signal.SIGTERM)
    for process in workers:
        assert process.finish(timeout=15) == 0, process.output


def test_status_shows_budget_best_and_running_trials(
    backend: Backend, study_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    options = replace(OWNER, heartbeat_interval=1, heartbeat_grace=3)
    spec = StudySpec(
        study_name=study_name, objective="smoke", dataset="toy", n_trials=4, epochs=2,
        liveness=LivenessSpec(1, 3, options.max_retry),
    )  # fmt: skip
    storage = open_storage(backend.target, options, create=True)
    create_study(storage, spec)
    study = optuna.load_study(study_name=study_name, storage=storage)
    study.enqueue_trial({"x": 0.5})
    done = study.ask()
    study.tell(done, done.suggest_float("x", 0, 1))
    running = study.ask()
    TrialBeat(storage, backend.target, running, interval=1).beat()
    running.set_user_attr(attrs.WORKER_HOST, "node7")
    running.set_user_attr(attrs.WORKER_PID, 4242)

    code = main(["study", "status", "--study-name", study_name, "--storage", backend.url])

    out = capsys.readouterr().out
    assert code == 0
    assert "finished 1 of 4 (COMPLETE 1, PRUNED 0); RUNNING 1, WAITING 0, FAIL 0" in out
    assert "best: trial 0 value 0.5000 (x=0.5)" in out
    assert f"trial {running.number}: host node7 pid 4242" in out
    assert "last heartbeat 0 s ago" in out or "last heartbeat 1 s ago" in out
