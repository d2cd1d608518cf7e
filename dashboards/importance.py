"""Which sampled parameters matter: for the objective and for the training time per epoch.

Every trial counts, conditional parameters included (params.py fills what a trial did not
sample). The evaluator is always named on the result (Optuna 5 changed its default to
PED-ANOVA); the direction is explicit (the evaluated copy is minimised, so a maximised metric is
negated); and below ``min_trials`` trials the result says so instead of ranking noise.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import optuna
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from spectune.dashboards.canvas import HEIGHT, styled, wrapped
from spectune.dashboards.params import complete_params
from spectune.dashboards.trials import TrialTable
from spectune.study.typed import ConfigError

Evaluator = Literal["ped-anova", "fanova"]
Target = Literal["objective", "cost"]
EVALUATORS: tuple[Evaluator, ...] = ("ped-anova", "fanova")
MIN_TRIALS = 10


@dataclass(frozen=True)
class Importance:
    target: Target
    target_label: str  # "valid recall@20 (maximize)", "training seconds per epoch (minimize)"
    evaluator: str  # as written on the figure, e.g. "PED-ANOVA (top 20 %)"
    ranking: tuple[tuple[str, float], ...]  # most important first; sums to 1 when ranked
    n_trials: int  # trials with a value for the target
    min_trials: int
    filled: int  # inactive conditional values completed (see the module docstring)
    message: str | None = None  # why there is no ranking


def param_importance(
    table: TrialTable,
    target: Target,
    evaluator: Evaluator = "ped-anova",
    min_trials: int = MIN_TRIALS,
    seed: int = 0,
) -> Importance:
    """Importance of every sampled parameter for ``target`` over the trials that measured it.

    objective: COMPLETE trials and their value. cost: COMPLETE and PRUNED trials (a pruned
    trial's epochs cost as much) and their training seconds per epoch.
    """
    if evaluator not in EVALUATORS:
        raise ConfigError(f"unknown importance evaluator {evaluator!r}; use one of {EVALUATORS}")
    if min_trials < 2:
        raise ConfigError(f"min_trials must be >= 2, got {min_trials}")
    if target == "objective":
        label = f"valid {table.metric} ({table.direction})"
        scored = [(row, row.value) for row in table.complete if _finite(row.value)]
    else:
        label = "training seconds per epoch (minimize)"
        scored = [
            (row, row.seconds_per_epoch)
            for row in table.in_state("COMPLETE", "PRUNED")
            if _finite(row.seconds_per_epoch)
        ]
    n = len(scored)
    name = _evaluator_label(evaluator, n)

    def empty(message: str, filled: int = 0) -> Importance:
        return Importance(target, label, name, (), n, min_trials, filled, message)

    if n < min_trials:
        return empty(f"not enough trials ({n} of {min_trials})")
    completed = complete_params([row for row, _ in scored])
    values = [float(value) for _, value in scored if value is not None]
    if len(set(values)) == 1:
        return empty(f"all {n} trials have the same value; nothing to rank", completed.filled)
    varying = completed.varying()
    if not varying:
        return empty("no sampled parameter varies across these trials", completed.filled)
    sign = -1.0 if target == "objective" and table.direction == "maximize" else 1.0
    study = optuna.create_study(direction="minimize")
    study.add_trials(
        optuna.trial.create_trial(
            params={param: row[param] for param in varying},
            distributions={param: completed.distributions[param] for param in varying},
            value=sign * value,
        )
        for row, value in zip(completed.values, values)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "few trials above the quantile": the label says it
        scores = optuna.importance.get_param_importances(
            study, evaluator=_evaluator(evaluator, n, seed), params=varying
        )
    ranking = tuple(sorted(((p, float(s)) for p, s in scores.items()), key=lambda i: (-i[1], i[0])))
    return Importance(target, label, name, ranking, n, min_trials, completed.filled)


def draw_importance(objective: Importance, cost: Importance) -> go.Figure:
    """Objective and cost side by side; a panel without a ranking says why in its place."""
    panels = (objective, cost)
    figure = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.22,
        subplot_titles=[f"{p.target_label}<br>{p.evaluator}, {p.n_trials} trials" for p in panels],
    )
    for column, panel in enumerate(panels, start=1):
        if panel.message:
            # Centred on its panel: plotly's "auto" anchor would pull it left or right.
            left, right = figure.get_subplot(1, column).xaxis.domain
            figure.add_annotation(
                text=wrapped(panel.message, 40),
                x=(left + right) / 2,
                y=0.5,
                xref="paper",
                yref="paper",
                xanchor="center",
                showarrow=False,
                font={"size": 16},
            )
            figure.update_xaxes(visible=False, row=1, col=column)
            figure.update_yaxes(visible=False, row=1, col=column)
            continue
        ordered = list(reversed(panel.ranking))  # most important on top
        figure.add_trace(
            go.Bar(
                x=[score for _, score in ordered],
                y=[param for param, _ in ordered],
                orientation="h",
                text=[f"{score:.2f}" for _, score in ordered],
                textposition="outside",
                cliponaxis=False,
                name=panel.target,
                showlegend=False,
            ),
            row=1,
            col=column,
        )
        top = max(score for _, score in ordered)
        figure.update_xaxes(
            title_text="importance (sums to 1)", range=[0, 1.2 * top], row=1, col=column
        )
    height = max(HEIGHT, 140 + 26 * max(len(objective.ranking), len(cost.ranking)))
    figure = styled(figure, "Parameter importance: objective and cost", height=height)
    figure.update_layout(margin={"t": 140})  # room for the title above the panel titles
    return figure


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _evaluator_label(evaluator: Evaluator, n: int) -> str:
    if evaluator == "fanova":
        return "fANOVA"
    return f"PED-ANOVA (top {round(100 * _target_quantile(n))} %)"


def _target_quantile(n: int) -> float:
    """Optuna's 10 %, widened so that about 5 trials form the top set (its advice), max 50 %."""
    return min(0.5, max(0.1, 5 / max(n, 1)))


def _evaluator(
    evaluator: Evaluator, n: int, seed: int
) -> optuna.importance.BaseImportanceEvaluator:
    if evaluator == "fanova":
        return optuna.importance.FanovaImportanceEvaluator(seed=seed)
    return optuna.importance.PedAnovaImportanceEvaluator(target_quantile=_target_quantile(n))
