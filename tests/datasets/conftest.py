"""Fixtures of the datasets tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmrec_toy import WriteToy, make_toy_writer


@pytest.fixture
def write_toy(tmp_path: Path) -> WriteToy:
    return make_toy_writer(tmp_path)
