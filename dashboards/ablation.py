"""The ablation table of an ablation study: per variant and seed-averaged, with paired tests.

Computed first (``ablation_report``: plain numbers from a TrialTable), rendered second (Markdown
for a paper, CSV for scripts, a bar chart), so every rendering shows the same numbers.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from scipy import stats

from spectune.dashboards.canvas import message_figure, styled
from spectune.dashboards.trials import TrialRow, TrialTable
from spectune.study.ablation import FULL, AblationPlan

SPLITS = ("valid", "test")
NAN = float("nan")
NOT_AVAILABLE = "–"  # how every NaN is written in Markdown
NOT_RUN = "not run yet"
_SPLIT_COLOURS = {"valid": "#1f77b4", "test": "#ff7f0e"}
_SHORT_METRICS = {"recall": "R", "ndcg": "N", "precision": "P", "map": "MAP"}
_CSV_FIELDS = (
    "variant",
    "split",
    "metric",
    "seeds_planned",
    "seeds_finished",
    "n",
    "mean",
    "sd",
    "ci_low",
    "ci_high",
    "diff_n",
    "diff_mean",
    "diff_sd",
    "diff_ci_low",
    "diff_ci_high",
    "p_ttest",
    "p_wilcoxon",
)


@dataclass(frozen=True)
class Summary:
    """Mean, sample sd and 95 % Student-t confidence interval of values over seeds."""

    n: int
    mean: float  # NaN when n = 0
    sd: float  # ddof = 1; NaN when n < 2
    half_width: float  # of the 95 % CI of the mean; NaN when n < 2

    @property
    def ci_low(self) -> float:
        return self.mean - self.half_width

    @property
    def ci_high(self) -> float:
        return self.mean + self.half_width


@dataclass(frozen=True)
class Difference:
    """Variant minus full, paired by seed over the seeds where both are COMPLETE."""

    summary: Summary  # of the differences: n pairs, mean difference, its 95 % CI
    p_ttest: float  # paired t-test, two-sided
    p_wilcoxon: float  # Wilcoxon signed-rank, two-sided


@dataclass(frozen=True)
class MetricStats:
    split: str  # "valid" (at the best validation epoch) or "test"
    metric: str
    summary: Summary
    difference: Difference | None  # None for the full model (the reference) or no full planned


@dataclass(frozen=True)
class VariantRow:
    variant: str
    seeds_planned: int
    seeds_finished: int  # planned seeds with a COMPLETE trial
    stats: tuple[MetricStats, ...]

    def stat(self, split: str, metric: str) -> MetricStats:
        for found in self.stats:
            if found.split == split and found.metric == metric:
                return found
        raise KeyError(f"no {split} {metric} in the ablation report")


@dataclass(frozen=True)
class MissingCell:
    """A planned (variant, seed) without a COMPLETE trial, and why."""

    variant: str
    seed: int
    status: str  # FAIL, PRUNED, RUNNING or "not run yet" (WAITING or absent)
    reason: str | None = None  # a FAIL's fail_reason

    @property
    def label(self) -> str:
        detail = f"{self.status} ({self.reason})" if self.reason else self.status
        return f"{self.variant} seed {self.seed}: {detail}"


@dataclass(frozen=True)
class AblationReport:
    study_name: str
    metrics: tuple[str, ...]
    rows: tuple[VariantRow, ...] = ()  # plan order, full first
    missing: tuple[MissingCell, ...] = ()  # plan order
    cells_planned: int = 0
    message: str | None = None  # set when there is nothing to report, and why

    def row(self, variant: str) -> VariantRow:
        for found in self.rows:
            if found.variant == variant:
                return found
        raise KeyError(f"variant {variant!r} is not in the ablation report")


def ablation_report(
    table: TrialTable, metrics: tuple[str, ...] = ("recall@20", "ndcg@20")
) -> AblationReport:
    spec = table.spec
    if spec is None:
        return AblationReport(
            table.study_name,
            metrics,
            message=f"study {table.study_name} has no spectune spec: not an ablation study",
        )
    if spec.ablation is None:
        return AblationReport(
            table.study_name,
            metrics,
            message=(
                f"study {table.study_name} is a {spec.objective} study, not an ablation study "
                "(`spectune ablate` makes one)"
            ),
        )
    plan = AblationPlan.from_dict(spec.ablation)
    variants = sorted(plan.variants, key=lambda name: name != FULL)  # stable: full first
    cells = _cell_trials(table.rows, plan)
    complete = {cell: _complete_trial(trials) for cell, trials in cells.items()}
    rows = tuple(
        _variant_row(variant, plan.seeds, complete, metrics, has_full=FULL in plan.variants)
        for variant in variants
    )
    missing = tuple(
        _missing(variant, seed, cells[variant, seed])
        for variant in variants
        for seed in plan.seeds
        if complete[variant, seed] is None
    )
    n_cells = len(variants) * len(plan.seeds)
    message = None
    if len(missing) == n_cells:
        message = f"no (variant, seed) cell has finished yet: 0 of {n_cells} COMPLETE"
    return AblationReport(table.study_name, metrics, rows, missing, n_cells, message)


def _cell_trials(
    rows: Sequence[TrialRow], plan: AblationPlan
) -> dict[tuple[str, int], list[TrialRow]]:
    """Every planned cell's trials; trials outside the plan are not part of the table.

    A WAITING trial keeps its enqueued params out of ``params`` until it runs, so it lands in no
    cell, and its cell reads "not run yet", as an absent one does.
    """
    cells: dict[tuple[str, int], list[TrialRow]] = {
        (variant, seed): [] for variant in plan.variants for seed in plan.seeds
    }
    for row in rows:
        key = (row.params.get("variant"), row.params.get("seed"))
        if key in cells:
            cells[key].append(row)
    return cells


def _complete_trial(trials: Sequence[TrialRow]) -> TrialRow | None:
    # A re-queued cell may hold a FAIL and a later COMPLETE: the COMPLETE one counts, and only
    # one (the first) so that no seed is counted twice.
    done = [trial for trial in trials if trial.state == "COMPLETE"]
    return min(done, key=lambda trial: trial.number) if done else None


def _missing(variant: str, seed: int, trials: Sequence[TrialRow]) -> MissingCell:
    if not trials:
        return MissingCell(variant, seed, NOT_RUN)
    latest = max(trials, key=lambda trial: trial.number)  # the cell's newest attempt
    if latest.state == "WAITING":
        return MissingCell(variant, seed, NOT_RUN)
    reason = latest.fail_reason if latest.state == "FAIL" else None
    # one line, so the reason fits a Markdown list item
    return MissingCell(variant, seed, latest.state, " ".join(reason.split()) if reason else None)


def _variant_row(
    variant: str,
    seeds: Sequence[int],
    complete: Mapping[tuple[str, int], TrialRow | None],
    metrics: Sequence[str],
    *,
    has_full: bool,
) -> VariantRow:
    finished = [complete[variant, seed] for seed in seeds]
    reference = [complete[FULL, seed] if has_full else None for seed in seeds]
    found: list[MetricStats] = []
    for split in SPLITS:
        for metric in metrics:
            values = [_value(trial, split, metric) for trial in finished]
            summary = _summary([value for value in values if value is not None])
            difference = None
            if has_full and variant != FULL:
                full_values = [_value(trial, split, metric) for trial in reference]
                pairs = [
                    (value, base)
                    for value, base in zip(values, full_values)
                    if value is not None and base is not None
                ]
                difference = _difference(pairs)
            found.append(MetricStats(split, metric, summary, difference))
    n_finished = sum(trial is not None for trial in finished)
    return VariantRow(variant, len(seeds), n_finished, tuple(found))


def _value(trial: TrialRow | None, split: str, metric: str) -> float | None:
    """The trial's metric on the split; None when absent or not finite (no number to average)."""
    if trial is None:
        return None
    source: Any = trial.result.get("valid") if split == "valid" else trial.test_metrics
    value = source.get(metric) if isinstance(source, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _summary(values: Sequence[float]) -> Summary:
    n = len(values)
    if n == 0:
        return Summary(0, NAN, NAN, NAN)
    mean = float(np.mean(values))
    if n == 1:
        return Summary(1, mean, NAN, NAN)  # one seed says nothing about the spread
    sd = float(np.std(values, ddof=1))
    half_width = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return Summary(n, mean, sd, half_width)


def _difference(pairs: Sequence[tuple[float, float]]) -> Difference:
    variant = np.array([value for value, _ in pairs])
    full = np.array([base for _, base in pairs])
    differences = variant - full
    summary = _summary([float(d) for d in differences])
    # Degenerate cases are decided here, so no scipy warning or exception reaches the reader:
    # - fewer than 2 pairs: no test is possible -> both p-values NaN;
    # - every difference exactly 0: no sign of any effect -> p = 1.0 for both (scipy divides
    #   0 by 0 there);
    # - the same non-zero difference on every seed: sd 0 makes t infinite and scipy's p = 0
    #   would claim certainty from a few seeds -> t-test p NaN; Wilcoxon ranks ties and stays
    #   defined.
    if len(differences) < 2:
        return Difference(summary, NAN, NAN)
    if not np.any(differences):
        return Difference(summary, 1.0, 1.0)
    with warnings.catch_warnings():
        # e.g. "precision loss" for nearly identical differences; the p-value is still returned
        warnings.simplefilter("ignore")
        p_ttest = NAN if np.ptp(differences) == 0 else float(stats.ttest_rel(variant, full).pvalue)
        p_wilcoxon = float(stats.wilcoxon(differences, alternative="two-sided").pvalue)
    return Difference(summary, p_ttest, p_wilcoxon)


def ablation_markdown(report: AblationReport) -> str:
    """A GitHub-flavoured Markdown table (mean ± sd [95 % CI]) and the missing cells below it."""
    if report.message is not None:
        return "\n".join([f"{report.study_name}: {report.message}", *_missing_lines(report)]) + "\n"
    header = ["variant", "seeds (finished/planned)"]
    header += [f"{split} {_short(metric)}" for split in SPLITS for metric in report.metrics]
    header += [
        f"Δ test {_short(metric)} vs {FULL} (p t-test / p Wilcoxon)" for metric in report.metrics
    ]
    lines = [_table_line(header), _table_line(["---"] * len(header))]
    for row in report.rows:
        cells = [row.variant, f"{row.seeds_finished}/{row.seeds_planned}"]
        cells += [
            _summary_cell(row.stat(split, metric).summary)
            for split in SPLITS
            for metric in report.metrics
        ]
        cells += [
            _difference_cell(row.stat("test", metric).difference) for metric in report.metrics
        ]
        lines.append(_table_line(cells))
    lines += [
        "",
        f"Mean ± sd [95 % CI] over seeds; Δ: variant − {FULL}, paired over the seeds where both "
        f"finished, with its 95 % CI; {NOT_AVAILABLE}: not defined (too few seeds, or a t-test "
        "on a constant difference).",
    ]
    if not report.missing:
        lines += ["", f"All {report.cells_planned} planned cells are COMPLETE."]
    return "\n".join([*lines, *_missing_lines(report)]) + "\n"


def _missing_lines(report: AblationReport) -> list[str]:
    if not report.missing:
        return []
    header = f"Missing cells ({len(report.missing)} of {report.cells_planned}):"
    return ["", header, "", *(f"- {cell.label}" for cell in report.missing)]


def _table_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _short(metric: str) -> str:
    name, at, k = metric.partition("@")
    return f"{_SHORT_METRICS.get(name, name)}{at}{k}"


def _number(value: float, *, signed: bool = False) -> str:
    if math.isnan(value):
        return NOT_AVAILABLE
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _p(value: float) -> str:
    return NOT_AVAILABLE if math.isnan(value) else f"{value:#.3g}"


def _summary_cell(summary: Summary) -> str:
    if summary.n == 0:
        return NOT_AVAILABLE
    return (
        f"{_number(summary.mean)} ± {_number(summary.sd)} "
        f"[{_number(summary.ci_low)}, {_number(summary.ci_high)}]"
    )


def _difference_cell(difference: Difference | None) -> str:
    if difference is None:
        return "reference"
    summary = difference.summary
    if summary.n == 0:
        return NOT_AVAILABLE
    return (
        f"{_number(summary.mean, signed=True)} "
        f"[{_number(summary.ci_low, signed=True)}, {_number(summary.ci_high, signed=True)}] "
        f"(p {_p(difference.p_ttest)} / {_p(difference.p_wilcoxon)})"
    )


def ablation_csv(report: AblationReport) -> str:
    """One row per variant x split x metric, full precision; NaN is "nan", and the full row's
    difference columns (no difference) are empty. Only the header when there is nothing to report.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_CSV_FIELDS)
    if report.message is not None:
        return out.getvalue()
    for row in report.rows:
        for found in row.stats:
            summary = found.summary
            numbers: list[float | str] = [
                summary.n,
                summary.mean,
                summary.sd,
                summary.ci_low,
                summary.ci_high,
            ]
            if found.difference is None:
                numbers += [""] * 7
            else:
                diff = found.difference.summary
                numbers += [diff.n, diff.mean, diff.sd, diff.ci_low, diff.ci_high]
                numbers += [found.difference.p_ttest, found.difference.p_wilcoxon]
            writer.writerow(
                [row.variant, found.split, found.metric, row.seeds_planned, row.seeds_finished]
                + [repr(value) if isinstance(value, float) else value for value in numbers]
            )
    return out.getvalue()


def _tick_label(row: VariantRow) -> str:
    return f"{row.variant} (n={row.seeds_finished})"


def draw_ablation(report: AblationReport) -> go.Figure:
    """Bars per variant, grouped by split, one subplot per metric; error bars: the 95 % CI."""
    title = f"Ablation of {report.study_name}"
    if report.message is not None:
        return message_figure(title, report.message)
    # wide gaps: the second panel's axis title must not sit on the first panel's bars
    figure = make_subplots(
        rows=1, cols=len(report.metrics), subplot_titles=report.metrics, horizontal_spacing=0.12
    )
    labels = [_tick_label(row) for row in report.rows]
    for col, metric in enumerate(report.metrics, start=1):
        for split in SPLITS:
            summaries = [row.stat(split, metric).summary for row in report.rows]
            figure.add_trace(
                go.Bar(
                    name=split,
                    x=labels,
                    y=[summary.mean for summary in summaries],
                    error_y={
                        "type": "data",
                        "array": [summary.half_width for summary in summaries],
                        "visible": True,
                    },
                    marker_color=_SPLIT_COLOURS[split],
                    legendgroup=split,
                    showlegend=col == 1,  # one legend entry per split, not per subplot
                ),
                row=1,
                col=col,
            )
        figure.update_yaxes(title_text=metric, row=1, col=col)
        full_test = _full_test_mean(report, metric)
        if full_test is not None:
            figure.add_hline(
                y=full_test, line_dash="dash", line_color=_SPLIT_COLOURS["test"], row=1, col=col
            )
    if any(_full_test_mean(report, metric) is not None for metric in report.metrics):
        # the dashed reference is named in the legend: a label on the line covers the bars
        figure.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="lines",
                line={"dash": "dash", "color": _SPLIT_COLOURS["test"]},
                name=f"{FULL}, test mean",
            ),
            row=1,
            col=1,
        )
    figure.update_layout(barmode="group")
    metrics = ", ".join(report.metrics)
    return styled(figure, f"{title}: {metrics}, mean ± 95 % CI over seeds")


def _full_test_mean(report: AblationReport, metric: str) -> float | None:
    for row in report.rows:
        if row.variant == FULL:
            mean = row.stat("test", metric).summary.mean
            return None if math.isnan(mean) else mean
    return None
