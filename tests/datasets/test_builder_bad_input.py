"""Bad builder input: each error names the file, the line (header = line 1) and the rule, and the
output folder is never created. Stand-in encoders (the checks happen before any encoding)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from builder_support import stand_in_encoders, write_lines, write_png

from spectune.datasets.builder import BuildOptions, build_dataset
from spectune.datasets.errors import DataError
from spectune.datasets.movielens import ML_1M, PresetInputs, preset_sources, read_movies
from spectune.datasets.raw_tables import parse_table
from spectune.datasets.sources import read_interactions, read_items

N_USERS, N_ITEMS = 6, 6


def good_interactions() -> list[str]:
    lines = ["user_id\titem_id\trating\ttimestamp"]
    for u in range(N_USERS):
        lines += [f"{u}\t{i}\t4\t{1000 + 10 * u + i}" for i in range(N_ITEMS)]
    return lines


def good_items(images: Path) -> list[str]:
    for i in range(N_ITEMS):
        write_png(images / f"{i}.png", i)
    return ["item_id\ttitle\timage"] + [f"{i}\tMovie {i}\t{i}.png" for i in range(N_ITEMS)]


def run_build(tmp_path: Path, inter: list[str], items: list[str]) -> Path:
    """Build into tmp_path/data/out; assert that nothing was written when it raises."""
    out = tmp_path / "data" / "out"
    try:
        build_dataset(
            read_interactions(write_lines(tmp_path / "in.tsv", inter)),
            read_items(write_lines(tmp_path / "items.tsv", items), ["title"], tmp_path / "img"),
            out,
            stand_in_encoders(),
            BuildOptions(),
        )
    except DataError:
        assert not (tmp_path / "data").exists()
        raise
    return out


def test_the_good_input_builds(tmp_path: Path) -> None:
    out = run_build(tmp_path, good_interactions(), good_items(tmp_path / "img"))
    assert (out / "out.inter").is_file()


def test_interaction_of_an_unknown_item(tmp_path: Path) -> None:
    inter = good_interactions()
    inter[8] = "1\t77\t4\t1000"
    with pytest.raises(DataError, match=r"in\.tsv line 9: item '77' is not in the items"):
        run_build(tmp_path, inter, good_items(tmp_path / "img"))


def test_duplicate_item_id(tmp_path: Path) -> None:
    items = good_items(tmp_path / "img")
    items.append("3\tAnother 3\t3.png")
    with pytest.raises(
        DataError, match=r"items\.tsv line 8: duplicate item id '3' \(first on line 5\)"
    ):
        run_build(tmp_path, good_interactions(), items)


def test_missing_text(tmp_path: Path) -> None:
    items = good_items(tmp_path / "img")
    items[3] = "2\t \t2.png"
    with pytest.raises(DataError, match=r"items\.tsv line 4: item '2' has no text"):
        run_build(tmp_path, good_interactions(), items)


def test_missing_text_column(tmp_path: Path) -> None:
    items = [line.replace("title", "name", 1) for line in good_items(tmp_path / "img")]
    with pytest.raises(DataError, match=r"items\.tsv line 1: no column 'title' \(--text-fields\)"):
        run_build(tmp_path, good_interactions(), items)


def test_unknown_text_field_lists_the_columns_of_the_items_file(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "items.tsv", good_items(tmp_path / "img"))
    with pytest.raises(DataError) as error:
        read_items(path, ["title", "nosuchfield"], tmp_path / "img")
    assert str(error.value) == (
        f"{path} line 1: no column 'nosuchfield' (--text-fields); "
        "the columns are item_id, title, image"
    )


def test_a_missing_column_of_one_accepted_name_is_named_once() -> None:
    table = parse_table(b"a\tb\n1\t2\n", "t.tsv")
    with pytest.raises(DataError) as error:
        table.column(("item_id",), "item id")
    assert (
        str(error.value) == "t.tsv line 1: no item id column; expected item_id (header has: a, b)"
    )


def test_images_folder_that_is_missing_or_a_file(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "items.tsv", good_items(tmp_path / "img"))
    with pytest.raises(DataError) as error:
        read_items(path, ["title"], tmp_path / "nosuchdir")
    assert str(error.value) == f"--images {tmp_path / 'nosuchdir'}: no such directory"
    with pytest.raises(DataError) as error:
        read_items(path, ["title"], path)
    assert str(error.value) == f"--images {path}: not a directory"


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n broken"])
def test_unreadable_image(tmp_path: Path, content: bytes) -> None:
    items = good_items(tmp_path / "img")
    (tmp_path / "img" / "4.png").write_bytes(content)
    expected = r"items\.tsv line 6: the image of item '4', .*img/4\.png, cannot be read as an image"
    with pytest.raises(DataError, match=expected):
        run_build(tmp_path, good_interactions(), items)


@pytest.mark.parametrize(("image_format", "suffix"), [("JPEG", "jpg"), ("PNG", "png")])
def test_truncated_image_names_the_items_file_and_line(
    tmp_path: Path, image_format: str, suffix: str
) -> None:
    from PIL import Image

    items = good_items(tmp_path / "img")
    items[5] = f"4\tMovie 4\t4.{suffix}"
    pixels = np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = tmp_path / "img" / f"4.{suffix}"
    Image.fromarray(pixels).save(path, format=image_format)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # the header survives
    expected = (
        rf"items\.tsv line 6: the image of item '4', .*img/4\.{suffix}, cannot be read as an "
        r"image: image file is truncated"
    )
    with pytest.raises(DataError, match=expected):
        run_build(tmp_path, good_interactions(), items)


def test_no_item_has_an_image(tmp_path: Path) -> None:
    items = [line.replace(".png", ".jpg") for line in good_items(tmp_path / "img")]
    with pytest.raises(
        DataError, match=r"no interactions left: none of the 6 items .* has an image"
    ):
        run_build(tmp_path, good_interactions(), items)


def test_empty_after_k_core(tmp_path: Path) -> None:
    inter = good_interactions()[:1] + [f"{u}\t{u % 6}\t4\t{u}" for u in range(40)]
    with pytest.raises(DataError, match="no interactions left after 5-core filtering"):
        run_build(tmp_path, inter, good_items(tmp_path / "img"))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "1\t2\t4\tyesterday",
            r"in\.tsv line 4: timestamp must be a finite number, got 'yesterday'",
        ),
        ("1\t2\tgood\t1000", r"in\.tsv line 4: rating must be a finite number, got 'good'"),
        ("1\t2\t4", r"in\.tsv line 4: expected 4 tab-separated fields as in the header, got 3"),
        ("\t2\t4\t1000", r"in\.tsv line 4: user_id is empty"),
    ],
)
def test_malformed_interaction_row(tmp_path: Path, line: str, message: str) -> None:
    inter = good_interactions()
    inter[3] = line
    with pytest.raises(DataError, match=message):
        run_build(tmp_path, inter, good_items(tmp_path / "img"))


def test_interactions_without_a_timestamp_column(tmp_path: Path) -> None:
    inter = [line.rsplit("\t", 1)[0] for line in good_interactions()]
    with pytest.raises(DataError, match=r"in\.tsv line 1: no timestamp column; expected one of"):
        run_build(tmp_path, inter, good_items(tmp_path / "img"))


def test_interactions_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "in.tsv"
    path.write_bytes(b"user_id\titem_id\ttimestamp\n1\t2\t3\n1\t\xe9\t4\n")
    with pytest.raises(DataError, match=r"in\.tsv line 3: not utf-8-sig text"):
        read_interactions(path)


def test_movies_dat_errors(tmp_path: Path) -> None:
    movies = tmp_path / "movies.dat"
    movies.write_bytes(b"1::Toy Story (1995)::Comedy\n2::Jumanji (1995)\n")
    with pytest.raises(DataError, match=re.escape(f"{movies} line 2: expected MovieID::Title")):
        read_movies(movies)
    movies.write_bytes(b"1::Toy Story (1995)::Comedy\n1::Jumanji (1995)::Fantasy\n")
    with pytest.raises(DataError, match=r"line 2: duplicate MovieID '1' \(first on line 1\)"):
        read_movies(movies)


def test_ml_1m_rating_of_a_title_not_in_movies_dat(tmp_path: Path) -> None:
    movies = tmp_path / "movies.dat"
    movies.write_bytes(
        "1::Toy Story (1995)::Comedy\n2::Vita è bella, La (1997)::Drama\n".encode("latin-1")
    )
    ratings = write_lines(
        tmp_path / "r.inter",
        [
            "user_id:token\titem_id:token\trating:float\ttimestamp:float",
            "1m_1\tToy Story (1995)\t5\t10",
            "1m_1\tVita è bella, La (1997)\t5\t11",  # UTF-8 here, latin-1 in movies.dat: equal
            "1m_2\tJumanji (1995)\t3\t12",
        ],
    )
    inputs = PresetInputs(ratings, movies, tmp_path, tmp_path / "cache")
    with pytest.raises(
        DataError, match=r"r\.inter line 4: item 'Jumanji \(1995\)' matches no title"
    ):
        preset_sources(ML_1M, inputs)
