"""``spectune data check``: statistics and the content-only kNN sanity signal."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from spectune.datasets.check import (
    MIN_KNN_ITEMS,
    RANDOM_DIM,
    RANDOM_SEED,
    check_dataset,
    knn_skip_reason,
)
from spectune.datasets.synthetic import TINY, SyntheticShape, make_synthetic, write_mmrec
from spectune.study.cli import main


def test_ml_100k_statistics_match_the_shared_readme(shared_data: Path) -> None:
    stats = check_dataset(shared_data / "ml-100k")
    assert (stats.n_users, stats.n_items, stats.split_sizes) == (943, 1343, (79729, 9524, 9962))
    assert round(100 * stats.density, 2) == 7.83
    assert stats.knn is not None and stats.knn_skipped is None
    recalls = {name: round(recall, 4) for name, recall in stats.knn.modalities}
    assert recalls == {"image": 0.0348, "text": 0.0819}
    assert round(stats.knn.random, 4) == 0.0147
    assert round(stats.knn.popularity, 4) == 0.0921
    assert stats.users_evaluated == 943
    # 18 built items share a poster (and a title) with another: 9 repeated rows per modality
    assert [m.duplicate_rows for m in stats.modalities] == [9, 9]
    assert [m.dim for m in stats.modalities] == [1280, 384]


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    folder = tmp_path / TINY.name
    write_mmrec(make_synthetic(TINY, seed=0), folder)
    return folder


def test_check_prints_the_statistics(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", str(tiny)]) == 0
    out = capsys.readouterr().out
    assert f"{tiny}: 60 users, 40 items, 600 interactions (train " in out
    assert "  image: 32-d\n  text: 16-d\n" in out
    assert "content-only kNN Recall@20 on test (" in out
    assert "random " in out and "popularity " in out


def test_a_modality_no_better_than_random_is_flagged(
    tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "check", str(tiny)]) == 0
    assert "warning" not in capsys.readouterr().out  # TINY's features carry its clusters
    # the random baseline's own features: exactly as good as random
    noise = np.random.default_rng(RANDOM_SEED).standard_normal((40, RANDOM_DIM))
    np.save(tiny / "image_feat.npy", noise.astype(np.float32))
    assert main(["data", "check", str(tiny)]) == 0
    out = capsys.readouterr().out
    assert "warning: image does not beat random features" in out
    assert "warning: text" not in out


def test_too_few_items_skip_the_knn_check_without_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shape = SyntheticShape(40, 25, 480, (("image", 8), ("text", 8)), "synthetic-25")
    folder = tmp_path / shape.name
    write_mmrec(make_synthetic(shape, seed=0), folder)
    stats = check_dataset(folder)
    assert stats.n_items == 25 and stats.knn is None
    reason = (
        "25 items, fewer than 40 (2 x 20): the top 20 would hold over half of all items, "
        "so even random features would score high"
    )
    assert stats.knn_skipped == reason
    assert main(["data", "check", str(folder)]) == 0
    out = capsys.readouterr().out
    assert out.endswith(f"  text: 8-d\ncontent-only kNN Recall@20 skipped: {reason}\n")
    assert "warning" not in out and "Recall@20 on test" not in out


def test_the_knn_check_runs_from_40_items() -> None:
    assert MIN_KNN_ITEMS == 40 == TINY.n_items  # TINY's tests above exercise the check
    assert knn_skip_reason(39) is not None
    assert knn_skip_reason(40) is None


def test_check_of_a_broken_dataset_is_one_line(
    tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(tiny / "text_feat.npy", tiny / "image_feat.npy")
    np.save(tiny / "text_feat.npy", np.zeros((3, 4), dtype=np.float32))
    assert main(["data", "check", str(tiny)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spectune data: error: feature tables must have one row per item")
    assert err.count("\n") == 1
