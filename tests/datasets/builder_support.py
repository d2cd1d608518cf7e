"""Helpers of the dataset-builder tests (imported by tests/datasets/test_builder_*.py).

The stand-in encoders are deterministic functions of their input (a text, an image file's bytes)
so that pipeline tests run in milliseconds without the encoders extra; they test the builder's
logic, not the features. Tests that compare features use the real encoders.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spectune.datasets.builder import Encoders

STAND_IN_TEXT_DIM = 12
STAND_IN_IMAGE_DIM = 20


def _hash_rows(payloads: Sequence[bytes], dim: int) -> np.ndarray:
    rows = []
    for payload in payloads:
        digest = hashlib.sha256(payload).digest() * (dim // 32 + 1)
        rows.append(np.frombuffer(digest[:dim], dtype=np.uint8))
    return (np.array(rows, dtype=np.float32).reshape(len(rows), dim) + 1.0) / 256.0


def stand_in_encoders(calls: list[str] | None = None) -> Encoders:
    """Text rows from the text's hash, image rows from the file's bytes (so files are read).

    ``calls`` (when given) records "text"/"image" per call, to check what was encoded.
    """

    def text(texts: Sequence[str]) -> np.ndarray:
        if calls is not None:
            calls.append("text")
        return _hash_rows([t.encode() for t in texts], STAND_IN_TEXT_DIM)

    def image(paths: Sequence[Path]) -> np.ndarray:
        if calls is not None:
            calls.append("image")
        return _hash_rows([Path(p).read_bytes() for p in paths], STAND_IN_IMAGE_DIM)

    return Encoders(text=text, image=image)


def write_png(path: Path, seed: int) -> None:
    """A small real PNG image (4x4 RGB) whose pixels depend on ``seed``."""
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")


def write_lines(path: Path, lines: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two equal-shape tables."""
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
