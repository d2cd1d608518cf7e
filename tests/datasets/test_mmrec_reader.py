"""load_dataset and dataset_dir on valid input: the toy dataset, its variants, the real sets."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from mmrec_toy import N_ITEMS, PAIRS, TOY, WriteToy, toy_features, toy_rows

from spectune.datasets.errors import DataError
from spectune.datasets.mmrec import AMAZON_NAMES, Dataset, dataset_dir, load_dataset


def expected_split(label: int) -> tuple[list[int], list[int]]:
    pairs = sorted((u, i) for u, i, x in PAIRS if x == label)
    return [u for u, _ in pairs], [i for _, i in pairs]


def assert_toy(dataset: Dataset) -> None:
    assert (dataset.n_users, dataset.n_items) == (4, N_ITEMS)
    for label, split in enumerate((dataset.train, dataset.valid, dataset.test)):
        users, items = expected_split(label)
        assert split.users.tolist() == users
        assert split.items.tolist() == items
        assert split.users.dtype == np.int64 and split.items.dtype == np.int64
    assert dataset.modalities == ("image", "text")
    for modality, table in toy_features().items():
        loaded = dataset.features[modality]
        assert loaded.dtype == np.float32 and loaded.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(loaded, table)
    assert dataset.dropped_eval_users == 0


def test_toy_dataset_loads(write_toy: WriteToy) -> None:
    root = write_toy()
    dataset = load_dataset(TOY, root)
    assert dataset.name == TOY and dataset.path == root / TOY
    assert_toy(dataset)


def test_file_variants_read_the_same(write_toy: WriteToy) -> None:
    # Byte order mark, CRLF, blank lines, reordered and extra columns, spaces around numbers.
    header = ["x_label", "comment", "itemID", "userID"]
    lines = ["\ufeff" + "\t".join(header)]
    for k, (u, i, x) in enumerate(PAIRS):
        lines.append(f"{x}\tnote {k}\t {i}\t{u}")
        if k == 4:
            lines.append("")
    root = write_toy(text="\r\n".join(lines) + "\r\n\r\n")
    assert_toy(load_dataset(TOY, root))


def test_feature_dtypes_are_converted_to_float32(write_toy: WriteToy) -> None:
    tables = toy_features()
    root = write_toy(
        features={
            "image_feat.npy": tables["image"].astype(np.float16),
            "text_feat.npy": np.asfortranarray(tables["text"].astype(np.float64)),
        }
    )
    dataset = load_dataset(TOY, root)
    for modality, table in tables.items():
        loaded = dataset.features[modality]
        assert loaded.dtype == np.float32 and loaded.flags["C_CONTIGUOUS"]
        np.testing.assert_allclose(loaded, table, rtol=1e-3)


def test_zero_and_duplicate_feature_rows_are_allowed(
    write_toy: WriteToy, caplog: pytest.LogCaptureFixture
) -> None:
    image = toy_features()["image"]
    image[1] = 0.0
    image[4] = 0.0
    image[5] = image[2]
    root = write_toy(features={"image_feat.npy": image})
    with caplog.at_level(logging.WARNING):
        dataset = load_dataset(TOY, root)
    assert dataset.modalities == ("image",)
    assert "2 all-zero rows" in caplog.text


def test_duplicate_train_rows_are_dropped_and_logged(
    write_toy: WriteToy, caplog: pytest.LogCaptureFixture
) -> None:
    rows = toy_rows()
    rows += [rows[0], rows[0], rows[5]]
    with caplog.at_level(logging.WARNING):
        dataset = load_dataset(TOY, write_toy(rows=rows))
    assert_toy(dataset)
    assert "dropped 3 duplicate train (user, item) rows" in caplog.text


def test_users_without_train_rows_are_dropped_and_counted(
    write_toy: WriteToy, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [
        *toy_rows(),
        ["4", "1", "5", "9", "1"],
        ["4", "2", "5", "9", "2"],
        ["5", "3", "5", "9", "2"],
    ]
    with caplog.at_level(logging.WARNING):
        dataset = load_dataset(TOY, write_toy(rows=rows))
    assert dataset.n_users == 6
    assert dataset.dropped_eval_users == 2
    assert 4 not in dataset.valid.users and 5 not in dataset.test.users
    assert len(dataset.valid) == 4 and len(dataset.test) == 4
    assert "valid/test rows of 2 users that have no train interactions" in caplog.text


def test_items_without_interactions_inside_the_feature_rows_are_allowed(
    write_toy: WriteToy,
) -> None:
    tables = {f"{m}_feat.npy": np.vstack([t, t[:3]]) for m, t in toy_features().items()}
    dataset = load_dataset(TOY, write_toy(features=tables))
    assert dataset.n_items == N_ITEMS + 3


def test_eval_pairs_that_are_train_pairs_are_logged(
    write_toy: WriteToy, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [*toy_rows(), ["0", "0", "4", "9", "2"]]
    with caplog.at_level(logging.WARNING):
        load_dataset(TOY, write_toy(rows=rows))
    assert "1 test (user, item) pairs are also train pairs" in caplog.text


def test_config_file_sets_modalities_and_their_order(write_toy: WriteToy) -> None:
    tables = toy_features()
    root = write_toy(
        features={"a.npy": tables["image"], "b.npy": tables["text"]},
        extra_files={"spectune.yaml": "modalities:\n  text: b.npy\n  poster: a.npy\n"},
    )
    dataset = load_dataset(TOY, root)
    assert dataset.modalities == ("text", "poster")
    np.testing.assert_array_equal(dataset.features["poster"], tables["image"])


def test_named_yaml_with_inter_file(write_toy: WriteToy) -> None:
    root = write_toy(extra_files={"toy.yaml": "inter_file: other.inter\n"})
    (root / TOY / "toy.inter").rename(root / TOY / "other.inter")
    assert_toy(load_dataset(TOY, root))


def test_spectune_yaml_wins_over_named_yaml(write_toy: WriteToy) -> None:
    root = write_toy(
        extra_files={"spectune.yaml": "modalities: {text: text_feat.npy}\n", "toy.yaml": "x: 1\n"}
    )
    assert load_dataset(TOY, root).modalities == ("text",)


def test_mmrec_dataset_yaml_is_understood(write_toy: WriteToy) -> None:
    mmrec_yaml = (
        "USER_ID_FIELD: userID\nITEM_ID_FIELD: itemID\nTIME_FIELD: timestamp\n"
        "inter_file_name: toy.inter\nvision_feature_file: image_feat.npy\n"
        'text_feature_file: text_feat.npy\nfield_separator: "\\t"\n'
    )
    assert_toy(load_dataset(TOY, write_toy(extra_files={"toy.yaml": mmrec_yaml})))


def test_only_the_present_default_modalities_are_used(write_toy: WriteToy) -> None:
    root = write_toy(features={"text_feat.npy": toy_features()["text"]})
    assert load_dataset(TOY, root).modalities == ("text",)


@pytest.mark.parametrize("name", AMAZON_NAMES)
def test_missing_amazon_dataset_says_where_to_get_it(name: str, tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        dataset_dir(name, tmp_path)
    message = str(error.value)
    assert str(tmp_path / name) in message
    assert "Google Drive" in message and "Baby/Sports/Elec" in message and "MicroLens" in message


def test_missing_dataset_lists_the_available_ones(write_toy: WriteToy) -> None:
    root = write_toy()
    write_toy(name="other")
    (root / "not-a-dataset").mkdir()
    with pytest.raises(DataError) as error:
        load_dataset("ml-20m", root)
    message = str(error.value)
    assert f"no dataset directory {root / 'ml-20m'} holding ml-20m.inter" in message
    assert message.endswith("other, toy")


def test_missing_data_root_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a directory"):
        dataset_dir("toy", tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "..\\x"])
def test_dataset_name_must_be_a_plain_directory_name(name: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="plain directory name"):
        dataset_dir(name, tmp_path)


def require(path: Path) -> Path:
    if not path.is_dir():
        pytest.fail(f"{path} is absent: these tests read the real datasets beside the repository")
    return path


def test_ml_100k(shared_data: Path) -> None:
    dataset = load_dataset("ml-100k", require(shared_data / "ml-100k").parent)
    assert (dataset.n_users, dataset.n_items) == (943, 1343)
    assert (len(dataset.train), len(dataset.valid), len(dataset.test)) == (79729, 9524, 9962)
    assert dataset.modalities == ("image", "text")
    assert dataset.features["image"].shape == (1343, 1280)
    assert dataset.features["text"].shape == (1343, 384)
    assert dataset.dropped_eval_users == 0


def test_ml_1m(shared_data: Path) -> None:
    dataset = load_dataset("ml-1m", require(shared_data / "ml-1m").parent)
    assert (dataset.n_users, dataset.n_items) == (6040, 3412)
    assert (len(dataset.train), len(dataset.valid), len(dataset.test)) == (802031, 97305, 100209)
    train_keys = dataset.train.users * dataset.n_items + dataset.train.items
    assert np.all(np.diff(train_keys) > 0)  # sorted by (user, item), unique
