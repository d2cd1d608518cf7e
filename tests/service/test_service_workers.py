"""Workers as real processes on one study: exact budget, pruning, failures, refusals, errors."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from spectune.storage import attrs
from spectune.storage.factory import open_storage
from spectune.storage.testing import FAST_OPTIONS, Backend, Spectune

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def create(spectune: Spectune, backend: Backend, name: str, *args: str) -> None:
    spectune.create_smoke_study(backend.url, name, *args)


def trials(backend: Backend, name: str) -> list[FrozenTrial]:
    storage = open_storage(backend.target, FAST_OPTIONS)
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def states(found: list[FrozenTrial]) -> dict[str, int]:
    counted: dict[str, int] = {}
    for trial in found:
        counted[trial.state.name] = counted.get(trial.state.name, 0) + 1
    return counted


def finished(found: list[FrozenTrial]) -> int:
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in found)


@pytest.mark.slow
def test_four_workers_spend_the_budget_exactly(
    spectune: Spectune, backend: Backend, study_name: str
) -> None:
    create(spectune, backend, study_name, "--n-trials", "12", "--epochs", "4")
    worker = ("worker", "--study-name", study_name, "--storage", backend.url)
    workers = [spectune.start(*worker) for _ in range(4)]
    for process in workers:
        assert process.finish() == 0, process.output

    found = trials(backend, study_name)
    assert finished(found) == 12 and len(found) == 12, states(found)
    assert len({t.number for t in found}) == len(found)
    assert all(t.user_attrs[attrs.WORKER_PID] in {p.pid for p in workers} for t in found)
    assert {t.user_attrs[attrs.WORKER_INDEX] for t in found} <= {0, 1, 2, 3}

    # Restarted on a full study, workers start nothing.
    restarted = [spectune.start(*worker) for _ in range(4)]
    for process in restarted:
        assert process.finish() == 0, process.output
        assert "done (budget): no trials" in process.output
    assert len(trials(backend, study_name)) == 12


def test_median_pruning_waits_for_its_startup_trials(
    spectune: Spectune, backend: Backend, study_name: str
) -> None:
    create(
        spectune,
        backend,
        study_name,
        "--n-trials",
        "10",
        "--epochs",
        "5",
        "--sampler",
        "random",
        "--pruner",
        "median",
        "--pruner-startup-trials",
        "3",
        "--pruner-warmup-steps",
        "1",
    )
    process = spectune.run("worker", "--study-name", study_name, "--storage", backend.url)
    assert process.popen.returncode == 0, process.output

    found = trials(backend, study_name)
    assert finished(found) == 10
    pruned = [t for t in found if t.state is TrialState.PRUNED]
    assert pruned, states(found)
    for trial in pruned:
        assert trial.datetime_complete is not None
        complete_before = [
            t
            for t in found
            if t.state is TrialState.COMPLETE
            and t.datetime_complete is not None
            and t.datetime_complete < trial.datetime_complete
        ]
        assert len(complete_before) >= 3, trial.number
        assert trial.last_step is not None and trial.last_step >= 1  # warm-up epochs kept
        assert sorted(trial.intermediate_values) == list(range(trial.last_step + 1))


def test_a_raising_trial_and_a_nan_metric_fail_with_their_reason(
    spectune: Spectune, backend: Backend, study_name: str
) -> None:
    create(
        spectune,
        backend,
        study_name,
        "--n-trials",
        "6",
        "--epochs",
        "3",
        "--pruner",
        "none",
        "--smoke-fail-trials",
        "1",
        "--smoke-nan-trials",
        "3",
    )
    worker = ("worker", "--study-name", study_name, "--storage", backend.url)
    workers = [spectune.start(*worker) for _ in range(2)]
    for process in workers:
        assert process.finish() == 0, process.output

    found = {t.number: t for t in trials(backend, study_name)}
    assert found[1].state is TrialState.FAIL and found[3].state is TrialState.FAIL
    assert found[1].user_attrs[attrs.FAIL_REASON] == (
        "SmokeFailure: trial 1 is listed in smoke.fail_trial_numbers"
    )
    assert found[3].user_attrs[attrs.FAIL_REASON].startswith("non-finite recall@20")
    assert len(found) == 8 and finished(list(found.values())) == 6  # failures do not count
    assert not any(attrs.RETRY_OF in t.user_attrs for t in found.values())  # not retried


@pytest.mark.slow
def test_a_worker_with_other_settings_refuses_to_start(
    spectune: Spectune, backend: Backend, study_name: str
) -> None:
    create(spectune, backend, study_name, "--n-trials", "3")
    worker = ("worker", "--study-name", study_name, "--storage", backend.url)
    refusals = {
        "metric": spectune.start(*worker, "--metric", "ndcg@20"),
        "pruner": spectune.start(*worker, "--pruner", "hyperband"),
        "heartbeat_grace": spectune.start(*worker, env={"SPECTUNE_HEARTBEAT_GRACE": "30"}),
        "n_trials": spectune.start(
            "study",
            "create",
            "--study-name",
            study_name,
            "--dataset",
            "toy",
            "--objective",
            "smoke",
            "--storage",
            backend.url,
            "--n-trials",
            "4",
        ),
    }
    same = spectune.start(
        "study",
        "create",
        "--study-name",
        study_name,
        "--dataset",
        "toy",
        "--objective",
        "smoke",
        "--storage",
        backend.url,
        "--n-trials",
        "3",
    )
    for field, process in refusals.items():
        assert process.finish() == 2, process.output
        assert f"error: {field} differs from the study: stored" in process.output
    assert "ndcg@20" in refusals["metric"].output and "'median'" in refusals["pruner"].output
    assert same.finish() == 0 and "exists" in same.output and "same settings" in same.output
    assert trials(backend, study_name) == []


def test_bad_storage_and_unknown_study_fail_clearly_and_write_nothing(
    spectune: Spectune, postgres_url: str, empty_postgres_url: str, tmp_path: Path
) -> None:
    status = ("study", "status", "--study-name", "nope")
    cases = {
        "unknown URL": (
            spectune.start(*status, "--storage", "mysql://u:hunter2@db/x"),
            "unknown storage URL",
        ),
        "sqlite": (spectune.start(*status, "--storage", "sqlite:///x.db"), "SQLite is not"),
        "unreachable": (
            spectune.start(
                "worker",
                "--study-name",
                "nope",
                "--storage",
                "postgresql://u:hunter2@127.0.0.1:1/x",
            ),
            "cannot reach Postgres at 127.0.0.1:1 after 2 tries",
        ),
        "unknown journal study": (
            spectune.start("worker", "--study-name", "nope"),
            "no study 'nope' in runs/nope.journal",
        ),
        "uninitialised postgres": (
            spectune.start("worker", "--study-name", "nope", "--storage", empty_postgres_url),
            "has no Optuna tables; run `spectune storage init`",
        ),
        "unknown postgres study": (
            spectune.start("worker", "--study-name", "nope", "--storage", postgres_url),
            "no study 'nope' in postgresql",
        ),
    }
    for case, (process, message) in cases.items():
        assert process.finish() == 2, (case, process.output)
        assert message in process.output, (case, process.output)
        assert "hunter2" not in process.output
        assert "Traceback" not in process.output
    assert not (tmp_path / "runs").exists() and not (tmp_path / "gpu-slots").exists()
    assert not (tmp_path / "x.db").exists()


def test_a_file_that_is_not_a_journal_is_refused_by_every_command(
    spectune: Spectune, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("some notes\n")  # one line: Optuna alone would read it as an empty journal
    storage = ("--storage", str(notes))
    named = ("--study-name", "x", *storage)
    commands = {
        "worker": ("worker", *named, "-g", "cpu"),
        "study": ("study", "create", *named, "--dataset", "toy", "--objective", "smoke"),
        "status": ("study", "status", *named),
        "export": ("export", *named),
        "report": ("report", *named, "--no-png"),
        "ablate": ("ablate", "--study-name", "a", "--from", "x", *storage),
    }
    started = {name: spectune.start(*args) for name, args in commands.items()}
    for name, process in started.items():
        assert process.finish() == 2, (name, process.output)
        command = "study" if name == "status" else name
        assert process.output == (
            f"spectune {command}: error: {notes} is not an Optuna journal file (line 1 is not a "
            "JSON log entry); give --storage a journal made by spectune, or the path of a new "
            "file"
        ), (name, process.output)
    assert notes.read_text() == "some notes\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]
