"""The ablation report against numbers worked out by hand from the raw per-seed lists."""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Sequence

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from spectune.dashboards.ablation import (
    AblationReport,
    ablation_csv,
    ablation_markdown,
    ablation_report,
    draw_ablation,
)
from spectune.dashboards.trials import trial_table
from spectune.storage import attrs
from spectune.study.ablation import VARIANTS, AblationPlan
from spectune.study.config import build_config
from spectune.study.spec import PrunerSpec, SamplerSpec, StudySpec, save_spec

T_975_DF2 = 4.302652729911275  # Student's t, 97.5 % quantile, 2 degrees of freedom (tables)
SEEDS = (1000, 1001, 1002)


def ablation_study(name: str, variants: Sequence[str], seeds: Sequence[int]) -> optuna.Study:
    """An in-memory study with the spec `spectune ablate` stores (plan in the given order)."""
    study = optuna.create_study(study_name=name, direction="maximize")
    base = build_config({"dataset": "x"})
    plan = AblationPlan(base.to_dict(), {v: VARIANTS[v] for v in variants}, tuple(seeds))
    spec = StudySpec(
        study_name=name,
        objective="ablation",
        dataset="x",
        n_trials=len(plan.cells()),
        epochs=base.train.epochs,
        metric=base.train.valid_metric,
        sampler=SamplerSpec(name="random"),
        pruner=PrunerSpec(name="none"),
        ablation=plan.to_dict(),
    )
    save_spec(study, spec)
    return study


def add(
    study: optuna.Study,
    variant: str,
    seed: int,
    state: TrialState = TrialState.COMPLETE,
    *,
    recall: tuple[float, float] = (0.0, 0.0),  # (valid, test)
    ndcg: tuple[float, float] = (0.0, 0.0),
    reason: str | None = None,
) -> None:
    user_attrs: dict[str, object] = {}
    if state == TrialState.COMPLETE:
        user_attrs[attrs.RESULT] = {
            "best_epoch": 3,
            "valid": {"recall@20": recall[0], "ndcg@20": ndcg[0]},
        }
        user_attrs[attrs.TEST_METRICS] = {"recall@20": recall[1], "ndcg@20": ndcg[1]}
    if reason is not None:
        user_attrs[attrs.FAIL_REASON] = reason
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            value=recall[0] if state == TrialState.COMPLETE else None,
            params={"variant": variant, "seed": seed},
            distributions={
                "variant": CategoricalDistribution(list(VARIANTS)),
                "seed": CategoricalDistribution([*SEEDS, 1, 2, 3, 4, 5]),
            },
            user_attrs=user_attrs,
        )
    )


def report_of(study: optuna.Study) -> AblationReport:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no scipy warning may escape, degenerate cases included
        return ablation_report(trial_table(study))


def t_p_value_df2(t: float) -> float:
    """Two-sided p of Student's t with 2 df: its CDF is 1/2 + t / (2 sqrt(2 + t²))."""
    return 1.0 - abs(t) / math.sqrt(2.0 + t * t)


def t_p_value_df4(t: float) -> float:
    """Two-sided p of Student's t with 4 df: CDF 1/2 + 3/8 u (1 - t² / (12 (1 + t²/4)))."""
    scale = 1.0 + t * t / 4.0
    u = abs(t) / math.sqrt(scale)
    return 1.0 - 0.75 * u * (1.0 - t * t / (12.0 * scale))


@pytest.fixture
def mixed() -> AblationReport:
    """Three seeds; full listed second in the plan; every kind of missing cell."""
    study = ablation_study("mixed", ["no_apc", "full", "no_avrf", "no_imcf"], SEEDS)
    full = {1000: (0.10, 0.09), 1001: (0.12, 0.11), 1002: (0.14, 0.13)}
    full_ndcg = {1000: (0.05, 0.04), 1001: (0.06, 0.05), 1002: (0.07, 0.06)}
    for seed in SEEDS:
        add(study, "full", seed, recall=full[seed], ndcg=full_ndcg[seed])
    # re-queued: the FAIL comes first, the COMPLETE of the same cell later
    add(study, "no_apc", 1000, TrialState.FAIL, reason="worker stopped (SIGTERM)")
    no_apc = {1000: (0.09, 0.08), 1001: (0.10, 0.09), 1002: (0.11, 0.10)}
    no_apc_ndcg = {1000: (0.04, 0.035), 1001: (0.05, 0.045), 1002: (0.06, 0.05)}
    for seed in SEEDS:
        add(study, "no_apc", seed, recall=no_apc[seed], ndcg=no_apc_ndcg[seed])
    add(study, "no_avrf", 1000, recall=(0.11, 0.10), ndcg=(0.055, 0.045))
    add(study, "no_avrf", 1001, TrialState.PRUNED)
    add(study, "no_imcf", 1000, TrialState.FAIL, reason="training loss is nan\n at epoch 3")
    add(study, "no_imcf", 1001, TrialState.RUNNING)
    add(study, "no_imcf", 1002, TrialState.WAITING)
    return report_of(study)


def test_variants_in_plan_order_with_full_first_and_seed_counts(mixed: AblationReport) -> None:
    assert mixed.message is None
    assert [row.variant for row in mixed.rows] == ["full", "no_apc", "no_avrf", "no_imcf"]
    assert [(row.seeds_finished, row.seeds_planned) for row in mixed.rows] == [
        (3, 3),
        (3, 3),  # the failed first attempt of seed 1000 is neither missing nor counted
        (1, 3),
        (0, 3),
    ]
    assert mixed.cells_planned == 12


def test_mean_sd_and_t_interval_match_the_hand_computation(mixed: AblationReport) -> None:
    valid = mixed.row("full").stat("valid", "recall@20").summary  # [0.10, 0.12, 0.14]
    half_width = T_975_DF2 * 0.02 / math.sqrt(3)  # 4.302653 * 0.011547 = 0.049683
    assert valid.n == 3
    assert valid.mean == pytest.approx(0.12)
    assert valid.sd == pytest.approx(0.02)
    assert valid.half_width == pytest.approx(0.049683, abs=1e-6)
    assert (valid.ci_low, valid.ci_high) == pytest.approx((0.12 - half_width, 0.12 + half_width))
    test = mixed.row("no_apc").stat("test", "recall@20").summary  # [0.08, 0.09, 0.10]
    assert (test.n, test.mean, test.sd) == (3, pytest.approx(0.09), pytest.approx(0.01))
    assert test.half_width == pytest.approx(T_975_DF2 * 0.01 / math.sqrt(3))


def test_paired_difference_against_full(mixed: AblationReport) -> None:
    found = mixed.row("no_apc").stat("test", "recall@20").difference
    assert found is not None
    # differences no_apc - full: [0.08 - 0.09, 0.09 - 0.11, 0.10 - 0.13] = [-0.01, -0.02, -0.03]
    # mean -0.02, sd 0.01, t = -0.02 / (0.01 / sqrt 3) = -sqrt(12) = -3.4641
    t = -0.02 / (0.01 / math.sqrt(3))
    assert t == pytest.approx(-3.464102, abs=1e-6)
    assert found.summary.n == 3
    assert found.summary.mean == pytest.approx(-0.02)
    assert found.summary.sd == pytest.approx(0.01)
    assert found.summary.half_width == pytest.approx(T_975_DF2 * 0.01 / math.sqrt(3))
    assert found.p_ttest == pytest.approx(t_p_value_df2(t))
    assert found.p_ttest == pytest.approx(0.0741799, abs=1e-6)
    # Wilcoxon, 3 pairs all negative: 2 of the 2³ = 8 sign patterns are as extreme -> 2/8
    assert found.p_wilcoxon == pytest.approx(0.25)
    assert mixed.row("full").stat("test", "recall@20").difference is None


def test_one_seed_has_a_mean_but_nan_spread_and_p_values(mixed: AblationReport) -> None:
    summary = mixed.row("no_avrf").stat("valid", "recall@20").summary
    assert (summary.n, summary.mean) == (1, pytest.approx(0.11))
    assert math.isnan(summary.sd) and math.isnan(summary.half_width)
    found = mixed.row("no_avrf").stat("test", "recall@20").difference
    assert found is not None
    assert (found.summary.n, found.summary.mean) == (1, pytest.approx(0.01))  # 0.10 - 0.09
    assert math.isnan(found.p_ttest) and math.isnan(found.p_wilcoxon)


def test_no_finished_seed_is_all_nan(mixed: AblationReport) -> None:
    row = mixed.row("no_imcf")
    for found in row.stats:
        assert found.summary.n == 0
        assert math.isnan(found.summary.mean) and math.isnan(found.summary.sd)
        assert found.difference is not None and found.difference.summary.n == 0
        assert math.isnan(found.difference.summary.mean)
        assert math.isnan(found.difference.p_ttest) and math.isnan(found.difference.p_wilcoxon)


def test_missing_cells_are_named(mixed: AblationReport) -> None:
    assert [cell.label for cell in mixed.missing] == [
        "no_avrf seed 1001: PRUNED",
        "no_avrf seed 1002: not run yet",
        "no_imcf seed 1000: FAIL (training loss is nan at epoch 3)",
        "no_imcf seed 1001: RUNNING",
        "no_imcf seed 1002: not run yet",
    ]


def test_a_failed_cell_re_queued_and_running_is_named_by_its_newest_attempt() -> None:
    study = ablation_study("requeued", ["full"], (1, 2))
    add(study, "full", 1, recall=(0.1, 0.1))
    add(study, "full", 2, TrialState.FAIL, reason="no heartbeat for 600 s")
    add(study, "full", 2, TrialState.RUNNING)
    report = report_of(study)
    assert [cell.label for cell in report.missing] == ["full seed 2: RUNNING"]
    assert report.row("full").seeds_finished == 1


def test_two_complete_trials_of_one_cell_count_once() -> None:
    study = ablation_study("twice", ["full"], (1, 2))
    add(study, "full", 1, recall=(0.10, 0.10))
    add(study, "full", 1, recall=(0.30, 0.30))  # a duplicate run of the same cell
    add(study, "full", 2, recall=(0.20, 0.20))
    summary = report_of(study).row("full").stat("valid", "recall@20").summary
    assert (summary.n, summary.mean) == (2, pytest.approx(0.15))  # the first COMPLETE counts


def test_wilcoxon_exact_p_values_with_five_pairs() -> None:
    seeds = (1, 2, 3, 4, 5)
    study = ablation_study("five", ["full", "no_apc"], seeds)
    recall_gain = {1: 0.01, 2: 0.02, 3: 0.03, 4: 0.04, 5: 0.05}
    ndcg_gain = {1: 0.01, 2: 0.02, 3: 0.03, 4: 0.04, 5: -0.05}
    for seed in seeds:
        full_recall = 0.09 + 0.01 * seed
        add(study, "full", seed, recall=(full_recall, full_recall), ndcg=(0.05, 0.05))
        gained = full_recall + recall_gain[seed]
        add(study, "no_apc", seed, recall=(gained, gained), ndcg=(0.05, 0.05 + ndcg_gain[seed]))
    row = report_of(study).row("no_apc")
    recall = row.stat("test", "recall@20").difference
    assert recall is not None
    # all 5 differences positive: of the 2⁵ = 32 sign patterns, all + and all - are as extreme
    assert recall.p_wilcoxon == pytest.approx(2 / 32)
    # differences [0.01 .. 0.05]: mean 0.03, sd sqrt(0.001 / 4) = 0.0158114, t = 3 sqrt 2
    t = 0.03 / (math.sqrt(0.001 / 4) / math.sqrt(5))
    assert t == pytest.approx(3 * math.sqrt(2))
    assert recall.p_ttest == pytest.approx(t_p_value_df4(t))
    assert recall.p_ttest == pytest.approx(0.013236, abs=1e-6)
    ndcg = row.stat("test", "ndcg@20").difference
    assert ndcg is not None
    # ranks 1..4 positive, 5 negative: W- = 5; subsets of {1..5} with rank sum <= 5 are {},
    # {1}..{5}, {1,2}, {1,3}, {1,4}, {2,3}: 10 of 32, doubled for two sides -> 20/32
    assert ndcg.p_wilcoxon == pytest.approx(20 / 32)


def test_degenerate_differences_are_decided_without_warnings() -> None:
    study = ablation_study("degenerate", ["full", "no_apc", "no_avrf"], (1, 2, 3))
    full = {1: 0.5, 2: 0.75, 3: 0.875}
    for seed, value in full.items():
        add(study, "full", seed, recall=(value, value), ndcg=(value, value))
        add(study, "no_apc", seed, recall=(value, value), ndcg=(value, value))  # identical
        # binary fractions: every difference is exactly -0.25
        add(study, "no_avrf", seed, recall=(value - 0.25, value - 0.25), ndcg=(value, value))
    report = report_of(study)  # warnings are errors in there
    same = report.row("no_apc").stat("test", "recall@20").difference
    assert same is not None
    assert (same.p_ttest, same.p_wilcoxon) == (1.0, 1.0)
    assert (same.summary.mean, same.summary.ci_low, same.summary.ci_high) == (0.0, 0.0, 0.0)
    shifted = report.row("no_avrf").stat("test", "recall@20").difference
    assert shifted is not None
    assert shifted.summary.mean == -0.25 and shifted.summary.sd == 0.0
    assert math.isnan(shifted.p_ttest)  # sd 0: t is infinite, no p-value claimed
    assert shifted.p_wilcoxon == pytest.approx(2 / 8)  # 3 tied ranks, all negative


def test_a_study_without_an_ablation_plan_gets_a_message() -> None:
    plain = optuna.create_study(study_name="plain")
    searched = optuna.create_study(study_name="searched")
    save_spec(searched, StudySpec("searched", "mgcn", "x", n_trials=1, epochs=1))
    for study, words in ((plain, "no spectune spec"), (searched, "mgcn study")):
        report = report_of(study)
        assert report.message is not None
        assert words in report.message and "not an ablation study" in report.message
        assert report.rows == () and report.missing == ()
        assert ablation_markdown(report) == f"{study.study_name}: {report.message}\n"
        assert ablation_csv(report).splitlines() == [ablation_csv(report).splitlines()[0]]
        figure = draw_ablation(report)
        assert len(figure.data) == 0
        assert figure.layout.annotations[0].text.replace("<br>", " ") == report.message


def test_an_ablation_without_a_complete_trial_gets_a_message_and_names_its_cells() -> None:
    study = ablation_study("unfinished", ["full", "no_apc"], (1,))
    add(study, "full", 1, TrialState.FAIL, reason="CUDA out of memory")
    add(study, "no_apc", 1, TrialState.RUNNING)
    report = report_of(study)
    assert report.message == "no (variant, seed) cell has finished yet: 0 of 2 COMPLETE"
    assert [cell.label for cell in report.missing] == [
        "full seed 1: FAIL (CUDA out of memory)",
        "no_apc seed 1: RUNNING",
    ]
    markdown = ablation_markdown(report)
    assert markdown.startswith(f"unfinished: {report.message}\n")
    assert "- full seed 1: FAIL (CUDA out of memory)" in markdown.splitlines()
    assert len(list(csv.reader(io.StringIO(ablation_csv(report))))) == 1  # the header only
    assert len(draw_ablation(report).data) == 0


def test_markdown_table(mixed: AblationReport) -> None:
    lines = ablation_markdown(mixed).splitlines()
    assert lines[0] == (
        "| variant | seeds (finished/planned) | valid R@20 | valid N@20 | test R@20 | test N@20 "
        "| Δ test R@20 vs full (p t-test / p Wilcoxon) "
        "| Δ test N@20 vs full (p t-test / p Wilcoxon) |"
    )
    assert lines[1] == "| --- " * 8 + "|"
    rows = [line for line in lines[2:] if line.startswith("|")]
    assert [row.split(" | ")[0] for row in rows] == ["| full", "| no_apc", "| no_avrf", "| no_imcf"]
    full, no_apc, no_avrf, no_imcf = (row.split(" | ") for row in rows)
    # 0.12 ± 0.02, CI 0.12 ∓ 0.049683
    assert full[1:3] == ["3/3", "0.1200 ± 0.0200 [0.0703, 0.1697]"]
    assert full[6] == "reference"
    # -0.02, CI -0.02 ∓ 0.024841, p 0.0741799 and 0.25 with 3 significant digits
    assert no_apc[6] == "-0.0200 [-0.0448, +0.0048] (p 0.0742 / 0.250)"
    assert no_avrf[1:3] == ["1/3", "0.1100 ± – [–, –]"]
    assert no_avrf[6] == "+0.0100 [–, –] (p – / –)"
    assert no_imcf[1:3] == ["0/3", "–"]
    assert no_imcf[-1] == "– |"
    assert "Missing cells (5 of 12):" in lines
    assert "- no_imcf seed 1000: FAIL (training loss is nan at epoch 3)" in lines


def test_csv_round_trips_the_numbers(mixed: AblationReport) -> None:
    rows = list(csv.DictReader(io.StringIO(ablation_csv(mixed))))
    assert len(rows) == 4 * 2 * 2  # variants x splits x metrics
    by_key = {(row["variant"], row["split"], row["metric"]): row for row in rows}
    full = by_key["full", "valid", "recall@20"]
    assert (full["seeds_planned"], full["seeds_finished"], full["n"]) == ("3", "3", "3")
    assert float(full["mean"]) == pytest.approx(0.12)
    assert float(full["sd"]) == pytest.approx(0.02)
    assert float(full["ci_high"]) - float(full["mean"]) == pytest.approx(0.0496827, abs=1e-7)
    assert full["diff_mean"] == full["p_ttest"] == ""  # the reference has no difference
    no_apc = by_key["no_apc", "test", "recall@20"]
    assert float(no_apc["diff_mean"]) == pytest.approx(-0.02)
    assert float(no_apc["p_ttest"]) == pytest.approx(t_p_value_df2(-math.sqrt(12)))
    assert float(no_apc["p_wilcoxon"]) == pytest.approx(0.25)
    # full precision: the printed number is the report's float exactly
    stat = mixed.row("no_apc").stat("test", "recall@20")
    assert float(no_apc["mean"]) == stat.summary.mean
    no_imcf = by_key["no_imcf", "valid", "ndcg@20"]
    assert no_imcf["n"] == "0" and math.isnan(float(no_imcf["mean"]))


def test_figure_bars_error_bars_and_labels(mixed: AblationReport) -> None:
    figure = draw_ablation(mixed)
    bars = [trace for trace in figure.data if trace.type == "bar"]
    assert len(bars) == 4  # (valid, test) x 2 metrics
    assert [trace.name for trace in bars] == ["valid", "test", "valid", "test"]
    labels = ["full (n=3)", "no_apc (n=3)", "no_avrf (n=1)", "no_imcf (n=0)"]
    for trace in bars:
        assert list(trace.x) == labels
    test_recall = figure.data[1]
    assert list(test_recall.y[:2]) == pytest.approx([0.11, 0.09])
    widths = list(test_recall.error_y.array)
    assert widths[:2] == pytest.approx([T_975_DF2 * s / math.sqrt(3) for s in (0.02, 0.01)])
    assert math.isnan(widths[2]) and math.isnan(widths[3])
    for trace, (split, metric) in zip(
        bars, [(s, m) for m in mixed.metrics for s in ("valid", "test")]
    ):
        expected = [row.stat(split, metric).summary.half_width for row in mixed.rows]
        assert list(trace.error_y.array) == pytest.approx(expected, nan_ok=True)
    dashed = [shape for shape in figure.layout.shapes if shape.line.dash == "dash"]
    assert [shape.y0 for shape in dashed] == pytest.approx([0.11, 0.05])  # full's test means
    (reference,) = [trace for trace in figure.data if trace.type == "scatter"]
    assert reference.name == "full, test mean" and reference.line.dash == "dash"
    assert "mean ± 95 % CI over seeds" in figure.layout.title.text
    assert "recall@20" in figure.layout.title.text
    titles = [note.text for note in figure.layout.annotations]
    assert "recall@20" in titles and "ndcg@20" in titles
