"""Every data rule: one broken toy dataset each; the DataError names the file, where, and the rule.

Data row k of the toy .inter file is line k + 2 (the header is line 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mmrec_toy import HEADER, N_ITEMS, PAIRS, TOY, WriteToy, toy_features, toy_rows

from spectune.datasets.errors import DataError
from spectune.datasets.mmrec import load_dataset


def load_error(root: Path) -> str:
    with pytest.raises(DataError) as error:
        load_dataset(TOY, root)
    return str(error.value)


def inter(root: Path) -> str:
    return str(root / TOY / f"{TOY}.inter")


def feature(root: Path, modality: str = "image") -> str:
    return str(root / TOY / f"{modality}_feat.npy")


def with_field(row: int, column: str, value: str) -> list[list[str]]:
    rows = toy_rows()
    rows[row][HEADER.index(column)] = value
    return rows


def test_data_error_is_a_value_error() -> None:
    assert issubclass(DataError, ValueError)


# --- the .inter file: columns, values, labels (RELIABILITY 15, 16) --------------------------------


@pytest.mark.parametrize("column", ["userID", "itemID", "x_label"])
def test_missing_required_column(write_toy: WriteToy, column: str) -> None:
    keep = [k for k, name in enumerate(HEADER) if name != column]
    root = write_toy(
        header=[HEADER[k] for k in keep], rows=[[row[k] for k in keep] for row in toy_rows()]
    )
    message = load_error(root)
    assert message.startswith(f"{inter(root)} line 1: missing required column {column}")


def test_duplicate_column(write_toy: WriteToy) -> None:
    root = write_toy(header=[*HEADER[:-1], "userID"])
    assert load_error(root) == f"{inter(root)} line 1: column userID appears 2 times in the header"


def test_label_outside_0_1_2(write_toy: WriteToy) -> None:
    root = write_toy(rows=with_field(15, "x_label", "3"))
    assert load_error(root) == f"{inter(root)} line 17: x_label must be 0, 1 or 2, got 3"


def test_label_line_counts_blank_lines(write_toy: WriteToy) -> None:
    lines = ["\t".join(HEADER)] + ["\t".join(row) for row in with_field(3, "x_label", "-1")]
    lines.insert(2, "")  # a blank line 3: the bad row (data row 3) is then line 6
    root = write_toy(text="\n".join(lines) + "\n")
    assert load_error(root) == f"{inter(root)} line 6: x_label must be 0, 1 or 2, got -1"


@pytest.mark.parametrize(
    ("column", "value"),
    [("userID", "a"), ("itemID", "1.5"), ("x_label", "train"), ("userID", ""), ("itemID", "1e3")],
)
def test_non_integer_values(write_toy: WriteToy, column: str, value: str) -> None:
    root = write_toy(rows=with_field(6, column, value))
    assert load_error(root) == f"{inter(root)} line 8: {column} must be an integer, got {value!r}"


def test_integer_beyond_int64(write_toy: WriteToy) -> None:
    root = write_toy(rows=with_field(2, "itemID", "99999999999999999999"))
    assert load_error(root) == (
        f"{inter(root)} line 4: itemID 99999999999999999999 is out of int64 range"
    )


def test_non_integer_in_an_ignored_column_is_fine(write_toy: WriteToy) -> None:
    root = write_toy(rows=with_field(2, "rating", "4.5"))
    assert load_dataset(TOY, root).n_users == 4


@pytest.mark.parametrize("fields", [3, 6])
def test_wrong_field_count(write_toy: WriteToy, fields: int) -> None:
    rows = toy_rows()
    rows[9] = (rows[9] + ["extra"])[:fields]
    root = write_toy(rows=rows)
    assert load_error(root) == (
        f"{inter(root)} line 11: expected 5 tab-separated fields as in the header, got {fields}"
    )


def test_space_separated_file(write_toy: WriteToy) -> None:
    text = "".join(" ".join(fields) + "\n" for fields in [HEADER, *toy_rows()])
    root = write_toy(text=text)
    assert "line 1: missing required column userID" in load_error(root)


@pytest.mark.parametrize("column", ["userID", "itemID"])
def test_negative_ids(write_toy: WriteToy, column: str) -> None:
    root = write_toy(rows=with_field(4, column, "-2"))
    assert load_error(root) == f"{inter(root)} line 6: {column} must be >= 0, got -2"


def test_user_ids_not_contiguous(write_toy: WriteToy) -> None:
    rows = [row if row[0] != "2" else ["5", *row[1:]] for row in toy_rows()]
    root = write_toy(rows=rows)
    assert load_error(root) == (
        f"{inter(root)}: userID must be contiguous 0..5, but 2 ids never appear, first 2"
    )


def test_item_beyond_the_feature_rows(write_toy: WriteToy) -> None:
    root = write_toy(rows=with_field(12, "itemID", str(N_ITEMS)))
    assert load_error(root) == (
        f"{inter(root)} line 14: itemID 6 is beyond the feature rows ({feature(root)} has 6 "
        "rows, so ids must be < 6)"
    )


def test_header_only(write_toy: WriteToy) -> None:
    root = write_toy(rows=[])
    assert load_error(root) == f"{inter(root)}: no interaction rows after the header"


def test_not_utf8(write_toy: WriteToy) -> None:
    root = write_toy(text="userID\titemID\tx_label\n0\t0\t0\xff\n".encode("latin-1"))
    assert load_error(root).startswith(f"{inter(root)}: not UTF-8 text")


@pytest.mark.parametrize(("label", "name"), [(1, "valid"), (2, "test")])
def test_empty_eval_split(write_toy: WriteToy, label: int, name: str) -> None:
    rows = [[*row[:-1], "0" if row[-1] == str(label) else row[-1]] for row in toy_rows()]
    root = write_toy(rows=rows)
    assert load_error(root) == f"{inter(root)}: the {name} split (x_label {label}) is empty"


def test_eval_split_empty_after_dropping_users_without_train(write_toy: WriteToy) -> None:
    rows = [[*row[:-1], "0" if row[-1] == "1" else row[-1]] for row in toy_rows()]
    rows.append(["4", "1", "3", "7", "1"])  # user 4: valid only, no train rows
    root = write_toy(rows=rows)
    assert load_error(root) == (
        f"{inter(root)}: the valid split (x_label 1) is empty after dropping users without "
        "train rows"
    )


def test_user_with_every_item_in_train(write_toy: WriteToy) -> None:
    rows = [*toy_rows(), *([["2", str(i), "1", "1", "0"] for i in range(N_ITEMS)])]
    root = write_toy(rows=rows)
    assert load_error(root) == (
        f"{inter(root)}: userID 2 has all 6 items as train positives, so no negative item can be "
        "sampled for it"
    )


# --- feature tables (RELIABILITY 16, 17, 18) ------------------------------------------------------


def broken_image(table: np.ndarray) -> dict[str, np.ndarray]:
    return {"image_feat.npy": table, "text_feat.npy": toy_features()["text"]}


def test_feature_row_counts_differ(write_toy: WriteToy) -> None:
    text = np.vstack([toy_features()["text"], np.ones((2, 3), dtype=np.float32)])
    root = write_toy(features={"image_feat.npy": toy_features()["image"], "text_feat.npy": text})
    assert load_error(root) == (
        "feature tables must have one row per item, but row counts differ: "
        f"{feature(root)} has 6, {feature(root, 'text')} has 8"
    )


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.bool_, np.complex64, np.longdouble])
def test_feature_dtype_not_float(write_toy: WriteToy, dtype: type) -> None:
    root = write_toy(features=broken_image(np.ones((N_ITEMS, 4), dtype=dtype)))
    assert load_error(root) == (
        f"{feature(root)} (modality image): dtype must be float16, float32 or float64, "
        f"got {np.dtype(dtype)}"
    )


def test_feature_dtype_object(write_toy: WriteToy) -> None:
    table = np.empty((N_ITEMS, 4), dtype=object)
    table[:] = 1.0
    root = write_toy(features=broken_image(table))
    assert load_error(root).startswith(
        f"{feature(root)} (modality image): not a readable .npy file of dtype float16, float32 "
        "or float64: "
    )


@pytest.mark.parametrize("shape", [(N_ITEMS,), (N_ITEMS, 2, 2)])
def test_feature_rank_not_2(write_toy: WriteToy, shape: tuple[int, ...]) -> None:
    root = write_toy(features=broken_image(np.ones(shape, dtype=np.float32)))
    assert load_error(root) == (
        f"{feature(root)} (modality image): must be a 2-D [n_items, d] table, got shape {shape}"
    )


@pytest.mark.parametrize("shape", [(0, 4), (N_ITEMS, 0)])
def test_feature_table_empty(write_toy: WriteToy, shape: tuple[int, int]) -> None:
    root = write_toy(features={"image_feat.npy": np.ones(shape, dtype=np.float32)})
    assert load_error(root) == (
        f"{feature(root)} (modality image): needs at least one row and one column, "
        f"got shape {shape}"
    )


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_feature_not_finite(write_toy: WriteToy, value: float) -> None:
    table = toy_features()["image"].astype(np.float64)
    table[3, 2] = value
    table[4, 0] = value
    root = write_toy(features=broken_image(table))
    assert load_error(root) == (
        f"{feature(root)} (modality image) row 3 (itemID 3), column 2: feature values must be "
        f"finite, got {value}"
    )


def test_feature_overflows_float32(write_toy: WriteToy) -> None:
    table = toy_features()["image"].astype(np.float64)
    table[5, 1] = 1e300
    root = write_toy(features=broken_image(table))
    assert load_error(root) == (
        f"{feature(root)} (modality image) row 5 (itemID 5), column 1: feature values must be "
        "finite after conversion to float32, got inf"
    )


def test_feature_file_not_npy(write_toy: WriteToy) -> None:
    root = write_toy(features={}, extra_files={"image_feat.npy": b"\x93NUMPY garbage"})
    assert load_error(root).startswith(
        f"{feature(root)} (modality image): not a readable .npy file"
    )


def test_feature_file_is_npz(write_toy: WriteToy) -> None:
    root = write_toy(features={})
    np.savez(root / TOY / "image_feat.npz", a=toy_features()["image"])
    (root / TOY / "image_feat.npz").rename(root / TOY / "image_feat.npy")
    assert load_error(root) == (
        f"{feature(root)} (modality image): expected one .npy array, got an .npz archive"
    )


def test_no_modality(write_toy: WriteToy) -> None:
    root = write_toy(features={})
    message = load_error(root)
    assert message.startswith(f"{root / TOY}: no feature table: at least one modality is required")


# --- layout and config file -----------------------------------------------------------------------


def test_missing_inter_file(write_toy: WriteToy) -> None:
    root = write_toy()
    (root / TOY / "toy.inter").unlink()
    assert load_error(root) == f"{root / TOY}: interaction file toy.inter not found"


@pytest.mark.parametrize(
    ("config", "rule"),
    [
        ("colour: red\n", "unknown key 'colour'; allowed keys:"),
        ("- a\n- b\n", "must be a mapping of keys to values, got list"),
        ("modalities: [image]\n", "modalities must be a non-empty mapping"),
        ("modalities: {}\n", "modalities must be a non-empty mapping"),
        ("modalities: {image: 3}\n", "modality 'image' must name a .npy file, got 3"),
        ("modalities: {1: a.npy}\n", "modality names must be non-empty strings, got 1"),
        ("modalities: {audio: audio.npy}\n", "audio.npy of modality 'audio' not found"),
        ("inter_file: [a]\n", "inter_file must be a non-empty file name, got ['a']"),
        ("inter_file: a\ninter_file_name: b\n", "set only one of inter_file and inter_file_name"),
        ("USER_ID_FIELD: user_id\n", "USER_ID_FIELD must be 'userID', got 'user_id'"),
        ("field_separator: ','\n", "field_separator must be '\\t', got ','"),
        (
            "modalities: {image: image_feat.npy}\ntext_feature_file: t.npy\n",
            "set either modalities or text_feature_file, not both",
        ),
        ("modalities: {image: image_feat.npy\n", "not a readable YAML file"),
    ],
)
def test_bad_config_file(write_toy: WriteToy, config: str, rule: str) -> None:
    root = write_toy(extra_files={"spectune.yaml": config})
    message = load_error(root)
    assert message.startswith(f"{root / TOY / 'spectune.yaml'}: ")
    assert rule in message


def test_config_names_a_missing_inter_file(write_toy: WriteToy) -> None:
    root = write_toy(extra_files={"toy.yaml": "inter_file: gone.inter\n"})
    assert load_error(root) == (
        f"{root / TOY}: interaction file gone.inter not found (set in {root / TOY / 'toy.yaml'})"
    )


def test_pairs_fixture_is_consistent() -> None:
    # The toy data itself satisfies every rule the tests above break.
    assert {u for u, _, _ in PAIRS} == set(range(4))
    assert {x for _, _, x in PAIRS} == {0, 1, 2}
