"""The look shared by every figure, and the figure drawn when there is nothing to draw yet."""

from __future__ import annotations

import textwrap

import plotly.graph_objects as go

TEMPLATE = "plotly_white"
WIDTH = 1000
HEIGHT = 520
# Plotly's default qualitative colours, named by the role they play in every figure.
IMAGE_COLOUR = "#1f77b4"
TEXT_COLOUR = "#ff7f0e"
COMPLETE_COLOUR = "#1f77b4"
PRUNED_COLOUR = "#d62728"
BEST_COLOUR = "#2ca02c"


def styled(figure: go.Figure, title: str, *, height: int = HEIGHT) -> go.Figure:
    figure.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left"},
        template=TEMPLATE,
        width=WIDTH,
        height=height,
        margin={"l": 70, "r": 30, "t": 80, "b": 60},
    )
    return figure


def wrapped(text: str, width: int = 70) -> str:
    """``text`` broken into lines for a plotly annotation, which never wraps by itself."""
    return "<br>".join(textwrap.wrap(text, width)) or text


def message_figure(title: str, message: str) -> go.Figure:
    """A figure that says why it is empty ("not enough trials (3 of 10)") instead of drawing."""
    figure = go.Figure()
    figure.add_annotation(
        text=wrapped(message),
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        xanchor="center",
        showarrow=False,
        font={"size": 18},
    )
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return styled(figure, title, height=320)
