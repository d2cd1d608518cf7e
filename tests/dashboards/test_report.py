"""The report: built for any study size, written all at once, published into the dashboard."""

from __future__ import annotations

import csv
import errno
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial
from optuna_dashboard import get_note
from optuna_dashboard._custom_plot_data import get_plotly_graph_objects

from spectune.dashboards import report as report_module
from spectune.dashboards.errors import ReportError
from spectune.dashboards.publish import publish
from spectune.dashboards.report import MARKER, build_report, write_report
from spectune.dashboards.trials import trial_table
from spectune.storage import attrs
from spectune.storage.factory import build_storage
from spectune.storage.testing import FAST_OPTIONS, Backend
from spectune.storage.urls import parse_storage_url
from spectune.study.ablation import VARIANTS, AblationPlan
from spectune.study.config import build_config
from spectune.study.spec import StudySpec, save_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)

SEARCH_FIGURES = ["importance", "history", "learning-curves", "parallel-coordinates", "spectrum"]
LR = FloatDistribution(1e-4, 1e-1, log=True)
DAMPS = CategoricalDistribution([True, False])


def search_study(
    n_complete: int, storage: optuna.storages.BaseStorage | None = None, name: str = "s"
) -> optuna.Study:
    """An MGCN search study: n COMPLETE trials, one PRUNED and one FAIL."""
    study = optuna.create_study(study_name=name, direction="maximize", storage=storage)
    spec = StudySpec(study_name=name, objective="mgcn", dataset="ml-100k", n_trials=20, epochs=4)
    save_spec(study, spec)
    trials = [
        create_trial(
            state=TrialState.PRUNED,
            params={"learning_rate": 1e-2, "use_damps": False},
            distributions={"learning_rate": LR, "use_damps": DAMPS},
            intermediate_values={0: 0.01},
            user_attrs={attrs.EPOCH_SECONDS: 2.0},
        ),
        create_trial(
            state=TrialState.FAIL,
            params={"learning_rate": 5e-2, "use_damps": True},
            distributions={"learning_rate": LR, "use_damps": DAMPS},
            user_attrs={attrs.FAIL_REASON: "training loss is nan at epoch 1"},
        ),
    ]
    for i in range(n_complete):
        trials.append(
            create_trial(
                params={"learning_rate": 10 ** (-2 - i / 8), "use_damps": i % 2 == 0},
                distributions={"learning_rate": LR, "use_damps": DAMPS},
                value=0.1 + 0.01 * i,
                intermediate_values={0: 0.05, 1: 0.1 + 0.01 * i},
                user_attrs={
                    attrs.CONFIG: build_config(
                        {"dataset": "ml-100k"}, {"use_damps": i % 2 == 0}
                    ).to_dict(),
                    attrs.EPOCH_SECONDS: 3.0 + i,
                    attrs.TEST_METRICS: {"recall@20": 0.09 + 0.01 * i},
                },
            )
        )
    study.add_trials(trials)
    return study


@pytest.mark.parametrize("n_complete", [0, 1, 3])
def test_small_studies_get_messages_not_crashes(n_complete: int, tmp_path: Path) -> None:
    table = trial_table(search_study(n_complete))
    report = build_report(table, "ped-anova", min_trials=10)
    assert [named.slug for named in report.figures] == SEARCH_FIGURES
    importance_text = [a.text for a in report.figures[0].figure.layout.annotations]
    assert f"not enough trials ({n_complete} of 10)" in importance_text
    assert f"not enough trials ({n_complete + 1} of 10)" in importance_text  # cost: + PRUNED
    spectrum = report.figures[-1].figure.layout.annotations[0].text
    if n_complete == 0:
        assert "No COMPLETE trial yet." in report.summary
        assert "no COMPLETE trial" in spectrum
    else:
        best = 2 + n_complete - 1  # the last added trial has the highest value
        assert f"Best trial (chosen by validation): {best}" in report.summary
        assert "checkpoint" in spectrum  # the DAMPS trial carries none: said, not raised
    written = write_report(report, tmp_path / "report", png=False)
    names = sorted(path.name for path in written)
    expected = {f"{slug}.html" for slug in SEARCH_FIGURES}
    expected |= {"index.html", "summary.md", "trials.csv", "importance.csv", MARKER}
    assert set(names) == expected


def test_trials_csv_lists_every_trial_with_reported_test_metrics() -> None:
    report = build_report(trial_table(search_study(2)))
    rows = list(csv.DictReader(io.StringIO(report.tables["trials.csv"])))
    assert [row["state"] for row in rows] == ["PRUNED", "FAIL", "COMPLETE", "COMPLETE"]
    assert rows[1]["fail_reason"] == "training loss is nan at epoch 1"
    assert float(rows[3]["valid_recall@20"]) == pytest.approx(0.11)
    assert float(rows[3]["test_recall@20_reported_only"]) == pytest.approx(0.10)
    assert float(rows[0]["seconds_per_epoch"]) == 2.0
    assert rows[0]["epochs_reported"] == "1"


def test_importance_is_ranked_once_enough_trials_finished() -> None:
    report = build_report(trial_table(search_study(12)), "fanova", min_trials=10)
    rows = list(csv.DictReader(io.StringIO(report.tables["importance.csv"])))
    assert {row["target"] for row in rows} == {"objective", "cost"}
    assert {row["evaluator"] for row in rows} == {"fANOVA"}
    assert sum(float(row["importance"]) for row in rows if row["target"] == "objective") == (
        pytest.approx(1.0)
    )
    assert "| 1 | " in report.summary


def test_index_links_every_figure_and_table(tmp_path: Path) -> None:
    report = build_report(trial_table(search_study(3)))
    write_report(report, tmp_path / "r", png=False)
    index = (tmp_path / "r" / "index.html").read_text()
    for slug in SEARCH_FIGURES:
        assert f'href="{slug}.html"' in index
    for table in ("trials.csv", "importance.csv", "summary.md"):
        assert f'href="{table}"' in index
    assert "spectune report: s" in index
    html = (tmp_path / "r" / "history.html").read_text()
    # plotly.js is inside the file, not fetched: the figure opens offline
    assert '<script src="http' not in html and "Plotly.newPlot" in html


def test_a_new_report_replaces_the_old_one_whole(tmp_path: Path) -> None:
    out = tmp_path / "r"
    write_report(build_report(trial_table(search_study(1))), out, png=False)
    (out / "stale.txt").write_text("from an old report")
    write_report(build_report(trial_table(search_study(3))), out, png=False)
    assert not (out / "stale.txt").exists()
    assert "Best trial (chosen by validation): 4" in (out / "summary.md").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["r"]  # no staging folder left behind


def no_browser(figures: object, folder: Path) -> None:
    raise ReportError("PNG export failed (no Chromium)")


def mount_point(staging: Path, out: Path) -> None:
    raise OSError(errno.EBUSY, "Device or resource busy", str(out))


@pytest.mark.parametrize(
    ("step", "failure", "expected"),
    [
        ("_write_pngs", no_browser, "no Chromium"),
        ("_swap_in", mount_point, r"Device or resource busy .*not a mount point"),
    ],
)
def test_a_failed_write_leaves_the_previous_report(
    step: str,
    failure: Callable[[Any, Path], None],
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "r"
    write_report(build_report(trial_table(search_study(1))), out, png=False)
    before = (out / "summary.md").read_text()
    monkeypatch.setattr(report_module, step, failure)
    with pytest.raises(ReportError, match=expected):
        write_report(build_report(trial_table(search_study(3))), out, png=step == "_write_pngs")
    assert (out / "summary.md").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r"]  # no staging folder left behind


def test_an_out_that_cannot_be_created_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(ReportError, match=r"cannot write the report to .*a-file/r: "):
        write_report(build_report(trial_table(search_study(1))), tmp_path / "a-file" / "r")
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


def test_a_spectrum_that_cannot_be_drawn_is_a_warning_an_empty_study_is_not() -> None:
    # search_study's trials train DAMPS but record no checkpoint path
    assert build_report(trial_table(search_study(3))).warnings == [
        "trial 4 has no checkpoint path recorded"
    ]
    assert build_report(trial_table(search_study(0))).warnings == []


def test_refuses_to_replace_a_folder_that_is_not_a_report(tmp_path: Path) -> None:
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("keep me")
    with pytest.raises(ReportError, match="is not a spectune report"):
        write_report(build_report(trial_table(search_study(1))), precious, png=False)
    assert (precious / "chapter1.tex").read_text() == "keep me"


@pytest.mark.slow
def test_png_figures_are_written_by_a_real_browser(tmp_path: Path) -> None:
    report = build_report(trial_table(search_study(3)))
    write_report(report, tmp_path / "r", png=True)
    for slug in SEARCH_FIGURES:
        png = (tmp_path / "r" / f"{slug}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(png) > 10_000  # text and axes drawn, not an empty canvas
    assert '<img src="importance.png"' in (tmp_path / "r" / "index.html").read_text()


def test_publish_replaces_its_figures_and_note_in_the_study(
    backend: Backend, study_name: str
) -> None:
    storage = build_storage(parse_storage_url(backend.url), FAST_OPTIONS, create=True)
    study = search_study(3, storage, study_name)
    report = build_report(trial_table(study))
    assert publish(study, report, "/reports/s") == ["spectune-importance", "spectune-spectrum"]
    publish(study, report, "/reports/s")  # again: replaced, not added
    reloaded = optuna.load_study(study_name=study_name, storage=storage)
    graphs = get_plotly_graph_objects(storage.get_study_system_attrs(reloaded._study_id))
    assert sorted(graphs) == ["spectune-importance", "spectune-spectrum"]
    assert "Parameter importance" in graphs["spectune-importance"]
    note = get_note(reloaded)
    assert note.startswith(f"# Study {study_name}") and note.endswith("`/reports/s`")


def test_an_ablation_study_gets_the_ablation_table_and_chart(tmp_path: Path) -> None:
    base = build_config({"dataset": "ml-100k"})
    plan = AblationPlan(base.to_dict(), {v: VARIANTS[v] for v in ("full", "no_apc")}, (7, 8))
    study = optuna.create_study(study_name="a", direction="maximize")
    spec = StudySpec(
        study_name="a",
        objective="ablation",
        dataset="ml-100k",
        n_trials=4,
        epochs=4,
        ablation=plan.to_dict(),
    )
    save_spec(study, spec)
    variant = CategoricalDistribution(["full", "no_apc"])
    seed = CategoricalDistribution([7, 8])
    for name, value in (("full", 0.2), ("no_apc", 0.15)):
        study.add_trial(
            create_trial(
                params={"variant": name, "seed": 7},
                distributions={"variant": variant, "seed": seed},
                value=value,
                user_attrs={
                    attrs.RESULT: {"valid": {"recall@20": value, "ndcg@20": value / 2}},
                    attrs.TEST_METRICS: {"recall@20": value, "ndcg@20": value / 2},
                },
            )
        )
    report = build_report(trial_table(study))
    assert [named.slug for named in report.figures] == ["ablation", "learning-curves", "spectrum"]
    assert "| no_apc |" in report.tables["ablation.md"]
    assert "no_apc seed 8: not run yet" in report.summary
    assert "Best trial" not in report.summary  # variants, not one lucky seed, are compared
    write_report(report, tmp_path / "r", png=False)
    assert (tmp_path / "r" / "ablation.csv").read_text() == report.tables["ablation.csv"]
