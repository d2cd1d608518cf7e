"""A study's report: its figures and tables, computed from plain data, then written at once.

``build_report`` is pure (a TrialTable in, figures and text out). ``write_report`` writes every
figure as standalone HTML (plotly.js inside, so it opens offline) and PNG, the tables and an
index.html into a fresh folder, then moves it into place: a report is never half-written.
"""

from __future__ import annotations

import csv
import html
import io
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import plotly.graph_objects as go

from spectune.dashboards.ablation import (
    ablation_csv,
    ablation_markdown,
    ablation_report,
    draw_ablation,
)
from spectune.dashboards.errors import ReportError
from spectune.dashboards.importance import (
    MIN_TRIALS,
    Evaluator,
    Importance,
    draw_importance,
    param_importance,
)
from spectune.dashboards.progress import (
    draw_history,
    draw_learning_curves,
    draw_parallel_coordinates,
    history,
    learning_curves,
    parallel_coordinates,
)
from spectune.dashboards.spectrum import best_spectrum, draw_spectrum
from spectune.dashboards.trials import TrialTable

# Marks a folder as a spectune report: only such a folder is ever replaced by a new report.
MARKER = ".spectune-report"


@dataclass(frozen=True)
class NamedFigure:
    slug: str  # file stem and dashboard graph id
    title: str
    figure: go.Figure
    publish: bool  # also shown in optuna-dashboard (its own views cover the others)


@dataclass(frozen=True)
class Report:
    study_name: str
    summary: str  # Markdown: counts, best trial, importance and ablation tables
    figures: list[NamedFigure]
    tables: dict[str, str] = field(default_factory=dict)  # file name -> contents
    warnings: list[str] = field(default_factory=list)  # things to fix, printed by the command


def build_report(
    table: TrialTable, evaluator: Evaluator = "ped-anova", min_trials: int = MIN_TRIALS
) -> Report:
    objective = table.spec.objective if table.spec is not None else None
    figures: list[NamedFigure] = []
    tables: dict[str, str] = {"trials.csv": trials_csv(table)}
    sections = [_overview(table)]
    if objective == "ablation":
        ablation = ablation_report(table)
        figures.append(NamedFigure("ablation", "Ablation", draw_ablation(ablation), True))
        tables["ablation.md"] = ablation_markdown(ablation)
        tables["ablation.csv"] = ablation_csv(ablation)
        sections.append("## Ablation\n\n" + tables["ablation.md"])
    else:
        importances = [
            param_importance(table, target, evaluator, min_trials)
            for target in ("objective", "cost")
        ]
        figures.append(
            NamedFigure("importance", "Parameter importance", draw_importance(*importances), True)
        )
        tables["importance.csv"] = importance_csv(importances)
        sections.append(importance_markdown(importances))
        figures.append(
            NamedFigure("history", "Optimization history", draw_history(history(table)), False)
        )
    figures.append(
        NamedFigure(
            "learning-curves",
            "Learning curves",
            draw_learning_curves(learning_curves(table)),
            False,
        )
    )
    if objective != "ablation":
        figures.append(
            NamedFigure(
                "parallel-coordinates",
                "Parallel coordinates",
                draw_parallel_coordinates(parallel_coordinates(table)),
                False,
            )
        )
    warnings: list[str] = []
    if objective in ("mgcn", "ablation"):
        spectrum = best_spectrum(table)
        figures.append(NamedFigure("spectrum", "DAMPS spectrum", draw_spectrum(spectrum), True))
        if spectrum.problem and spectrum.message:
            warnings.append(spectrum.message)
    summary = "\n\n".join(sections) + "\n"
    return Report(table.study_name, summary, figures, tables, warnings)


def trials_csv(table: TrialTable) -> str:
    """Every trial: state, value, cost, validation and (reported only) test metric, params."""
    params = sorted({name for row in table.rows for name in row.params})
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    metric = table.metric
    writer.writerow(
        [
            "number",
            "state",
            f"valid_{metric}",
            f"test_{metric}_reported_only",
            "seconds_per_epoch",
            "epochs_reported",
            "fail_reason",
            *params,
        ]
    )
    for row in sorted(table.rows, key=lambda row: row.number):
        writer.writerow(
            [
                row.number,
                row.state,
                _cell(row.value),
                _cell(row.test_metrics.get(metric)),
                _cell(row.seconds_per_epoch),
                len(row.intermediate),
                row.fail_reason or "",
                *(_cell(row.params.get(name)) for name in params),
            ]
        )
    return stream.getvalue()


def importance_csv(importances: list[Importance]) -> str:
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(["target", "evaluator", "n_trials", "rank", "parameter", "importance"])
    for result in importances:
        for rank, (param, score) in enumerate(result.ranking, 1):
            writer.writerow([result.target, result.evaluator, result.n_trials, rank, param, score])
    return stream.getvalue()


def importance_markdown(importances: list[Importance]) -> str:
    lines = ["## Parameter importance"]
    for result in importances:
        lines.append(f"\n{result.target_label}, {result.evaluator}, {result.n_trials} trials:")
        if result.message:
            lines.append(f"{result.message}.")
            continue
        lines += ["", "| rank | parameter | importance |", "| ---: | --- | ---: |"]
        lines += [
            f"| {rank} | {param} | {score:.3f} |"
            for rank, (param, score) in enumerate(result.ranking, 1)
        ]
        if result.filled:
            lines.append(
                f"\n{result.filled} values of conditional parameters were not sampled and count "
                "as 'inactive' (or the value the run used)."
            )
    return "\n".join(lines)


def write_report(report: Report, out: Path, png: bool = True) -> list[Path]:
    """Write ``report`` into ``out`` (replacing an earlier report there); the written files."""
    out = out.resolve()
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ReportError(
            f"{out} exists and is not a spectune report (no {MARKER} in it); choose another --out"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.new-"))
    except OSError as error:
        raise _unwritable(out, error) from error
    staging.chmod(0o755)  # mkdtemp's 0700 would hide the report from a web server or colleague
    try:
        _write_files(report, staging, png)
        _swap_in(staging, out)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OSError):
            raise _unwritable(out, error) from error
        raise
    return sorted(path for path in out.rglob("*") if path.is_file())


def _unwritable(out: Path, error: OSError) -> ReportError:
    # The report is staged beside --out and renamed into place, so --out itself must be
    # replaceable: a mount point or a folder in a read-only parent is not.
    where = f" ({error.filename})" if error.filename else ""
    return ReportError(
        f"cannot write the report to {out}: {error.strerror or error}{where}; the report is "
        f"written beside it in {out.parent} and renamed into place, so choose an --out whose "
        "parent folder is writable (not a mount point itself)"
    )


def _write_files(report: Report, folder: Path, png: bool) -> None:
    for named in report.figures:
        named.figure.write_html(folder / f"{named.slug}.html", include_plotlyjs=True)
    if png:
        _write_pngs(report.figures, folder)
    for name, content in report.tables.items():
        (folder / name).write_text(content, encoding="utf-8")
    (folder / "summary.md").write_text(report.summary, encoding="utf-8")
    (folder / "index.html").write_text(index_html(report, png), encoding="utf-8")
    (folder / MARKER).write_text("written by spectune report\n", encoding="utf-8")


def _write_pngs(figures: list[NamedFigure], folder: Path) -> None:
    import plotly.io

    try:
        # One browser session for every figure (kaleido drives a headless Chromium).
        plotly.io.write_images(
            [named.figure for named in figures],
            [folder / f"{named.slug}.png" for named in figures],
            scale=2,
        )
    except Exception as error:
        raise ReportError(
            f"PNG export failed ({type(error).__name__}: {str(error).splitlines()[0]}); it "
            "needs Chromium (Debian: apt-get install chromium; or set BROWSER_PATH), or pass "
            "--no-png for the HTML figures and tables only"
        ) from error


def _swap_in(staging: Path, out: Path) -> None:
    """Replace ``out`` by ``staging`` with renames, so readers see the old or the new report."""
    if not out.exists():
        staging.rename(out)
        return
    retired = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
    retired.rmdir()
    out.rename(retired)
    staging.rename(out)
    shutil.rmtree(retired, ignore_errors=True)


def index_html(report: Report, png: bool) -> str:
    title = html.escape(f"spectune report: {report.study_name}")
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{title}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "img{max-width:100%;border:1px solid #ddd}pre{background:#f6f6f6;padding:1em;"
        "overflow-x:auto}</style>",
        "</head><body>",
        f"<h1>{title}</h1>",
        f"<p>Written {made}. Figures open as interactive HTML (offline); tables as "
        "Markdown and CSV.</p>",
        f"<pre>{html.escape(report.summary)}</pre>",
    ]
    for named in report.figures:
        parts.append(f'<h2 id="{named.slug}">{html.escape(named.title)}</h2>')
        link = f'<a href="{named.slug}.html">interactive figure</a>'
        if png:
            link = f'{link} · <a href="{named.slug}.png">PNG</a>'
            parts.append(
                f'<a href="{named.slug}.html"><img src="{named.slug}.png" '
                f'alt="{html.escape(named.title)}"></a>'
            )
        parts.append(f"<p>{link}</p>")
    parts.append("<h2>Tables</h2><ul>")
    for name in [*report.tables, "summary.md"]:
        parts.append(f'<li><a href="{html.escape(name)}">{html.escape(name)}</a></li>')
    parts.append("</ul></body></html>")
    return "\n".join(parts) + "\n"


def _overview(table: TrialTable) -> str:
    counts = table.counts()
    states = ", ".join(f"{state} {n}" for state, n in sorted(counts.items())) or "no trials"
    lines = [f"# Study {table.study_name}", "", f"Trials: {len(table.rows)} ({states})."]
    spec = table.spec
    if spec is not None:
        lines.append(
            f"Objective {spec.objective} on {spec.dataset or '?'}: valid {spec.metric} "
            f"({spec.direction}), {spec.epochs} epochs per trial, sampler {spec.sampler.name}, "
            f"pruner {spec.pruner.name}."
        )
        versions = ", ".join(f"{name} {v}" for name, v in sorted(spec.versions.items()))
        if versions:
            lines.append(f"Created with {versions}.")
    ranked = table.ranked()
    if spec is not None and spec.objective == "ablation":
        # Seeds of one variant vary; the best single cell says nothing about a component.
        lines.append("Variants are compared over their seeds in the table below.")
    elif ranked:
        best = ranked[0]
        test = best.test_metrics.get(table.metric)
        shown = f"; test {table.metric} {test:.4f}, reported only" if test is not None else ""
        params = ", ".join(f"{name}={value}" for name, value in best.params.items())
        lines.append(
            f"Best trial (chosen by validation): {best.number}, valid {table.metric} "
            f"{best.value:.4f}{shown} ({params})."
        )
    else:
        lines.append("No COMPLETE trial yet.")
    return "\n".join(lines)


def _cell(value: object) -> object:
    return "" if value is None else value
