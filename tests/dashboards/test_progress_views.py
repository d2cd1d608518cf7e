"""Optimization history, learning curves and parallel coordinates: the plain data."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from spectune.dashboards.progress import (
    draw_history,
    draw_learning_curves,
    draw_parallel_coordinates,
    history,
    learning_curves,
    parallel_coordinates,
)
from spectune.dashboards.trials import trial_table

LR = FloatDistribution(1e-4, 1e-1, log=True)
DAMPS = CategoricalDistribution([True, False])


def study_of(direction: str, trials: list[optuna.trial.FrozenTrial]) -> optuna.Study:
    study = optuna.create_study(direction=direction)
    study.add_trials(trials)
    return study


def complete(value: float, curve: list[float], lr: float = 1e-3) -> optuna.trial.FrozenTrial:
    return create_trial(
        params={"learning_rate": lr, "use_damps": True},
        distributions={"learning_rate": LR, "use_damps": DAMPS},
        value=value,
        intermediate_values=dict(enumerate(curve)),
    )


def pruned(curve: list[float]) -> optuna.trial.FrozenTrial:
    return create_trial(
        state=TrialState.PRUNED,
        params={"learning_rate": 1e-2, "use_damps": False},
        distributions={"learning_rate": LR, "use_damps": DAMPS},
        intermediate_values=dict(enumerate(curve)),
    )


@pytest.mark.parametrize(
    ("direction", "best"),
    [("maximize", (0.2, 0.2, 0.3, 0.3)), ("minimize", (0.2, 0.1, 0.1, 0.1))],
)
def test_history_tracks_the_best_so_far_in_the_study_direction(
    direction: str, best: tuple[float, ...]
) -> None:
    values = [0.2, 0.1, 0.3, 0.25]
    trials = [complete(v, [v]) for v in values[:2]] + [pruned([0.05, 0.04])]
    trials += [complete(v, [v]) for v in values[2:]]
    data = history(trial_table(study_of(direction, trials)))
    assert data.numbers == (0, 1, 3, 4)
    assert data.values == tuple(values)
    assert data.best_so_far == best
    assert data.pruned_numbers == (2,)
    assert data.pruned_values == (0.04,)  # the last value it reported
    figure = draw_history(data)
    assert [trace.name for trace in figure.data] == [
        "COMPLETE",
        "best so far",
        "PRUNED (last reported)",
    ]


def test_learning_curves_mark_pruned_trials_and_the_best() -> None:
    table = trial_table(
        study_of("maximize", [complete(0.3, [0.1, 0.3]), pruned([0.05]), complete(0.2, [0.2])])
    )
    data = learning_curves(table)
    assert [(c.number, c.state, c.epochs, c.values) for c in data.curves] == [
        (0, "COMPLETE", (0, 1), (0.1, 0.3)),
        (1, "PRUNED", (0,), (0.05,)),
        (2, "COMPLETE", (0,), (0.2,)),
    ]
    assert data.best_number == 0
    figure = draw_learning_curves(data)
    crosses = [t for t in figure.data if t.mode == "markers"]
    assert len(crosses) == 1 and crosses[0].marker.symbol == "x"
    assert list(crosses[0].x) == [0] and list(crosses[0].y) == [0.05]
    assert figure.data[0].name == "best (trial 0)"


def test_parallel_coordinates_place_levels_and_log_scales() -> None:
    conditional = create_trial(
        params={"learning_rate": 1e-2, "use_damps": True, "apc": False},
        distributions={
            "learning_rate": LR,
            "use_damps": DAMPS,
            "apc": CategoricalDistribution([True, False]),
        },
        value=0.4,
    )
    table = trial_table(study_of("maximize", [complete(0.3, [], lr=1e-3), conditional]))
    data = parallel_coordinates(table)
    axes = {axis.name: axis for axis in data.axes}
    assert set(axes) == {"learning_rate", "apc"}  # use_damps never varies: no axis
    assert axes["learning_rate"].log
    assert [round(v, 9) for v in axes["learning_rate"].values] == [-3.0, -2.0]
    assert axes["apc"].labels == ("inactive", "False")
    assert axes["apc"].values == (0.0, 1.0)
    assert data.objective == (0.3, 0.4)
    dims = draw_parallel_coordinates(data).data[0].dimensions
    assert [d.label for d in dims] == ["log10(learning_rate)", "apc", "valid value"]


def test_views_of_a_study_without_complete_trials_say_so() -> None:
    empty = trial_table(study_of("maximize", []))
    assert history(empty).message == "no trial yet"
    assert learning_curves(empty).message == "no trial has reported an epoch yet"
    only_pruned = trial_table(study_of("maximize", [pruned([0.1])]))
    assert history(only_pruned).message == "no COMPLETE trial yet (PRUNED 1)"
    assert parallel_coordinates(only_pruned).message == "no COMPLETE trial yet (PRUNED 1)"
    figure = draw_parallel_coordinates(parallel_coordinates(only_pruned))
    assert figure.layout.annotations[0].text == "no COMPLETE trial yet (PRUNED 1)"
    assert learning_curves(only_pruned).curves[0].state == "PRUNED"
    assert math.isclose(learning_curves(only_pruned).curves[0].values[0], 0.1)
