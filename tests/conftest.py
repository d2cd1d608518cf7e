"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from spectune.storage.factory import init_storage
from spectune.storage.testing import (
    DEFAULT_TEST_POSTGRES,
    FAST_OPTIONS,
    Backend,
    postgres_error,
    postgres_schema,
)
from spectune.storage.urls import parse_storage_url


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real datasets beside the repository (/work/shared/data next to /work/main)."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def postgres_base() -> str:
    """The test database (``SPECTUNE_TEST_POSTGRES``); tests fail when it is down."""
    url = os.environ.get("SPECTUNE_TEST_POSTGRES", DEFAULT_TEST_POSTGRES)
    error = postgres_error(url)
    if error is not None:
        pytest.fail(f"these tests need Postgres at {url} (.ci/run starts it): {error}")
    return url


@pytest.fixture(scope="session")
def postgres_url(postgres_base: str) -> Iterator[str]:
    """An initialised private schema shared by the session (tests use unique study names)."""
    with postgres_schema(postgres_base) as url:
        init_storage(parse_storage_url(url), FAST_OPTIONS)
        yield url


@pytest.fixture
def empty_postgres_url(postgres_base: str) -> Iterator[str]:
    """A private schema without tables."""
    with postgres_schema(postgres_base) as url:
        yield url


@pytest.fixture(params=["journal", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The same test body on the journal file and on Postgres."""
    if request.param == "journal":
        return Backend("journal", str(tmp_path / "runs" / "studies.journal"))
    return Backend("postgres", request.getfixturevalue("postgres_url"))


@pytest.fixture
def study_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"
