"""Show a report's own figures and summary inside optuna-dashboard, next to its built-in views.

optuna-dashboard keeps user figures and notes in the study's system attributes. Each figure
has a fixed id, so publishing again replaces it instead of piling up copies.
"""

from __future__ import annotations

import optuna
from optuna_dashboard import save_note, save_plotly_graph_object

from spectune.dashboards.report import Report

GRAPH_PREFIX = "spectune-"


def publish(study: optuna.Study, report: Report, report_dir: str | None = None) -> list[str]:
    """Save the report's dashboard figures and its summary as the study note; the graph ids."""
    ids = []
    for named in report.figures:
        if named.publish:
            ids.append(
                save_plotly_graph_object(
                    study, named.figure, graph_object_id=GRAPH_PREFIX + named.slug
                )
            )
    where = f"\n\nFull report (HTML, PNG, CSV): `{report_dir}`" if report_dir else ""
    save_note(study, report.summary + where)
    return ids
