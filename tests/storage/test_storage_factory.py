"""Building storages against the real Postgres and journal files: init, retries, errors."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from spectune.storage.errors import StorageError, StudyNotFound
from spectune.storage.factory import (
    build_storage,
    init_storage,
    open_existing_study,
    open_storage,
)
from spectune.storage.options import StorageOptions
from spectune.storage.testing import FAST_OPTIONS as FAST
from spectune.storage.testing import Backend
from spectune.storage.urls import parse_storage_url


def test_init_creates_the_schema_once(empty_postgres_url: str) -> None:
    target = parse_storage_url(empty_postgres_url)
    assert init_storage(target, FAST).startswith("created the Optuna schema")
    assert init_storage(target, FAST).startswith("found the Optuna schema")
    storage = build_storage(target, FAST)  # a worker's storage now opens
    assert storage.get_all_studies() == []


def test_a_worker_on_an_uninitialised_database_is_told_to_run_init(
    empty_postgres_url: str,
) -> None:
    with pytest.raises(StorageError, match=r"no Optuna tables; run `spectune storage init`"):
        build_storage(parse_storage_url(empty_postgres_url), FAST)
    engine = sqlalchemy.create_engine(parse_storage_url(empty_postgres_url).location)
    with engine.connect() as connection:  # workers never create tables
        assert sqlalchemy.inspect(connection).get_table_names() == []
    engine.dispose()


def test_init_of_a_journal_makes_the_folder_only(tmp_path: Path) -> None:
    target = parse_storage_url(str(tmp_path / "runs" / "a.journal"))
    init_storage(target, FAST)
    assert (tmp_path / "runs").is_dir() and not (tmp_path / "runs" / "a.journal").exists()


def test_unreachable_postgres_is_retried_then_explained_without_password() -> None:
    target = parse_storage_url("postgresql://spectune:hunter2@127.0.0.1:1/optuna")
    options = StorageOptions(connect_tries=3, connect_delay=0.1)
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        build_storage(target, options)
    message = str(caught.value)
    assert time.monotonic() - started >= 0.3  # waited 0.1 + 0.2 between three tries
    assert message.startswith("cannot reach Postgres at 127.0.0.1:1 after 3 tries: ")
    assert "is the db service up?" in message and "hunter2" not in message


@pytest.mark.parametrize(
    ("url", "answer"),
    [
        ("postgresql://postgres@127.0.0.1:5432/spectune_no_such_db", "does not exist"),
        ("postgresql://spectune_no_such_role:pw@127.0.0.1:5432/test", "spectune_no_such_role"),
    ],
)
def test_a_wrong_database_or_user_fails_at_once(url: str, answer: str) -> None:
    options = StorageOptions(connect_tries=5, connect_delay=1.0)  # 15 s if it were retried
    started = time.monotonic()
    with pytest.raises(StorageError, match="check the database name, user and password") as caught:
        build_storage(parse_storage_url(url), options)
    assert time.monotonic() - started < 5
    assert answer in str(caught.value) and ":pw@" not in str(caught.value)


def test_one_storage_per_process_and_url(backend: Backend) -> None:
    target = backend.target
    first = open_storage(target, FAST, create=True)
    assert open_storage(target, FAST) is first
    assert open_storage(parse_storage_url(backend.url), FAST) is first


def test_unknown_study_writes_nothing(tmp_path: Path, study_name: str) -> None:
    path = tmp_path / "runs" / "missing.journal"
    target = parse_storage_url(str(path))
    with pytest.raises(StudyNotFound, match=rf"no study '{study_name}' in .*spectune study create"):
        open_existing_study(target, FAST, study_name)
    assert not path.parent.exists()  # no journal file, no folder

    storage = build_storage(target, FAST, create=True)
    optuna.create_study(storage=storage, study_name="other")
    size = path.stat().st_size
    with pytest.raises(StudyNotFound):
        open_existing_study(target, FAST, study_name)
    assert path.stat().st_size == size


def test_unknown_study_in_postgres(postgres_url: str, study_name: str) -> None:
    with pytest.raises(StudyNotFound, match=rf"no study '{study_name}'"):
        open_existing_study(parse_storage_url(postgres_url), FAST, study_name)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed")
def test_dropped_connections_do_not_fail_storage_calls(
    postgres_base: str, postgres_url: str, study_name: str
) -> None:
    storage = build_storage(parse_storage_url(postgres_url), FAST)
    study = optuna.create_study(storage=storage, study_name=study_name)
    trial = study.ask()
    trial.report(0.5, 0)
    # Kill every connection of this process (a Postgres restart, an idle timeout).
    admin = sqlalchemy.create_engine(parse_storage_url(postgres_base).location)
    with admin.connect() as connection:
        killed = connection.execute(
            sqlalchemy.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = :name"
            ),
            {"name": f"spectune-{os.getpid()}"},
        ).scalar_one()
    admin.dispose()
    assert killed >= 1
    trial.report(0.6, 1)
    trial.set_user_attr("after", True)
    study.tell(trial, 0.6)
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE
    assert study.trials[0].intermediate_values == {0: 0.5, 1: 0.6}


NOT_A_JOURNAL = "is not an Optuna journal file (line 1 is not a JSON log entry)"


@pytest.mark.parametrize(
    "content",
    [
        b"some notes\n",  # Optuna skips one bad line as a half-written entry: read as empty
        b"garbage",  # unterminated, and not the start of an entry
        b"\x89PNG\r\n\x1a\n\x00\x00",  # not UTF-8
        b'["op_code", 0]\n',  # JSON, but no log entry
        b'{"study_name": "x"}\n',
        b'\n{"op_code":0,"worker_id":"w","study_name":"x","directions":[2]}\n',
    ],
    ids=["text", "unterminated", "binary", "json-list", "json-no-op-code", "blank-line-1"],
)
def test_a_file_that_is_not_a_journal_is_refused_untouched(
    tmp_path: Path, study_name: str, content: bytes
) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    target = parse_storage_url(str(path))
    with pytest.raises(StorageError) as caught:
        build_storage(target, FAST, create=True)  # `study create`: would append a study
    assert str(caught.value).startswith(f"{path} {NOT_A_JOURNAL}; give --storage a journal")
    with pytest.raises(StorageError, match=rf"^{re.escape(str(path))} is not an Optuna journal"):
        open_existing_study(target, FAST, study_name)  # status, worker, export, report...
    assert path.read_bytes() == content
    assert sorted(tmp_path.iterdir()) == [path]  # not even the append lock beside it


def test_an_empty_file_is_a_new_journal(tmp_path: Path, study_name: str) -> None:
    path = tmp_path / "new.journal"
    path.touch()
    target = parse_storage_url(str(path))
    with pytest.raises(StudyNotFound, match=rf"no study '{study_name}'"):
        open_existing_study(target, FAST, study_name)
    optuna.create_study(storage=build_storage(target, FAST, create=True), study_name=study_name)
    assert path.read_bytes().startswith(b'{"op_code":0,')
    storage = build_storage(target, FAST)  # a journal now: it passes the check
    assert [s.study_name for s in storage.get_all_studies()] == [study_name]


def test_a_first_entry_being_written_is_not_refused(tmp_path: Path) -> None:
    path = tmp_path / "busy.journal"
    path.write_bytes(b'{"op_code":0,"worker_id":"w","stu')  # another process mid-append
    storage = build_storage(parse_storage_url(str(path)), FAST)
    assert storage.get_all_studies() == []  # Optuna skips the unfinished entry
