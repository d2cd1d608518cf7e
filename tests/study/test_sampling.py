"""The negative sampler never returns a train positive and is reproducible."""

from __future__ import annotations

import numpy as np

from spectune.datasets.mmrec import Split
from spectune.study.sampling import NegativeSampler


def test_never_returns_a_train_positive() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 50, 12
    # dense users: user u has items 0..u % 11 (up to 11 of the 12 items) as positives
    users = np.concatenate([np.full(u % 11 + 1, u) for u in range(n_users)])
    items = np.concatenate([np.arange(u % 11 + 1) for u in range(n_users)])
    sampler = NegativeSampler(n_items, Split(users, items))
    negatives = sampler.sample(users, rng)
    positives = set(zip(users.tolist(), items.tolist()))
    assert not any((u, n) in positives for u, n in zip(users.tolist(), negatives.tolist()))
    # the user with 11 positives can only get item 11
    assert set(negatives[users == 10].tolist()) == {11}
    assert negatives.min() >= 0 and negatives.max() < n_items


def test_same_seed_same_negatives() -> None:
    users = np.repeat(np.arange(20), 3)
    items = np.tile(np.arange(3), 20)
    sampler = NegativeSampler(30, Split(users, items))
    first = sampler.sample(users, np.random.default_rng(7))
    second = sampler.sample(users, np.random.default_rng(7))
    assert np.array_equal(first, second)
