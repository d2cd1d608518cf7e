"""The study spec, sampler/pruner building, the budget rule and GPU slots (no processes)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import optuna
import pytest

from spectune.storage.errors import StorageError, StudyMismatch
from spectune.study.budget import Counts, Decision, decide
from spectune.study.smoke import ceiling, curve
from spectune.study.spec import (
    PrunerSpec,
    RequestedSettings,
    SamplerSpec,
    StudySpec,
    build_pruner,
    build_sampler,
    check_worker_settings,
    first_difference,
    search_grid,
)
from spectune.study.typed import ConfigError
from spectune.study.worker import claim_device

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

SPEC = StudySpec(
    study_name="demo",
    objective="smoke",
    dataset="toy",
    n_trials=12,
    epochs=9,
    search_space={"params": {"band_high": {"float": [0.5, 1.0]}}},
    pruner=PrunerSpec(name="hyperband", max_resource=9),
    versions={"optuna": "5.1.0"},
)


def test_spec_round_trips_through_its_stored_json() -> None:
    assert StudySpec.from_dict(json.loads(json.dumps(SPEC.to_dict()))) == SPEC


def test_a_spec_from_a_newer_spectune_is_refused() -> None:
    with pytest.raises(StorageError, match=r"unknown field 'colour'.*newer spectune"):
        StudySpec.from_dict({**SPEC.to_dict(), "colour": "red"})


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"n_trials": 0}, "--n-trials"),
        ({"epochs": 0}, "--epochs"),
        ({"metric": "recall"}, "--metric"),
    ],
)
def test_spec_values_are_validated(values: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        replace(SPEC, **values)


@pytest.mark.parametrize(
    ("requested", "field", "stored", "wanted"),
    [
        (RequestedSettings(metric="ndcg@20"), "metric", "recall@20", "ndcg@20"),
        (RequestedSettings(pruner="median"), "pruner", "hyperband", "median"),
        (RequestedSettings(sampler="random"), "sampler", "tpe", "random"),
        (RequestedSettings(direction="minimize"), "direction", "maximize", "minimize"),
        (RequestedSettings(heartbeat_grace=30), "heartbeat_grace", 600, 30),
    ],
)
def test_worker_settings_that_differ_are_named(
    requested: RequestedSettings, field: str, stored: object, wanted: object
) -> None:
    with pytest.raises(StudyMismatch) as caught:
        check_worker_settings(SPEC, requested)
    assert (caught.value.field, caught.value.stored, caught.value.requested) == (
        field,
        stored,
        wanted,
    )
    assert f"{field} differs from the study: stored {stored!r}, requested {wanted!r}" in str(
        caught.value
    )


def test_equal_or_absent_worker_settings_pass() -> None:
    check_worker_settings(SPEC, RequestedSettings())
    check_worker_settings(SPEC, RequestedSettings(metric="recall@20", pruner="hyperband"))


def test_first_difference_ignores_versions_and_data_root() -> None:
    assert first_difference(SPEC, replace(SPEC, versions={}, data_root="/elsewhere")) is None
    difference = first_difference(SPEC, replace(SPEC, sampler=SamplerSpec(seed=3)))
    assert difference is not None and difference.field == "sampler.seed"


def test_a_changed_ablation_plan_is_named_not_the_trial_count_it_implies() -> None:
    plan = {"base": {"dataset": "toy"}, "variants": {"full": {}, "no_apc": {}}, "seeds": [7, 8]}
    stored = replace(SPEC, objective="ablation", n_trials=4, ablation=plan)
    fewer = {**plan, "variants": {"full": {}}, "seeds": [7, 8, 9]}
    difference = first_difference(stored, replace(stored, n_trials=3, ablation=fewer))
    assert difference is not None and difference.field == "ablation"
    assert str(difference) == (
        "ablation plan differs from study demo: stored 2 variants (full, no_apc) x 2 seeds "
        "(7, 8), requested 1 variant (full) x 3 seeds (7, 8, 9); use another --study-name"
    )
    rebased = {**plan, "base": {"dataset": "toy", "train": {"learning_rate": 0.01}}}
    difference = first_difference(stored, replace(stored, ablation=rebased))
    assert difference is not None and str(difference) == (
        "ablation plan differs from study demo: stored 2 variants (full, no_apc) x 2 seeds "
        "(7, 8), requested the same with another base config; use another --study-name"
    )
    # the same plan with another setting: that setting is named, as for any study
    difference = first_difference(stored, replace(stored, metric="ndcg@20"))
    assert difference is not None and difference.field == "metric"


def test_workers_get_different_seeds() -> None:
    spec = replace(SPEC, sampler=SamplerSpec(name="random"))
    suggestions = []
    for index in range(2):
        study = optuna.create_study(sampler=build_sampler(spec, index))
        suggestions.append(study.ask().suggest_float("x", 0, 1))
    assert suggestions[0] != suggestions[1]
    again = optuna.create_study(sampler=build_sampler(spec, 0)).ask().suggest_float("x", 0, 1)
    assert again == suggestions[0]


def test_tpe_is_multivariate_with_constant_liar() -> None:
    sampler = build_sampler(SPEC, 0)
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._multivariate and sampler._constant_liar


def test_grid_sampler_walks_the_smoke_grid() -> None:
    spec = replace(SPEC, sampler=SamplerSpec(name="grid"))
    sampler = build_sampler(spec, 0, search_grid(spec))
    assert isinstance(sampler, optuna.samplers.GridSampler)
    with pytest.raises(ConfigError, match="grid sampler needs a grid"):
        build_sampler(spec, 0)


def test_pruners_are_built_from_the_spec() -> None:
    hyperband = build_pruner(SPEC)
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert hyperband._max_resource == 9 and hyperband._min_resource == 1
    assert hyperband._reduction_factor == 3
    median = build_pruner(replace(SPEC, pruner=PrunerSpec(n_startup_trials=4, n_warmup_steps=2)))
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert median._n_startup_trials == 4 and median._n_warmup_steps == 2
    none = build_pruner(replace(SPEC, pruner=PrunerSpec(name="none")))
    assert isinstance(none, optuna.pruners.NopPruner)


@pytest.mark.parametrize(
    ("counts", "decision"),
    [
        (Counts(), Decision.RUN),
        (Counts(complete=11), Decision.RUN),
        (Counts(complete=11, running=1), Decision.WAIT),  # it may fail and be re-queued
        (Counts(complete=10, running=1, waiting=1), Decision.RUN),  # a re-queued config
        (Counts(complete=8, pruned=4), Decision.DONE),
        (Counts(complete=12, failed=5), Decision.DONE),
        (Counts(complete=6, failed=20), Decision.RUN),  # FAIL trials do not count
    ],
)
def test_the_budget_rule(counts: Counts, decision: Decision) -> None:
    assert decide(counts, 12) is decision


def test_smoke_curves_rank_configurations_the_same_at_every_epoch() -> None:
    good, bad = ceiling(3e-3, 0.75, True), ceiling(3e-3, 0.75, False)
    assert good > bad + 0.05
    assert all(curve(good, epoch) > curve(bad, epoch) for epoch in range(10))
    assert [curve(good, e) < curve(good, e + 1) for e in range(5)] == [True] * 5


def test_gpu_slots_fill_one_worker_per_gpu_first(tmp_path: Path) -> None:
    claims = [claim_device("auto", 2, 2, tmp_path) for _ in range(4)]
    assert [claim.device for claim in claims] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    with pytest.raises(ConfigError, match="all 2 GPUs already run 2 worker"):
        claim_device("auto", 2, 2, tmp_path)
    claims[1].release()  # a worker ends (or dies): its slot is free again
    assert claim_device("auto", 2, 2, tmp_path).device == "cuda:1"
    assert claim_device("auto", 0, 2, tmp_path).device == "cpu"
    assert claim_device("cpu", 2, 2, tmp_path).device == "cpu"
    with pytest.raises(ConfigError, match="this machine has 2 GPU"):
        claim_device("5", 2, 2, tmp_path)
