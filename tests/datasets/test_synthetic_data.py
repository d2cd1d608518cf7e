"""Synthetic datasets: exact shapes, split rule, determinism, learnable structure, round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from spectune.datasets.mmrec import Dataset, load_dataset
from spectune.datasets.synthetic import (
    BABY,
    CLOTHING,
    TINY,
    SyntheticShape,
    make_synthetic,
    write_mmrec,
)

SMALL = SyntheticShape(500, 300, 5000, (("image", 16), ("text", 8)), "synthetic-small")
# Every user needs all 10 items: exercises the uniform fill-up after the sampling rounds.
FULL = SyntheticShape(3, 10, 30, (("image", 4),), "synthetic-full")


def all_pairs(dataset: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    splits = (dataset.train, dataset.valid, dataset.test)
    users = np.concatenate([s.users for s in splits])
    items = np.concatenate([s.items for s in splits])
    labels = np.concatenate([np.full(len(s), label) for label, s in enumerate(splits)])
    return users, items, labels


def assert_valid(dataset: Dataset, shape: SyntheticShape) -> None:
    assert (dataset.n_users, dataset.n_items) == (shape.n_users, shape.n_items)
    users, items, labels = all_pairs(dataset)
    assert len(users) == shape.n_interactions
    assert users.dtype == np.int64 and items.dtype == np.int64
    assert len(np.unique(users * shape.n_items + items)) == len(users)  # no pair twice
    assert items.min() >= 0 and items.max() < shape.n_items
    counts = np.bincount(users, minlength=shape.n_users)
    assert counts.min() >= 5
    # The data README's split rule, per user.
    n_valid = np.bincount(users[labels == 1], minlength=shape.n_users)
    n_test = np.bincount(users[labels == 2], minlength=shape.n_users)
    n_eval = np.where(counts < 10, 2, counts // 5)
    np.testing.assert_array_equal(n_valid, np.where(counts < 10, 1, n_eval // 2))
    np.testing.assert_array_equal(n_test, n_eval - n_valid)
    for split in (dataset.train, dataset.valid, dataset.test):
        keys = split.users * shape.n_items + split.items
        assert np.all(np.diff(keys) > 0)  # sorted by (user, item)
    assert dataset.modalities == tuple(m for m, _ in shape.feature_dims)
    for modality, width in shape.feature_dims:
        table = dataset.features[modality]
        assert table.shape == (shape.n_items, width) and table.dtype == np.float32
        assert table.flags["C_CONTIGUOUS"] and np.isfinite(table).all()
    assert dataset.dropped_eval_users == 0


@pytest.mark.parametrize("shape", [TINY, SMALL, FULL])
def test_exact_shape_and_split_rule(shape: SyntheticShape) -> None:
    assert_valid(make_synthetic(shape), shape)


def test_baby_shape() -> None:
    dataset = make_synthetic(BABY)
    assert_valid(dataset, BABY)
    assert (dataset.features["image"] >= 0).all()  # like CNN activations
    norms = np.linalg.norm(dataset.features["text"], axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)  # like sentence embeddings


def test_clothing_shape() -> None:
    assert_valid(make_synthetic(CLOTHING), CLOTHING)


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b, c = make_synthetic(SMALL, seed=3), make_synthetic(SMALL, seed=3), make_synthetic(SMALL)
    for x, y in zip(all_pairs(a), all_pairs(b), strict=True):
        np.testing.assert_array_equal(x, y)
    for modality in a.modalities:
        np.testing.assert_array_equal(a.features[modality], b.features[modality])
    assert not np.array_equal(a.train.items, c.train.items)


def recall_at(scores: np.ndarray, dataset: Dataset, k: int) -> float:
    train = np.zeros((dataset.n_users, dataset.n_items), dtype=bool)
    train[dataset.train.users, dataset.train.items] = True
    test = np.zeros_like(train)
    test[dataset.test.users, dataset.test.items] = True
    scores = np.where(train, -np.inf, scores)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(test, top, axis=1).sum(axis=1)
    return float((hits / test.sum(axis=1)).mean())


def test_personalised_recommender_beats_popularity() -> None:
    dataset = make_synthetic(SMALL)
    r = sp.csr_matrix(
        (np.ones(len(dataset.train)), (dataset.train.users, dataset.train.items)),
        shape=(dataset.n_users, dataset.n_items),
    )
    popularity = np.asarray(r.sum(axis=0)).ravel()
    cooccurrence = (r.T @ r).toarray()
    np.fill_diagonal(cooccurrence, 0)
    cosine = cooccurrence / np.maximum(np.sqrt(np.outer(popularity, popularity)), 1)
    item_knn = np.asarray(r @ cosine)
    pop = recall_at(np.tile(popularity, (dataset.n_users, 1)), dataset, 20)
    personal = recall_at(item_knn, dataset, 20)
    assert personal > 1.5 * pop, (personal, pop)


def test_feature_neighbours_share_interactions() -> None:
    # Items close in feature space are co-consumed more often than random pairs.
    dataset = make_synthetic(SMALL)
    r = np.zeros((dataset.n_users, dataset.n_items))
    r[dataset.train.users, dataset.train.items] = 1.0
    cooccurrence = r.T @ r
    unit = dataset.features["image"] / np.linalg.norm(dataset.features["image"], axis=1)[:, None]
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity.argmax(axis=1)
    near = cooccurrence[np.arange(dataset.n_items), nearest].mean()
    off_diagonal = cooccurrence.sum() - np.trace(cooccurrence)
    overall = off_diagonal / (dataset.n_items * (dataset.n_items - 1))
    assert near > 2 * overall, (near, overall)


def assert_round_trip(dataset: Dataset, directory: Path) -> Dataset:
    assert write_mmrec(dataset, directory) == directory
    loaded = load_dataset(directory.name, directory.parent)
    assert loaded.name == dataset.name and loaded.path == directory
    assert (loaded.n_users, loaded.n_items) == (dataset.n_users, dataset.n_items)
    for name in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(loaded, name).users, getattr(dataset, name).users)
        np.testing.assert_array_equal(getattr(loaded, name).items, getattr(dataset, name).items)
    assert loaded.modalities == dataset.modalities
    for modality in dataset.modalities:
        np.testing.assert_array_equal(loaded.features[modality], dataset.features[modality])
    assert loaded.dropped_eval_users == 0
    return loaded


def test_round_trip_default_modalities(tmp_path: Path) -> None:
    dataset = make_synthetic(TINY)
    assert_round_trip(dataset, tmp_path / dataset.name)
    written = {path.name for path in (tmp_path / dataset.name).iterdir()}
    assert written == {"synthetic-tiny.inter", "image_feat.npy", "text_feat.npy"}


@pytest.mark.parametrize("dims", [(("text", 5), ("image", 3)), (("audio", 4),), (("text", 6),)])
def test_round_trip_other_modalities(tmp_path: Path, dims: tuple[tuple[str, int], ...]) -> None:
    shape = SyntheticShape(30, 20, 200, dims, "custom")
    dataset = make_synthetic(shape, seed=5)
    assert_round_trip(dataset, tmp_path / "custom")
    has_config = (tmp_path / "custom" / "spectune.yaml").exists()
    assert has_config == (dims != (("text", 6),))


def test_rewriting_with_fewer_modalities_still_round_trips(tmp_path: Path) -> None:
    # A stale text_feat.npy in the folder must not become a modality of the new dataset.
    write_mmrec(make_synthetic(TINY), tmp_path / "data")
    shape = SyntheticShape(60, 40, 600, (("image", 8),), "data")
    assert_round_trip(make_synthetic(shape), tmp_path / "data")


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (SyntheticShape(10, 4, 50, (("image", 2),)), "n_items >= 5"),
        (SyntheticShape(10, 20, 49, (("image", 2),)), "n_interactions must be in 50..200"),
        (SyntheticShape(10, 20, 201, (("image", 2),)), "n_interactions must be in 50..200"),
        (SyntheticShape(10, 20, 60, ()), "at least one modality"),
        (SyntheticShape(10, 20, 60, (("a", 2), ("a", 3))), "unique names"),
        (SyntheticShape(10, 20, 60, (("a", 0),)), "widths must be >= 1"),
    ],
)
def test_bad_shapes(shape: SyntheticShape, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_synthetic(shape)


def test_modality_names_must_suit_file_names(tmp_path: Path) -> None:
    dataset = make_synthetic(SyntheticShape(10, 20, 60, (("a/b", 2),)))
    with pytest.raises(ValueError, match="cannot be used in a file name"):
        write_mmrec(dataset, tmp_path / "x")
