"""Cross-process locks: the study lock (budget count + ask, sweeps) and the journal append lock.

fcntl locks are tied to an open file and vanish when the process dies, so a worker killed with
SIGKILL never leaves a lock behind (Optuna's default journal lock, a symlink, is only broken
after a 30 s grace period).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import zlib
from pathlib import Path
from types import TracebackType
from typing import Protocol

import sqlalchemy
import sqlalchemy.exc
from optuna.storages.journal._file import BaseJournalFileLock

log = logging.getLogger(__name__)


class StudyLock(Protocol):
    """Mutual exclusion for one study among all workers (threads and processes)."""

    def __enter__(self) -> None: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def close(self) -> None: ...


class FileStudyLock:
    """An exclusive ``flock`` on a file beside the journal; re-entrant across threads: no."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._threads = threading.Lock()  # flock is per open file, not per thread
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def close(self) -> None:
        with self._threads:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class AdvisoryStudyLock:
    """``pg_advisory_lock`` on a key derived from the study, over one dedicated connection.

    A session-level advisory lock dies with its connection, so a killed worker never holds it.
    """

    def __init__(self, engine: sqlalchemy.engine.Engine, study_name: str, study_id: int) -> None:
        self._engine = engine
        # Two int4 keys: a hash of the name (schemas or databases may reuse ids) and the id.
        self._keys = {"a": zlib.crc32(study_name.encode()) - 2**31, "b": study_id}
        self._threads = threading.Lock()
        self._connection: sqlalchemy.engine.Connection | None = None

    def _execute(self, statement: str) -> None:
        for attempt in range(2):
            try:
                if self._connection is None:
                    connection = self._engine.connect()
                    self._connection = connection.execution_options(isolation_level="AUTOCOMMIT")
                self._connection.execute(sqlalchemy.text(statement), self._keys)
                return
            except sqlalchemy.exc.DBAPIError as error:
                # The dedicated connection died (server restart, idle timeout): reconnect once.
                self._drop_connection()
                if attempt == 1 or not error.connection_invalidated:
                    raise

    def _drop_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except sqlalchemy.exc.SQLAlchemyError:
                log.debug("closing a dead lock connection failed", exc_info=True)
            self._connection = None

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            self._execute("SELECT pg_advisory_lock(:a, :b)")
        except BaseException:
            self._threads.release()
            raise

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._execute("SELECT pg_advisory_unlock(:a, :b)")
        except sqlalchemy.exc.DBAPIError:
            # The connection is gone, and with it the lock.
            log.warning("lost the study lock connection while holding it", exc_info=True)
        finally:
            self._threads.release()

    def close(self) -> None:
        with self._threads:
            self._drop_connection()


class JournalAppendLock(BaseJournalFileLock):
    """Optuna's journal append lock, as an ``flock`` that a killed process cannot leave behind.

    Every writer of one journal file must use the same kind of lock: open journals through
    ``spectune.storage`` (optuna-dashboard included), not with Optuna's default symlink lock.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        # JournalStorage serialises its threads, so a descriptor still open here was left by an
        # acquire interrupted before its release: closing it drops that lock.
        self.release()
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def try_lock_file(path: Path) -> int | None:
    """Take an exclusive ``flock`` on ``path`` without waiting; the open descriptor or None.

    Keep the descriptor open as long as the claim should last; the process's death frees it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
