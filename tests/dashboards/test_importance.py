"""Parameter importance on studies with a known dependence: the data, not the figure."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from spectune.dashboards.importance import draw_importance, param_importance
from spectune.dashboards.params import INACTIVE, complete_params
from spectune.dashboards.trials import trial_table
from spectune.storage import attrs

optuna.logging.set_verbosity(optuna.logging.WARNING)


def search_study(objective: Any, n_trials: int, direction: str = "maximize") -> optuna.Study:
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=n_trials)
    return study


def band_and_apc(trial: optuna.Trial) -> float:
    """Depends on band_high and apc only; the other knobs are sampled and ignored."""
    band_high = trial.suggest_float("band_high", 0.5, 1.0)
    apc = trial.suggest_categorical("apc", [True, False])
    trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
    trial.suggest_int("knn_k", 5, 20, step=5)
    trial.suggest_float("temperature", 0.1, 0.5)
    trial.suggest_categorical("imcf", [True, False])
    return 0.3 - 2.0 * (band_high - 0.75) ** 2 + (0.15 if apc else 0.0)


@pytest.mark.parametrize("evaluator", ["ped-anova", "fanova"])
def test_ranks_the_two_parameters_the_objective_depends_on_first(evaluator: str) -> None:
    # PED-ANOVA compares the top 10 % with all trials: 20 top trials keep the noise of the
    # ignored knobs below the binary apc's share.
    table = trial_table(search_study(band_and_apc, 200))
    result = param_importance(table, "objective", evaluator)  # type: ignore[arg-type]
    assert result.message is None
    assert result.n_trials == 200
    names = [name for name, _ in result.ranking]
    assert set(names[:2]) == {"band_high", "apc"}
    assert sorted(names) == ["apc", "band_high", "imcf", "knn_k", "learning_rate", "temperature"]
    assert math.isclose(sum(score for _, score in result.ranking), 1.0)
    assert result.evaluator.startswith("fANOVA" if evaluator == "fanova" else "PED-ANOVA")


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_direction_decides_which_tail_counts(direction: str) -> None:
    # High values come from a > 0.8, low values from b > 0.8: the better tail names its cause.
    def objective(trial: optuna.Trial) -> float:
        a = trial.suggest_float("a", 0.0, 1.0)
        b = trial.suggest_float("b", 0.0, 1.0)
        return float(a > 0.8) - float(b > 0.8)

    table = trial_table(search_study(objective, 100, direction))
    result = param_importance(table, "objective", "ped-anova")
    assert result.ranking[0][0] == ("a" if direction == "maximize" else "b")
    assert f"({direction})" in result.target_label


def conditional(trial: optuna.Trial) -> float:
    use_damps = trial.suggest_categorical("use_damps", [True, False])
    trial.set_user_attr(attrs.CONFIG, {"damps": {"band_high": 1.0}, "model": {}, "train": {}})
    if use_damps:
        trial.suggest_categorical("apc", [True, False])
        trial.suggest_float("band_high", 0.5, 0.9)
    trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
    return 0.3 if use_damps else 0.1


def test_conditional_parameters_keep_every_trial() -> None:
    study = search_study(conditional, 40)
    vanilla = sum(1 for t in study.trials if t.params["use_damps"] is False)
    assert 0 < vanilla < 40
    result = param_importance(trial_table(study), "objective", "fanova")
    # Optuna alone would read only the DAMPS trials, where use_damps never varies.
    assert result.n_trials == 40
    assert result.filled == 2 * vanilla  # apc and band_high of each vanilla trial
    assert result.ranking[0][0] == "use_damps"


def test_inactive_values_are_a_level_or_the_value_the_run_used() -> None:
    table = trial_table(search_study(conditional, 12))
    completed = complete_params(table.complete)
    for row, trial in zip(completed.values, table.complete):
        if trial.params["use_damps"] is False:
            assert row["apc"] == INACTIVE
            assert row["band_high"] == 1.0  # from the trial's resolved config
        else:
            assert row["band_high"] == trial.params["band_high"]


def timed(trial: optuna.Trial) -> float:
    trial.set_user_attr(attrs.EPOCH_SECONDS, 1.5)
    return band_and_apc(trial)


def test_below_the_threshold_it_says_not_enough_trials() -> None:
    table = trial_table(search_study(timed, 3))
    for target in ("objective", "cost"):
        result = param_importance(table, target, "ped-anova", min_trials=10)  # type: ignore[arg-type]
        assert result.ranking == ()
        assert result.message == "not enough trials (3 of 10)"
    figure = draw_importance(param_importance(table, "objective"), param_importance(table, "cost"))
    messages = [a for a in figure.layout.annotations if a.text == "not enough trials (3 of 10)"]
    assert len(messages) == 2
    assert len(figure.data) == 0  # no equal bars drawn
    # each message centred on its own panel (the cost one once landed under the objective's)
    for message, column in zip(messages, (1, 2)):
        left, right = figure.get_subplot(1, column).xaxis.domain
        assert (message.xref, message.xanchor) == ("paper", "center")
        assert message.x == pytest.approx((left + right) / 2)


def test_cost_reads_pruned_trials_and_training_seconds() -> None:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    for number in range(30):
        trial = study.ask()
        knn_k = trial.suggest_int("knn_k", 5, 20, step=5)
        trial.suggest_float("band_high", 0.5, 1.0)
        trial.set_user_attr(attrs.EPOCH_SECONDS, 0.5 * knn_k)
        trial.report(0.1, 0)
        if number % 3 == 0:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, 0.2)
    table = trial_table(study)
    cost = param_importance(table, "cost", "fanova")
    assert cost.n_trials == 30
    assert cost.ranking[0][0] == "knn_k"
    assert cost.target_label == "training seconds per epoch (minimize)"
    assert param_importance(table, "objective", "fanova").message == (
        "all 20 trials have the same value; nothing to rank"
    )


def test_figure_names_the_evaluator_and_draws_one_bar_per_parameter() -> None:
    table = trial_table(search_study(band_and_apc, 30))
    objective = param_importance(table, "objective", "fanova")
    figure = draw_importance(objective, param_importance(table, "cost", "fanova"))
    titles = [annotation.text for annotation in figure.layout.annotations]
    assert any("fANOVA, 30 trials" in title for title in titles)
    bars = figure.data[0]
    assert list(bars.y)[::-1] == [name for name, _ in objective.ranking]
