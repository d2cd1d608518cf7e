"""An exported config is a file colleagues and other containers read."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from spectune.study.export import write_yaml


def test_written_whole_and_readable_by_others_under_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        write_yaml(tmp_path / "best.yaml", {"dataset": "ml-100k", "model": {"knn_k": 10}})
    finally:
        os.umask(previous)
    path = tmp_path / "best.yaml"
    assert yaml.safe_load(path.read_text()) == {"dataset": "ml-100k", "model": {"knn_k": 10}}
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["best.yaml"]  # no temporary left
