"""A default feature file that is missing is named in a warning, not dropped silently."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from spectune.datasets.mmrec import load_dataset
from spectune.datasets.synthetic import TINY, make_synthetic, write_mmrec


def test_missing_image_feat_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = write_mmrec(make_synthetic(TINY, seed=0), tmp_path / TINY.name)
    (directory / "image_feat.npy").rename(directory / "image_feats.npy")
    with caplog.at_level(logging.WARNING, logger="spectune.datasets.layout"):
        dataset = load_dataset(TINY.name, tmp_path)
    assert dataset.modalities == ("text",)
    assert "no image_feat.npy, so text only" in caplog.text
