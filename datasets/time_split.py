"""Labelling each user's interactions, in time order, as train (0), valid (1) or test (2)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

TRAIN, VALID, TEST = 0, 1, 2


@dataclass(frozen=True)
class SplitRatios:
    """Shares of each user's interactions; exact fractions so that rounding is exact."""

    train: Fraction = Fraction(8, 10)
    valid: Fraction = Fraction(1, 10)
    test: Fraction = Fraction(1, 10)

    def __post_init__(self) -> None:
        if min(self.train, self.valid, self.test) <= 0:
            raise ValueError(f"split shares must all be > 0, got {self.text()}")
        if self.train + self.valid + self.test != 1:
            raise ValueError(f"split shares must sum to 1, got {self.text()}")

    @classmethod
    def parse(cls, text: str) -> SplitRatios:
        """``"0.8,0.1,0.1"`` (train, valid, test); ValueError naming the rule when it breaks one."""
        parts = [part.strip() for part in text.split(",")]
        if len(parts) != 3:
            raise ValueError(f"split must be three shares train,valid,test, got {text!r}")
        try:
            train, valid, test = (Fraction(part) for part in parts)
        except ValueError:
            raise ValueError(f"split shares must be decimal numbers, got {text!r}") from None
        return cls(train, valid, test)

    def text(self) -> str:
        return ",".join(str(float(share)) for share in (self.train, self.valid, self.test))

    def counts(self, n: int) -> tuple[int, int, int]:
        """(train, valid, test) sizes for a user with ``n`` >= 3 interactions.

        The rule of MMRec's ``preprocessing/1splitting.ipynb``, generalised from 0.8/0.1/0.1:
        vt = floor(n * (valid + test)); valid = floor(vt * valid / (valid + test)); test = vt -
        valid; when that leaves valid or test empty, each gets one row instead (for 0.8/0.1/0.1:
        n < 10 gives n-2, 1, 1). Every user keeps >= 1 row in each split.
        """
        if n < 3:
            raise ValueError(f"a user needs >= 3 interactions to be split, got {n}")
        held_out = self.valid + self.test
        vt = math.floor(n * held_out)
        if vt < 2:
            return n - 2, 1, 1
        valid = max(1, math.floor(vt * self.valid / held_out))
        return n - vt, valid, vt - valid


def time_ordered_labels(
    users: np.ndarray, timestamps: np.ndarray, items: np.ndarray, ratios: SplitRatios
) -> np.ndarray:
    """x_label of every row: each user's rows sorted by (timestamp, item), then split in order.

    ``users`` and ``items`` are contiguous int ids; every user must have >= 3 rows.
    """
    order = np.lexsort((items, timestamps, users))
    labels = np.empty(len(users), dtype=np.int64)
    counts = np.bincount(users)
    start = 0
    for n in counts[counts > 0]:
        n_train, n_valid, _ = ratios.counts(int(n))
        block = order[start : start + n]
        labels[block[:n_train]] = TRAIN
        labels[block[n_train : n_train + n_valid]] = VALID
        labels[block[n_train + n_valid :]] = TEST
        start += n
    return labels
