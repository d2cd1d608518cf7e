"""The builder with the real encoders (the ``encoders`` extra) reproduces ``shared/data``.

Bytes for .inter/.tsv; features within 1e-4 (cosine and absolute; the README suggests 1e-4 for
image and 1e-5 for text rows). The ml-100k rebuild, the kg build that trains, and ``make demo``
on an empty data root are slow (minutes on 2 cores).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from builder_support import cosine_rows

from spectune.datasets.mmrec import load_dataset
from spectune.datasets.movielens import TITLE_MATCH_FILE, movie_text, read_movies
from spectune.study.cli import main

REPOSITORY = Path(__file__).resolve().parents[2]
TOLERANCE = {"image": 1e-4, "text": 1e-5}


def assert_features_match(built: np.ndarray, expected: np.ndarray, modality: str) -> None:
    assert built.dtype == np.float32 and built.shape == expected.shape
    assert (1.0 - cosine_rows(built, expected)).max() < 1e-4
    np.testing.assert_allclose(built, expected, rtol=0, atol=TOLERANCE[modality])


@pytest.fixture(scope="module")
def sample_build(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    sample = shared_data / "raw-sample"
    out = tmp_path_factory.mktemp("data") / "ml-1m-sample"
    code = main(
        [
            "data", "build", "movielens-1m",
            "--ratings", str(sample / "ml-1m-sample.inter"),
            "--movies", str(sample / "MovieData" / "movies.dat"),
            "--posters", str(sample / "MovieImages"),
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    return out


def test_raw_sample_build_matches_expected(sample_build: Path, shared_data: Path) -> None:
    expected = shared_data / "raw-sample" / "expected"
    for name in ("ml-1m-sample.inter", "items.tsv", "users.tsv"):
        assert (sample_build / name).read_bytes() == (expected / name).read_bytes(), name
    for modality in ("image", "text"):
        built = np.load(sample_build / f"{modality}_feat.npy")
        assert_features_match(built, np.load(expected / f"{modality}_feat.npy"), modality)
    dataset = load_dataset("ml-1m-sample", sample_build.parent)
    assert dataset.modalities == ("image", "text")


def test_every_sample_poster_and_title_encodes_like_expected(shared_data: Path) -> None:
    """all_*_feat.npy cover the odd posters: PNG data in a .jpg, greyscale, a tiny file."""
    from spectune.datasets.encoders import encode_images, encode_texts

    sample = shared_data / "raw-sample"
    movies = sorted(read_movies(sample / "MovieData" / "movies.dat"), key=lambda m: int(m.movie_id))
    posters = [sample / "MovieImages" / f"{m.movie_id}.jpg" for m in movies]
    assert {"3575", "1789", "1094"} <= {m.movie_id for m in movies}
    expected = sample / "expected"
    assert_features_match(encode_images(posters), np.load(expected / "all_image_feat.npy"), "image")
    texts = [movie_text(m.title, m.genres) for m in movies]
    assert_features_match(encode_texts(texts), np.load(expected / "all_text_feat.npy"), "text")


@pytest.mark.slow
def test_ml_100k_rebuild_matches_shared(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "data" / "ml-100k"
    code = main(
        [
            "data", "build", "movielens-100k",
            "--movies", str(shared_data / "raw" / "movies.dat"),
            "--posters", str(shared_data / "raw" / "posters-ml100k"),
            "--download-cache", str(tmp_path / "wheels"),
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    expected = shared_data / "ml-100k"
    for name in ("ml-100k.inter", "items.tsv", "users.tsv", TITLE_MATCH_FILE):
        assert (out / name).read_bytes() == (expected / name).read_bytes(), name
    for modality in ("image", "text"):
        built = np.load(out / f"{modality}_feat.npy")
        assert_features_match(built, np.load(expected / f"{modality}_feat.npy"), modality)


def environment(tmp_path: Path) -> dict[str, str]:
    """Caches and artifacts inside tmp_path; one thread per process (a shared 2-core machine)."""
    return os.environ | {
        "SPECTUNE_CACHE_DIR": str(tmp_path / "cache"),
        "SPECTUNE_ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "OMP_NUM_THREADS": "1",
    }


@pytest.mark.slow
def test_ml_100k_kg_build_in_an_empty_data_root_trains(tmp_path: Path) -> None:
    root = tmp_path / "data"
    spectune = [sys.executable, "-m", "spectune.study.cli"]
    env = environment(tmp_path)
    build = [*spectune, "data", "build", "movielens-100k", "--out", str(root / "ml-100k")]
    result = subprocess.run(build, capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "the first modality is 'kg' (not 'image')" in result.stdout
    assert "kg joined as RecBole ships it" in result.stdout
    assert (tmp_path / "cache" / "wheels" / "recbole-1.2.1-py3-none-any.whl").is_file()
    dataset = load_dataset("ml-100k", root)
    assert dataset.modalities == ("kg", "text")
    assert [t.shape[1] for t in dataset.features.values()] == [128, 384]
    train = [
        *spectune, "train", "-d", "ml-100k", "--data-root", str(root), "-g", "-1",
        "--set", "epochs=1", "--out", str(tmp_path / "run" / "result.json"),
    ]  # fmt: skip
    result = subprocess.run(train, capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "model.pt").is_file()


@pytest.mark.slow
def test_make_demo_builds_ml_100k_in_an_empty_data_root(tmp_path: Path) -> None:
    root = tmp_path / "data"
    bin_dir = Path(sys.executable).parent
    command = [
        "make", "-C", str(REPOSITORY), "demo",
        "-o", f"{bin_dir}/spectune",  # the test runs in the installed environment
        f"BIN={bin_dir}",
        f"DATA_ROOT={root}", f"DEMO_DIR={tmp_path / 'demo'}",
        "DEMO_TRIALS=2", "DEMO_EPOCHS=1", "DEMO_SEEDS=1", "SPECTUNE_POSTERS=",
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, env=environment(tmp_path), check=False
    )
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    assert "data build movielens-100k" in result.stdout
    assert load_dataset("ml-100k", root).modalities == ("kg", "text")
    for name in ("best.yaml", "report/index.html", "ablation-report/index.html"):
        assert (tmp_path / "demo" / name).is_file(), name
