"""Storage URLs: which backend each form means, refusals, and passwords never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from spectune.storage.errors import StorageError
from spectune.storage.options import StorageOptions
from spectune.storage.urls import default_target, mask_url, parse_storage_url


@pytest.mark.parametrize(
    ("raw", "location"),
    [
        ("runs/demo.journal", "runs/demo.journal"),
        ("/data/studies/demo.log", "/data/studies/demo.log"),
        ("journal:///data/demo.journal", "/data/demo.journal"),
        ("journal://runs/demo.journal", "runs/demo.journal"),
    ],
)
def test_paths_and_journal_urls_mean_a_journal_file(raw: str, location: str) -> None:
    target = parse_storage_url(raw)
    assert (target.kind, target.location) == ("journal", location)


def test_default_is_a_journal_file_per_study_under_runs() -> None:
    target = default_target("demo")
    assert (target.kind, target.journal_path) == ("journal", Path("runs/demo.journal"))


@pytest.mark.parametrize(
    "raw", ["postgresql://u:pw@db:5433/optuna", "postgresql+psycopg2://u:pw@db:5433/optuna"]
)
def test_postgres_urls_use_psycopg2(raw: str) -> None:
    target = parse_storage_url(raw)
    assert target.kind == "postgres"
    assert target.location == "postgresql+psycopg2://u:pw@db:5433/optuna"
    assert target.server == "db:5433"
    assert target.masked == "postgresql+psycopg2://u:***@db:5433/optuna"


def test_sqlite_is_refused_with_the_reason() -> None:
    with pytest.raises(StorageError, match=r"SQLite .* same WAITING trial .*#4002") as caught:
        parse_storage_url("sqlite:///runs/demo.db")
    assert "postgresql://" in str(caught.value) and ".journal" in str(caught.value)


@pytest.mark.parametrize("raw", ["mysql://root:hunter2@db/optuna", "redis://:hunter2@cache:6379"])
def test_unknown_schemes_name_the_url_and_the_accepted_forms(raw: str) -> None:
    with pytest.raises(StorageError) as caught:
        parse_storage_url(raw)
    message = str(caught.value)
    assert "unknown storage URL" in message and "postgresql://" in message
    assert "journal" in message and "hunter2" not in message and "***" in message


def test_postgres_without_database_is_refused() -> None:
    with pytest.raises(StorageError, match="name the database"):
        parse_storage_url("postgresql://u:hunter2@db:5432")


def test_a_directory_is_not_a_journal_file(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="is a directory"):
        parse_storage_url(str(tmp_path))


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:hunter2@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("weird://u:hunter2@h/x y", "weird://u:***@h/x y"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_redact_removes_the_password_from_driver_messages() -> None:
    target = parse_storage_url("postgresql://u:hunter2@h/db")
    assert target.redact("auth failed for u:hunter2") == "auth failed for u:***"


def test_options_backoff_doubles_up_to_the_cap() -> None:
    options = StorageOptions(connect_tries=7, connect_delay=1.0, connect_delay_cap=10.0)
    assert options.delays() == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


@pytest.mark.parametrize(
    ("values", "rule"),
    [
        ({"heartbeat_interval": 10, "heartbeat_grace": 10}, "must exceed the heartbeat interval"),
        ({"heartbeat_interval": 0}, "interval must be >= 1"),
        ({"max_retry": -1}, "max retry must be >= 0"),
        ({"connect_tries": 0}, "connect tries must be >= 1"),
    ],
)
def test_options_are_validated(values: dict[str, int], rule: str) -> None:
    with pytest.raises(StorageError, match=rule):
        StorageOptions(**values)
