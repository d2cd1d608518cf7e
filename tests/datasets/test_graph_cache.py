"""build_graphs: content-hashed cache keys, hits and misses, atomic writes, corrupt files."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from spectune.datasets.cache import Graphs, build_graphs
from spectune.datasets.graphs import knn_graph, user_item_adjacency, user_item_block
from spectune.datasets.mmrec import Dataset, Split
from spectune.datasets.synthetic import TINY, make_synthetic


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return make_synthetic(TINY, seed=1)


def assert_same(a: Graphs, b: Graphs) -> None:
    for x, y in [(a.adjacency, b.adjacency), (a.user_item, b.user_item)] + [
        (a.item_item[m], b.item_item[m]) for m in a.item_item
    ]:
        assert x.shape == y.shape and x.dtype == y.dtype and x.indices.dtype == np.int64
        np.testing.assert_array_equal(x.indptr, y.indptr)
        np.testing.assert_array_equal(x.indices, y.indices)
        np.testing.assert_array_equal(x.data, y.data)
    assert a.item_item.keys() == b.item_item.keys()


def cache_files(directory: Path) -> set[str]:
    return {path.name for path in directory.iterdir()}


def test_without_cache_equals_the_builders(dataset: Dataset) -> None:
    graphs = build_graphs(dataset, 4, None)
    adjacency = user_item_adjacency(dataset.n_users, dataset.n_items, dataset.train)
    np.testing.assert_array_equal(graphs.adjacency.toarray(), adjacency.toarray())
    np.testing.assert_array_equal(
        graphs.user_item.toarray(), user_item_block(adjacency, dataset.n_users).toarray()
    )
    assert list(graphs.item_item) == ["image", "text"]
    for modality, table in dataset.features.items():
        expected = knn_graph(table, 4).toarray()
        np.testing.assert_array_equal(graphs.item_item[modality].toarray(), expected)


def test_second_call_loads_from_cache(
    dataset: Dataset, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="spectune.datasets.cache"):
        first = build_graphs(dataset, 4, tmp_path / "cache")
    assert caplog.text.count("built ") == 3 and "loaded " not in caplog.text
    files = cache_files(tmp_path / "cache")
    assert len(files) == 3 and all(name.endswith(".npz") for name in files)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="spectune.datasets.cache"):
        second = build_graphs(dataset, 4, tmp_path / "cache")
    assert caplog.text.count("loaded ") == 3 and "built " not in caplog.text
    assert cache_files(tmp_path / "cache") == files
    assert_same(first, second)


def test_key_changes_with_features_k_and_train(dataset: Dataset, tmp_path: Path) -> None:
    build_graphs(dataset, 4, tmp_path)
    files = cache_files(tmp_path)

    features = dict(dataset.features)
    features["text"] = features["text"].copy()
    features["text"][7, 3] += 1.0  # one value of one modality
    build_graphs(replace(dataset, features=features), 4, tmp_path)
    assert len(cache_files(tmp_path) - files) == 1
    files = cache_files(tmp_path)

    build_graphs(dataset, {"image": 4, "text": 5}, tmp_path)  # k of one modality
    assert len(cache_files(tmp_path) - files) == 1
    files = cache_files(tmp_path)

    train = Split(dataset.train.users[1:], dataset.train.items[1:])  # one interaction fewer
    build_graphs(replace(dataset, train=train), 4, tmp_path)
    assert len(cache_files(tmp_path) - files) == 1


def test_graphs_with_the_same_inputs_share_a_file(dataset: Dataset, tmp_path: Path) -> None:
    features = {"image": dataset.features["image"], "copy": dataset.features["image"]}
    copy = replace(dataset, modalities=("image", "copy"), features=features)
    graphs = build_graphs(copy, 4, tmp_path)
    assert len(cache_files(tmp_path)) == 2  # user-item + one kNN file for both
    np.testing.assert_array_equal(graphs.item_item["copy"].data, graphs.item_item["image"].data)


def test_no_temporary_files_are_left(dataset: Dataset, tmp_path: Path) -> None:
    build_graphs(dataset, 4, tmp_path)
    assert not [name for name in cache_files(tmp_path) if not name.endswith(".npz")]
    assert not [name for name in cache_files(tmp_path) if name.startswith(".")]


def test_failed_write_leaves_nothing(
    dataset: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(OSError, match="disk full"):
        build_graphs(dataset, 4, tmp_path)
    assert cache_files(tmp_path) == set()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "other graph"])
def test_corrupt_cache_file_is_rebuilt(
    dataset: Dataset, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    reference = build_graphs(dataset, 4, tmp_path)
    files = sorted(tmp_path.iterdir(), key=lambda path: path.stat().st_size)
    victim, other = files[-1], files[0]  # the user-item file is the largest here
    content = victim.read_bytes()
    replacement = {
        "garbage": b"not a zip file at all",
        "truncated": content[: len(content) // 2],
        "empty": b"",
        "other graph": other.read_bytes(),  # a valid file of the wrong shape
    }[damage]
    victim.write_bytes(replacement)
    with caplog.at_level(logging.WARNING, logger="spectune.datasets.cache"):
        rebuilt = build_graphs(dataset, 4, tmp_path)
    assert "rebuilding" in caplog.text and str(victim) in caplog.text
    assert_same(reference, rebuilt)
    assert victim.read_bytes() != replacement  # rewritten


@pytest.mark.parametrize(
    ("knn_k", "message"),
    [
        ({"image": 4}, r"missing \['text'\]"),
        ({"image": 4, "text": 4, "audio": 4}, r"unknown \['audio'\]"),
        (0, "integer in 1..40"),
        (41, "integer in 1..40"),
        (2.5, "integer in 1..40"),
        (True, "integer in 1..40"),
    ],
)
def test_bad_knn_k(dataset: Dataset, knn_k: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_graphs(dataset, knn_k, None)  # type: ignore[arg-type]
