"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real datasets beside the repository (/work/shared/data next to /work/main)."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"
