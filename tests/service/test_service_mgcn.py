"""Real MGCN+DAMPS trials through the service: exact budget, export that reproduces, ablation."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from spectune.datasets.synthetic import TINY, make_synthetic, write_mmrec
from spectune.storage import attrs
from spectune.storage.factory import open_storage
from spectune.storage.testing import FAST_OPTIONS, Backend, Spectune
from spectune.study.config import build_config

SMALL_SPACE = """
params:
  use_damps: {choice: [true, false]}
  apc: {choice: [true, false], when: {use_damps: true}}
  band_high: {float: [0.5, 1.0], step: 0.25, when: {use_damps: true}}
  learning_rate: {float: [1.0e-3, 5.0e-2], log: true}
fixed:
  embedding_size: 16
  knn_k: 5
  batch_size: 128
  topk: [5, 10, 20]
"""


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_mmrec(make_synthetic(TINY, seed=0), root / TINY.name)
    return root


def create(spectune: Spectune, backend: Backend, name: str, data_root: Path, n_trials: int) -> None:
    space = spectune.cwd / "space.yaml"
    space.write_text(SMALL_SPACE)
    created = spectune.run(
        "study", "create", "--study-name", name, "--dataset", TINY.name, "--storage", backend.url,
        "--search-space", str(space), "--n-trials", str(n_trials), "--epochs", "3",
        "--data-root", str(data_root), "--pruner", "median", "--pruner-startup-trials", "4",
        "--sampler-startup-trials", "4",
    )  # fmt: skip
    assert created.popen.returncode == 0, created.output


def run_workers(spectune: Spectune, backend: Backend, name: str, count: int) -> None:
    workers = [
        spectune.start("worker", "--study-name", name, "--storage", backend.url, "--no-progress")
        for _ in range(count)
    ]
    for worker in workers:
        assert worker.finish(timeout=600) == 0, worker.output


def load(backend: Backend, name: str, spectune: Spectune) -> optuna.Study:
    from spectune.storage.factory import open_existing_study
    from spectune.storage.urls import parse_storage_url

    target = parse_storage_url(backend.url)
    if target.kind == "journal" and not target.journal_path.is_absolute():
        target = parse_storage_url(str(spectune.cwd / target.journal_path))
    return optuna.load_study(
        study_name=name, storage=open_existing_study(target, FAST_OPTIONS, name)
    )


@pytest.mark.slow
def test_four_workers_real_trials_exact_budget_then_export_reproduces(
    backend: Backend, spectune: Spectune, study_name: str, data_root: Path
) -> None:
    create(spectune, backend, study_name, data_root, n_trials=12)
    run_workers(spectune, backend, study_name, 4)

    study = load(backend, study_name, spectune)
    trials = study.get_trials(deepcopy=False)
    states = Counter(trial.state for trial in trials)
    assert states[TrialState.COMPLETE] + states[TrialState.PRUNED] == 12
    assert states[TrialState.RUNNING] == 0 and states[TrialState.WAITING] == 0
    assert len({trial.number for trial in trials}) == len(trials)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        steps = sorted(trial.intermediate_values)
        assert steps == [0, 1, 2]  # one report per epoch, from 0
        result = trial.user_attrs["result"]
        assert (
            trial.value == result["valid"]["recall@20"] == max(trial.intermediate_values.values())
        )
        assert trial.user_attrs["test_metrics"] == result["test"]
        assert Path(trial.user_attrs["checkpoint"]).is_file()
        assert trial.user_attrs["config"]["model"]["use_damps"] == trial.params["use_damps"]

    out = spectune.cwd / "best.yaml"
    exported = spectune.run(
        "export", "--study-name", study_name, "--storage", backend.url, "--out", str(out)
    )
    assert exported.popen.returncode == 0, exported.output
    document = yaml.safe_load(out.read_text())
    assert document["selection"]["value"] == study.best_value
    assert document["selection"]["trial"] == study.best_trial.number
    assert "test_reported_not_used_for_selection" in document["selection"]

    rerun = spectune.run(
        "train", "--config", str(out), "--data-root", str(data_root), "-g", "-1",
        "--out", str(spectune.cwd / "rerun.json"),
    )  # fmt: skip
    assert rerun.popen.returncode == 0, rerun.output
    reproduced = json.loads((spectune.cwd / "rerun.json").read_text())
    assert reproduced["valid"]["recall@20"] == study.best_value


@pytest.mark.slow
def test_ablation_runs_every_variant_and_seed_exactly_once(
    backend: Backend, spectune: Spectune, study_name: str, data_root: Path
) -> None:
    create(spectune, backend, study_name, data_root, n_trials=3)
    run_workers(spectune, backend, study_name, 1)
    ablation = f"{study_name}-ablation"
    planned = spectune.run(
        "ablate", "--study-name", ablation, "--from", study_name, "--storage", backend.url,
        "--seeds", "2", "--variants", "no_apc,vanilla_mgcn,linear_control",
    )  # fmt: skip
    assert planned.popen.returncode == 0, planned.output
    again = spectune.run(
        "ablate", "--study-name", ablation, "--from", study_name, "--storage", backend.url,
        "--seeds", "2", "--variants", "no_apc,vanilla_mgcn,linear_control",
    )  # fmt: skip
    assert again.popen.returncode == 0 and "nothing enqueued" in again.output
    run_workers(spectune, backend, ablation, 2)

    study = load(backend, ablation, spectune)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 8 and all(trial.state is TrialState.COMPLETE for trial in trials)
    cells = Counter((trial.params["variant"], trial.params["seed"]) for trial in trials)
    variants = ("full", "no_apc", "vanilla_mgcn", "linear_control")
    assert cells == Counter({(variant, seed): 1 for variant in variants for seed in (999, 1000)})
    for trial in trials:
        config = trial.user_attrs["config"]
        assert config["train"]["seed"] == trial.params["seed"]
        variant = trial.params["variant"]
        assert config["model"]["use_damps"] == (variant in ("full", "no_apc"))
        assert config["damps"]["apc"] == (variant != "no_apc")
        assert config["model"]["control"] == ("linear" if variant == "linear_control" else "none")


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed")
def test_a_changed_ablation_plan_is_named_and_enqueues_nothing(
    backend: Backend, spectune: Spectune, study_name: str
) -> None:
    # a search with one COMPLETE trial: ablate needs its config, not its training
    storage = open_storage(backend.target, FAST_OPTIONS, create=True)
    search = optuna.create_study(storage=storage, study_name=study_name, direction="maximize")
    trial = search.ask()
    trial.set_user_attr(attrs.CONFIG, build_config({"dataset": TINY.name}).to_dict())
    search.tell(trial, 0.25)
    ablation = f"{study_name}-ablation"
    ablate = ("ablate", "--study-name", ablation, "--from", study_name, "--storage", backend.url)
    planned = spectune.run(*ablate, "--seeds", "2", "--variants", "no_apc,no_avrf,no_imcf")
    assert planned.popen.returncode == 0, planned.output

    changed = spectune.run(*ablate, "--seeds", "3", "--variants", "no_apc")
    assert changed.popen.returncode == 2, changed.output
    assert changed.output == (
        f"spectune ablate: error: ablation plan differs from study {ablation}: stored 4 variants "
        "(full, no_apc, no_avrf, no_imcf) x 2 seeds (999, 1000), requested 2 variants (full, "
        "no_apc) x 3 seeds (999, 1000, 1001); use another --study-name"
    )
    study = load(backend, ablation, spectune)
    assert [trial.state for trial in study.get_trials()] == [TrialState.WAITING] * 8


def test_create_validates_the_dataset_before_writing_anything(
    spectune: Spectune, study_name: str, data_root: Path
) -> None:
    journal = spectune.cwd / "runs" / "bad.journal"
    created = spectune.run(
        "study", "create", "--study-name", study_name, "--dataset", "nowhere",
        "--data-root", str(data_root), "--storage", str(journal),
    )  # fmt: skip
    assert created.popen.returncode == 2
    assert "no dataset directory" in created.output and TINY.name in created.output
    assert not journal.exists()
