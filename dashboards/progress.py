"""How a search is going: optimization history, learning curves, parallel coordinates."""

from __future__ import annotations

import math
from dataclasses import dataclass

import plotly.graph_objects as go

from spectune.dashboards.canvas import (
    BEST_COLOUR,
    COMPLETE_COLOUR,
    PRUNED_COLOUR,
    message_figure,
    styled,
)
from spectune.dashboards.params import complete_params
from spectune.dashboards.trials import TrialTable

RUNNING_COLOUR = "#7f7f7f"


@dataclass(frozen=True)
class History:
    metric: str
    direction: str
    numbers: tuple[int, ...]  # COMPLETE trials in trial-number order
    values: tuple[float, ...]
    best_so_far: tuple[float, ...]  # the best value among trials up to each number
    pruned_numbers: tuple[int, ...]  # PRUNED trials and the last value they reported
    pruned_values: tuple[float, ...]
    message: str | None = None


def history(table: TrialTable) -> History:
    complete = sorted(
        (row for row in table.complete if row.value is not None), key=lambda row: row.number
    )
    better = max if table.direction == "maximize" else min
    best: list[float] = []
    for row in complete:
        value = float(row.value or 0.0)
        best.append(better(best[-1], value) if best else value)
    pruned = [row for row in table.in_state("PRUNED") if row.intermediate]
    return History(
        metric=table.metric,
        direction=table.direction,
        numbers=tuple(row.number for row in complete),
        values=tuple(float(row.value or 0.0) for row in complete),
        best_so_far=tuple(best),
        pruned_numbers=tuple(row.number for row in pruned),
        pruned_values=tuple(row.intermediate[max(row.intermediate)] for row in pruned),
        message=None if complete else _no_complete(table),
    )


def draw_history(data: History) -> go.Figure:
    title = f"Optimization history: valid {data.metric} ({data.direction})"
    if data.message:
        return message_figure(title, data.message)
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=data.numbers,
            y=data.values,
            mode="markers",
            name="COMPLETE",
            marker={"color": COMPLETE_COLOUR},
        )
    )
    figure.add_trace(
        go.Scatter(
            x=data.numbers,
            y=data.best_so_far,
            mode="lines",
            line={"shape": "hv", "color": BEST_COLOUR},
            name="best so far",
        )
    )
    if data.pruned_numbers:
        figure.add_trace(
            go.Scatter(
                x=data.pruned_numbers,
                y=data.pruned_values,
                mode="markers",
                marker={"symbol": "x", "color": PRUNED_COLOUR},
                name="PRUNED (last reported)",
            )
        )
    figure.update_xaxes(title_text="trial")
    figure.update_yaxes(title_text=f"valid {data.metric}")
    return styled(figure, title)


@dataclass(frozen=True)
class Curve:
    number: int
    state: str
    epochs: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class LearningCurves:
    metric: str
    curves: tuple[Curve, ...]  # every trial that reported an epoch, in number order
    best_number: int | None
    message: str | None = None


def learning_curves(table: TrialTable) -> LearningCurves:
    curves = tuple(
        Curve(
            row.number,
            row.state,
            tuple(sorted(row.intermediate)),
            tuple(row.intermediate[epoch] for epoch in sorted(row.intermediate)),
        )
        for row in sorted(table.rows, key=lambda row: row.number)
        if row.intermediate
    )
    ranked = table.ranked()
    return LearningCurves(
        metric=table.metric,
        curves=curves,
        best_number=ranked[0].number if ranked else None,
        message=None if curves else "no trial has reported an epoch yet",
    )


def draw_learning_curves(data: LearningCurves) -> go.Figure:
    title = f"Learning curves: valid {data.metric} per epoch (pruned trials marked x)"
    if data.message:
        return message_figure(title, data.message)
    figure = go.Figure()
    shown: set[str] = set()
    for curve in data.curves:
        best = curve.number == data.best_number
        group = "best" if best else curve.state
        colour = {
            "best": BEST_COLOUR,
            "COMPLETE": COMPLETE_COLOUR,
            "PRUNED": PRUNED_COLOUR,
        }.get(group, RUNNING_COLOUR)
        figure.add_trace(
            go.Scatter(
                x=curve.epochs,
                y=curve.values,
                mode="lines",
                line={"color": colour, "width": 3 if best else 1.5},
                opacity=1.0 if best else 0.6,
                name=f"best (trial {curve.number})" if best else group,
                legendgroup=group,
                showlegend=group not in shown,
                hovertext=f"trial {curve.number} ({curve.state})",
            )
        )
        shown.add(group)
        if curve.state == "PRUNED":
            figure.add_trace(
                go.Scatter(
                    x=curve.epochs[-1:],
                    y=curve.values[-1:],
                    mode="markers",
                    marker={"symbol": "x", "size": 9, "color": PRUNED_COLOUR},
                    legendgroup=group,
                    showlegend=False,
                    hovertext=f"trial {curve.number} pruned at epoch {curve.epochs[-1]}",
                )
            )
    figure.update_xaxes(title_text="epoch")
    figure.update_yaxes(title_text=f"valid {data.metric}")
    return styled(figure, title)


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple[float, ...]  # numeric positions (log10 for log-scaled parameters)
    labels: tuple[str, ...] | None  # the level names of a categorical parameter, by position
    log: bool


@dataclass(frozen=True)
class ParallelCoordinates:
    metric: str
    axes: tuple[Axis, ...]  # one per varying parameter
    objective: tuple[float, ...]
    numbers: tuple[int, ...]
    message: str | None = None


def parallel_coordinates(table: TrialTable) -> ParallelCoordinates:
    rows = [row for row in table.complete if row.value is not None]
    if not rows:
        return ParallelCoordinates(table.metric, (), (), (), _no_complete(table))
    completed = complete_params(rows)
    axes = []
    for name in completed.varying():
        distribution = completed.distributions[name]
        column = [values[name] for values in completed.values]
        choices = getattr(distribution, "choices", None)
        if choices is not None:
            levels = tuple(str(choice) for choice in choices)
            axes.append(Axis(name, tuple(float(choices.index(v)) for v in column), levels, False))
        else:
            log = bool(getattr(distribution, "log", False))
            positions = tuple(math.log10(v) if log else float(v) for v in column)
            axes.append(Axis(name, positions, None, log))
    return ParallelCoordinates(
        metric=table.metric,
        axes=tuple(axes),
        objective=tuple(float(row.value or 0.0) for row in rows),
        numbers=tuple(row.number for row in rows),
        message=None if axes else "no sampled parameter varies across the COMPLETE trials",
    )


def draw_parallel_coordinates(data: ParallelCoordinates) -> go.Figure:
    title = f"Parallel coordinates of the COMPLETE trials, coloured by valid {data.metric}"
    if data.message:
        return message_figure(title, data.message)
    dimensions = []
    for axis in data.axes:
        dimension: dict[str, object] = {
            "label": f"log10({axis.name})" if axis.log else axis.name,
            "values": axis.values,
        }
        if axis.labels is not None:
            dimension["tickvals"] = list(range(len(axis.labels)))
            dimension["ticktext"] = list(axis.labels)
        dimensions.append(dimension)
    dimensions.append({"label": f"valid {data.metric}", "values": data.objective})
    figure = go.Figure(
        go.Parcoords(
            line={"color": data.objective, "colorscale": "Viridis", "showscale": True},
            dimensions=dimensions,
        )
    )
    return styled(figure, title)


def _no_complete(table: TrialTable) -> str:
    counts = table.counts()
    if not counts:
        return "no trial yet"
    states = ", ".join(f"{state} {n}" for state, n in sorted(counts.items()))
    return f"no COMPLETE trial yet ({states})"
