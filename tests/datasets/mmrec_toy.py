"""A small valid MMRec dataset, for tests that break one thing at a time (imported by tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

TOY = "toy"
HEADER = ["userID", "itemID", "rating", "timestamp", "x_label"]
N_ITEMS = 6
# (userID, itemID, x_label); data row k is line k + 2 of the file.
PAIRS = [
    (0, 0, 0),
    (0, 1, 0),
    (0, 2, 0),
    (0, 3, 1),
    (0, 4, 2),
    (1, 1, 0),
    (1, 2, 0),
    (1, 0, 1),
    (1, 5, 2),
    (2, 3, 0),
    (2, 4, 0),
    (2, 5, 0),
    (2, 1, 1),
    (2, 2, 2),
    (3, 0, 0),
    (3, 5, 0),
    (3, 2, 1),
    (3, 3, 2),
]


def toy_rows() -> list[list[str]]:
    return [[str(u), str(i), "4", str(1000 + k), str(x)] for k, (u, i, x) in enumerate(PAIRS)]


def toy_features() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "image": rng.random((N_ITEMS, 4)).astype(np.float32),
        "text": rng.standard_normal((N_ITEMS, 3)).astype(np.float32),
    }


WriteToy = Callable[..., Path]


def make_toy_writer(tmp_path: Path) -> WriteToy:
    """Write the toy dataset (optionally altered) under tmp_path; returns the data root.

    rows/header replace the .inter content; text replaces the whole .inter file; features maps a
    file name to the array saved there (None = the toy's image_feat.npy and text_feat.npy);
    extra_files maps a file name to its text or bytes.
    """

    def write(
        *,
        name: str = TOY,
        header: list[str] | None = None,
        rows: list[list[str]] | None = None,
        text: str | bytes | None = None,
        features: dict[str, np.ndarray] | None = None,
        extra_files: dict[str, str | bytes] | None = None,
    ) -> Path:
        directory = tmp_path / name
        directory.mkdir(parents=True, exist_ok=True)
        if text is None:
            lines = [header or HEADER, *(toy_rows() if rows is None else rows)]
            text = "".join("\t".join(fields) + "\n" for fields in lines)
        inter = directory / f"{name}.inter"
        if isinstance(text, bytes):
            inter.write_bytes(text)
        else:
            inter.write_text(text, encoding="utf-8", newline="")
        if features is None:
            features = {f"{m}_feat.npy": table for m, table in toy_features().items()}
        for file, table in features.items():
            np.save(directory / file, table, allow_pickle=True)
        for file, content in (extra_files or {}).items():
            if isinstance(content, bytes):
                (directory / file).write_bytes(content)
            else:
                (directory / file).write_text(content, encoding="utf-8")
        return tmp_path

    return write
