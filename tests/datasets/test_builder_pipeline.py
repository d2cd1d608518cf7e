"""The dataset builder's pipeline on small raw files, with deterministic stand-in encoders.

These tests check the logic (reading, filtering, k-core, re-indexing, split, files, atomic
output, the kg modality), not the features: the stand-ins hash their input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from builder_support import (
    STAND_IN_IMAGE_DIM,
    STAND_IN_TEXT_DIM,
    stand_in_encoders,
    write_lines,
    write_png,
)

from spectune.datasets.builder import BUILD_FILE, BuildOptions, BuildReport, build_dataset
from spectune.datasets.errors import DataError
from spectune.datasets.mmrec import load_dataset
from spectune.datasets.sources import Interactions, ItemTable, read_interactions, read_items

USERS = ["A", "B", "C", "D", "E", "F"]
CORE_ITEMS = ["3", "10", "2", "7", "11", "12"]  # itemIDs in numeric order: 2 3 7 10 11 12


def interaction_rows() -> list[tuple[str, str, int, int]]:
    """(user, item, rating, timestamp). u9 and item 25 fall out of the 5-core in two passes;
    items 9 (no image name) and 4 (image file missing) are dropped before it."""
    rows = []
    for u, user in enumerate(USERS):
        for j, item in enumerate(CORE_ITEMS):
            rows.append((user, item, j % 5 + 1, 5000 - 100 * j + u))
    rows[4] = ("A", "11", 5, rows[5][3])  # A rates 11 and 12 at the same second
    rows += [(user, "25", 4, 9000) for user in ["A", "B", "C", "D", "u9"]]
    rows += [("u9", "3", 3, 9001), ("u9", "10", 3, 9002)]
    rows += [("A", "9", 2, 7000), ("B", "4", 2, 7000)]
    return rows


def write_raw(folder: Path, sep: str = "\t", suffix: str = ".tsv", typed: bool = False) -> Path:
    names = ["user_id", "item_id", "rating", "timestamp"]
    if typed:
        names = [f"{n}:{t}" for n, t in zip(names, ["token", "token", "float", "float"])]
    lines = [sep.join(names)] + [sep.join(map(str, row)) for row in interaction_rows()]
    return write_lines(folder / f"interactions{suffix}", lines)


def write_items(folder: Path) -> Path:
    lines = ["item_id,title,genre,image"]
    for k, item in enumerate([*CORE_ITEMS, "25"]):
        write_png(folder / "images" / f"poster-{item}.png", k)
        title = '"Heat, The ""Director\'s cut"""' if item == "7" else f"Movie {item}"
        lines.append(f"{item},{title},Drama,poster-{item}.png")
    lines += ["9,Movie 9,Comedy,", "4,Movie 4,Comedy,poster-4.png"]
    return write_lines(folder / "items.csv", lines)


@pytest.fixture
def raw(tmp_path: Path) -> tuple[Path, Path, Path]:
    source = tmp_path / "raw"
    return write_raw(source), write_items(source), source / "images"


def build(raw: tuple[Path, Path, Path], out: Path, **options: int | bool) -> BuildReport:
    inter, items, images = raw
    return build_dataset(
        read_interactions(inter),
        read_items(items, ["title", "genre"], images),
        out,
        stand_in_encoders(),
        BuildOptions(**options),  # type: ignore[arg-type]
    )


def read_tsv(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


def test_build_writes_a_loadable_mmrec_folder(raw: tuple[Path, Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "data" / "toy"
    report = build(raw, out)
    files = [BUILD_FILE, "image_feat.npy", "items.tsv", "spectune.yaml", "text_feat.npy"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*files, "toy.inter", "users.tsv"])
    config = yaml.safe_load((out / "spectune.yaml").read_text())
    assert config == {
        "inter_file": "toy.inter",
        "modalities": {"image": "image_feat.npy", "text": "text_feat.npy"},
    }
    dataset = load_dataset("toy", out.parent)
    assert (dataset.n_users, dataset.n_items) == (6, 6)
    assert dataset.features["image"].shape == (6, STAND_IN_IMAGE_DIM)
    assert dataset.features["text"].shape == (6, STAND_IN_TEXT_DIM)
    assert report.kcore_passes == 3  # u9 goes, then item 25, then nothing changes
    assert report.split_sizes == (24, 6, 6)  # 6 interactions each: train 4, valid 1, test 1
    assert report.dropped[0].startswith("2 items without an image file dropped with their 2")
    assert (
        report.dropped[1]
        == "5-core filtering (3 passes) dropped 7 interactions, 1 users and 1 items"
    )
    # nothing left over beside the output
    assert [p.name for p in out.parent.iterdir()] == ["toy"]


def test_ids_are_contiguous_in_ascending_original_order(
    raw: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "toy"
    build(raw, out)
    items = read_tsv(out / "items.tsv")
    assert items[0] == ["itemID", "item_id", "title", "genre", "image"]
    assert [row[:2] for row in items[1:]] == [
        ["0", "2"], ["1", "3"], ["2", "7"], ["3", "10"], ["4", "11"], ["5", "12"]
    ]  # fmt: skip
    assert items[3][2] == 'Heat, The "Director\'s cut"'  # CSV quoting undone
    assert read_tsv(out / "users.tsv") == [["userID", "orig_userID"]] + [
        [str(k), user] for k, user in enumerate(USERS)
    ]
    # feature row i belongs to itemID i: the stand-in image row hashes that item's poster
    dataset = load_dataset("toy", tmp_path)
    single = stand_in_encoders().image([raw[2] / "poster-10.png"])
    np.testing.assert_array_equal(dataset.features["image"][3], single[0])


def test_each_user_is_split_in_time_order(raw: tuple[Path, Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "toy"
    build(raw, out)
    rows = read_tsv(out / "toy.inter")
    assert rows[0] == ["userID", "itemID", "rating", "timestamp", "x_label"]
    user_a = [row for row in rows[1:] if row[0] == "0"]
    # A's times: 12 and 11 at 4500 (tie: lower itemID first), 7 at 4700, 2 at 4800, 10 at 4900,
    # 3 at 5000; n = 6 < 10: train 4, valid 1, test 1.
    assert user_a == [
        ["0", "4", "5", "4500", "0"],
        ["0", "5", "1", "4500", "0"],
        ["0", "2", "4", "4700", "0"],
        ["0", "0", "3", "4800", "0"],
        ["0", "3", "2", "4900", "1"],
        ["0", "1", "1", "5000", "2"],
    ]
    keys = [(int(r[0]), int(r[3]), int(r[1])) for r in rows[1:]]
    assert keys == sorted(keys)


@pytest.mark.parametrize(
    ("sep", "suffix", "typed"),
    [(",", ".csv", False), ("\t", ".inter", True), ("\t", ".txt", False)],
)
def test_interaction_formats_give_the_same_dataset(
    tmp_path: Path, sep: str, suffix: str, typed: bool
) -> None:
    reference = tmp_path / "reference" / "toy"
    items = write_items(tmp_path / "raw")
    build((write_raw(tmp_path / "raw"), items, tmp_path / "raw" / "images"), reference)
    other = tmp_path / "other" / "toy"
    inter = write_raw(tmp_path / "raw2", sep=sep, suffix=suffix, typed=typed)
    build((inter, items, tmp_path / "raw" / "images"), other)
    for name in ("toy.inter", "items.tsv", "users.tsv"):
        assert (other / name).read_bytes() == (reference / name).read_bytes()


def test_without_rating_and_images_builds_text_only(tmp_path: Path) -> None:
    lines = ["user,item,time"] + [f"{u},{i},{t}" for u, i, _, t in interaction_rows()]
    inter = write_lines(tmp_path / "ratings.csv", lines)
    items = write_items(tmp_path / "raw")
    out = tmp_path / "toy"
    calls: list[str] = []
    build_dataset(
        read_interactions(inter),
        read_items(items, ["title"], None),
        out,
        stand_in_encoders(calls),
        BuildOptions(),
    )
    assert calls == ["text"]
    assert read_tsv(out / "toy.inter")[0] == ["userID", "itemID", "timestamp", "x_label"]
    dataset = load_dataset("toy", tmp_path)
    assert dataset.modalities == ("text",)
    assert dataset.n_items == 6  # 9 and 4 are kept without images; 25 and 9/4 fall in the core


def test_existing_output_is_refused_then_replaced_with_overwrite(
    raw: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "toy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="already exists; remove it or pass --overwrite"):
        build(raw, out)
    assert (out / "keep.txt").read_text() == "mine"
    build(raw, out, overwrite=True)
    assert not (out / "keep.txt").exists()
    assert (out / "toy.inter").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_failing_encoder_leaves_nothing_behind(
    raw: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    inter, items, images = raw
    encoders = stand_in_encoders()

    def broken(paths: object) -> np.ndarray:
        raise DataError("image encoder failed")

    out = tmp_path / "new-root" / "toy"
    with pytest.raises(DataError, match="image encoder failed"):
        build_dataset(
            read_interactions(inter),
            read_items(items, ["title"], images),
            out,
            type(encoders)(text=encoders.text, image=broken),
            BuildOptions(),
        )
    assert not (tmp_path / "new-root").exists()  # the parent it created is removed too


def test_k_core_and_split_options(raw: tuple[Path, Path, Path], tmp_path: Path) -> None:
    report = build(raw, tmp_path / "k3" / "toy", k_core=3)
    assert report.n_users == 7  # u9 keeps 3 interactions (25, 3, 10) in the 3-core
    with pytest.raises(ValueError, match="k_core must be >= 3"):
        BuildOptions(k_core=2)


def kg_items(tokens: list[list[str]]) -> ItemTable:
    ids = [str(k) for k in range(len(tokens))]
    return ItemTable(
        source="items.kg",
        ids=ids,
        lines=list(range(2, len(ids) + 2)),
        texts=[f"item {i}" for i in ids],
        columns={"id": ids},
        kg_tokens=tokens,
    )


def test_kg_modality_is_seeded_tfidf_svd_and_comes_first(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vocabulary = [f"rel{r}=e{e}" for r in range(3) for e in range(8)]
    tokens = [list(rng.choice(vocabulary, size=5)) for _ in range(12)]
    tokens[7] = []  # no triples: dropped like an item without a poster
    users, items, times = [], [], []
    for u in range(10):
        for k, i in enumerate(rng.choice(12, size=8, replace=False)):
            users.append(f"{u}")
            items.append(str(i))
            times.append(float(k))
    interactions = Interactions("x.inter", users, items, np.array(times), None, list(range(80)))
    reports = []
    for name in ("a", "b"):
        reports.append(
            build_dataset(
                interactions,
                kg_items(tokens),
                tmp_path / name / "kg",
                stand_in_encoders(),
                BuildOptions(kg_dim=4, seed=7, k_core=3),
            )
        )
    assert reports[0].modalities == (("kg", 4), ("text", STAND_IN_TEXT_DIM))
    assert any("without knowledge-graph triples" in line for line in reports[0].dropped)
    a, b = (np.load(tmp_path / name / "kg" / "kg_feat.npy") for name in "ab")
    assert a.dtype == np.float32 and a.shape[1] == 4
    np.testing.assert_array_equal(a, b)
    assert load_dataset("kg", tmp_path / "a").modalities == ("kg", "text")
    with pytest.raises(DataError, match="fewer SVD components than items and distinct tokens"):
        build_dataset(
            interactions,
            kg_items(tokens),
            tmp_path / "d" / "kg",
            stand_in_encoders(),
            BuildOptions(kg_dim=50, k_core=3),
        )
    assert not (tmp_path / "d").exists()
