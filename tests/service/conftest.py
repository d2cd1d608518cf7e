"""Service tests: real `spectune` processes on a journal file and on a Postgres schema."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spectune.storage.testing import FAST_OPTIONS, Spectune


@pytest.fixture
def spectune(tmp_path: Path) -> Spectune:
    """``spectune`` subprocesses in a temporary folder, with test-speed liveness settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SPECTUNE_")}
    env.update(
        SPECTUNE_GPU_COUNT="0",  # CPU; the GPU slot test simulates GPUs
        SPECTUNE_GPU_SLOT_DIR=str(tmp_path / "gpu-slots"),
        SPECTUNE_HEARTBEAT_INTERVAL=str(FAST_OPTIONS.heartbeat_interval),
        SPECTUNE_HEARTBEAT_GRACE=str(FAST_OPTIONS.heartbeat_grace),
        SPECTUNE_CONNECT_TRIES="2",
        SPECTUNE_CONNECT_DELAY="0.1",
    )
    return Spectune(tmp_path, env)
