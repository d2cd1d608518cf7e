"""The split rule (``shared/data/README.md`` recipe step 5) and k-core filtering."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from spectune.datasets.kcore import k_core
from spectune.datasets.time_split import TEST, TRAIN, VALID, SplitRatios, time_ordered_labels


def readme_rule(n: int) -> tuple[int, int, int]:
    """The README's integer rule for 0.8/0.1/0.1, written out as stated there."""
    if n < 10:
        return n - 2, 1, 1
    vt = n // 5
    valid = vt // 2
    return n - vt, valid, vt - valid


def test_default_shares_follow_the_readme_rule() -> None:
    ratios = SplitRatios()
    for n in range(3, 5000):
        assert ratios.counts(n) == readme_rule(n), n


@pytest.mark.parametrize("text", ["0.7,0.15,0.15", "0.6,0.3,0.1", "0.9,0.05,0.05", "1/3,1/3,1/3"])
def test_other_shares_keep_every_split_non_empty(text: str) -> None:
    ratios = SplitRatios.parse(text)
    held_out = ratios.valid + ratios.test
    for n in range(3, 2000):
        train, valid, test = ratios.counts(n)
        assert train + valid + test == n
        assert min(train, valid, test) >= 1
        if n * held_out >= 2 and valid > 1:
            assert train == n - int(n * held_out)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.8,0.2", "three shares"),
        ("0.8,0.1,x", "decimal numbers"),
        ("0.8,0.2,0", "must all be > 0"),
        ("0.8,0.1,0.2", "must sum to 1"),
    ],
)
def test_bad_shares_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SplitRatios.parse(text)


def test_parse_is_exact() -> None:
    assert SplitRatios.parse("0.8, 0.1, 0.1") == SplitRatios(
        Fraction(4, 5), Fraction(1, 10), Fraction(1, 10)
    )


def test_labels_follow_time_then_item_order() -> None:
    # user 0: 12 rows (train 10, valid 1, test 1); user 1: 3 rows in reverse file order
    users = np.array([0] * 12 + [1, 1, 1])
    times = np.array([5, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 11, 30, 20, 10], dtype=np.float64)
    items = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 7, 3, 0, 1, 2])
    labels = time_ordered_labels(users, times, items, SplitRatios())
    # user 0: the two rows at time 11 are ordered by item: 3 (valid) before 7 (test)
    assert labels[11] == VALID and labels[10] == TEST
    assert (labels[:10] == TRAIN).all()
    assert labels[12:].tolist() == [TEST, VALID, TRAIN]


def brute_force_core(pairs: list[tuple[int, int]], k: int) -> set[tuple[int, int]]:
    """The maximal k-core by removing one violating row at a time (order does not matter)."""
    rows = list(pairs)
    while True:
        users = {u: sum(1 for x, _ in rows if x == u) for u, _ in rows}
        items = {i: sum(1 for _, y in rows if y == i) for _, i in rows}
        bad = [r for r in rows if users[r[0]] < k or items[r[1]] < k]
        if not bad:
            return set(rows)
        rows.remove(bad[0])


@pytest.mark.parametrize("seed", range(5))
def test_k_core_is_the_maximal_core(seed: int) -> None:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 15, 120)
    items = (rng.zipf(1.6, 120) - 1) % 12
    pairs = sorted(set(zip(users.tolist(), items.tolist())))
    u = np.array([p[0] for p in pairs])
    i = np.array([p[1] for p in pairs])
    keep, passes = k_core(u, i, 3)
    assert {pairs[j] for j in np.flatnonzero(keep)} == brute_force_core(pairs, 3)
    assert passes >= 1


def test_k_core_counts_passes_including_the_last_unchanged_one() -> None:
    # user 2 has 1 row -> dropped; then item 1 has 1 row -> dropped; then stable
    users = np.array([0, 0, 1, 1, 2, 0])
    items = np.array([0, 2, 0, 2, 1, 1])
    keep, passes = k_core(users, items, 2)
    assert keep.tolist() == [True, True, True, True, False, False]
    assert passes == 3
    keep, passes = k_core(users[:4], items[:4], 2)
    assert keep.all() and passes == 1
