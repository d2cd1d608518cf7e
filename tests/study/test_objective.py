"""The MGCN objective in-process: one report per epoch, test metrics kept aside, memory freed."""

from __future__ import annotations

import gc
import math
from pathlib import Path

import optuna
import pytest

from spectune.datasets.synthetic import TINY, make_synthetic, write_mmrec
from spectune.models.mgcn import MGCN
from spectune.study.objective import make_objective
from spectune.study.spec import PrunerSpec, StudySpec
from spectune.study.worker import Progress, free_memory

SPACE = {
    "params": {
        "use_damps": {"choice": [True, False]},
        "learning_rate": {"float": [1e-3, 5e-2], "log": True},
    },
    "fixed": {"embedding_size": 16, "knn_k": 5, "batch_size": 128, "topk": [5, 10, 20]},
}


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StudySpec:
    write_mmrec(make_synthetic(TINY, seed=0), tmp_path / "data" / TINY.name)
    monkeypatch.chdir(tmp_path)  # checkpoints and the graph cache go under ./runs
    return StudySpec(
        study_name="inproc",
        objective="mgcn",
        dataset=TINY.name,
        n_trials=3,
        epochs=3,
        search_space=SPACE,
        pruner=PrunerSpec(name="none"),
        data_root=str(tmp_path / "data"),
    )


def live_models() -> int:
    gc.collect()
    return sum(type(item) is MGCN for item in gc.get_objects())


def test_trials_report_each_epoch_once_and_leave_no_model_behind(spec: StudySpec) -> None:
    objective = make_objective(spec, "cpu", Progress(spec.n_trials, spec.metric, enabled=False))
    study = optuna.create_study(direction="maximize")
    before = live_models()
    for _ in range(3):
        trial = study.ask()
        value = objective(trial)
        study.tell(trial, value)
        free_memory()
        assert live_models() == before  # model, optimizer and trainer are gone after a trial
    for trial in study.trials:
        assert sorted(trial.intermediate_values) == [0, 1, 2]
        result = trial.user_attrs["result"]
        assert trial.value == result["valid"]["recall@20"]
        assert trial.user_attrs["test_metrics"] == result["test"]
        assert math.isfinite(trial.user_attrs["test_metrics"]["recall@20"])
        assert Path(trial.user_attrs["checkpoint"]).is_file()
        assert trial.user_attrs["config"]["train"]["epochs"] == 3


def test_the_median_pruner_stops_a_trial_between_epochs(spec: StudySpec) -> None:
    objective = make_objective(spec, "cpu", Progress(spec.n_trials, spec.metric, enabled=False))
    pruner = optuna.pruners.ThresholdPruner(lower=2.0)  # every epoch is below: prune at once
    study = optuna.create_study(direction="maximize", pruner=pruner)
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned, match="at epoch 0"):
        objective(trial)
    assert list(study.trials[0].intermediate_values) == [0]
    assert "result" not in study.trials[0].user_attrs
