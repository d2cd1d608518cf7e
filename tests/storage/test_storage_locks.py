"""The study lock excludes other workers; a killed holder never leaves a lock behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import sqlalchemy

from spectune.storage.locks import (
    AdvisoryStudyLock,
    FileStudyLock,
    JournalAppendLock,
    try_lock_file,
)
from spectune.storage.urls import parse_storage_url

HOLD = """
import sys, time
from pathlib import Path
from spectune.storage.locks import FileStudyLock, JournalAppendLock
study, append = FileStudyLock(Path(sys.argv[1])), JournalAppendLock(Path(sys.argv[2]))
study.__enter__()
append.acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_a_killed_holder_releases_its_locks(tmp_path: Path) -> None:
    study_path, append_path = tmp_path / "study.lock", tmp_path / "append.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(study_path), str(append_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert try_lock_file(study_path) is None  # held by the other process
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        started = time.monotonic()
        lock, append = FileStudyLock(study_path), JournalAppendLock(append_path)
        with lock:
            append.acquire()
            append.release()
        lock.close()
        assert time.monotonic() - started < 1
    finally:
        holder.kill()


def _exclusive(locks: list[FileStudyLock] | list[AdvisoryStudyLock]) -> tuple[int, int]:
    """Run 4 threads x 20 increments under the locks; the most holders seen at once, the sum."""
    inside, most, total = 0, 0, 0
    guard = threading.Lock()

    def work(lock: FileStudyLock | AdvisoryStudyLock) -> None:
        nonlocal inside, most, total
        for _ in range(20):
            with lock:
                with guard:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.001)
                with guard:
                    inside -= 1
                    total += 1

    threads = [threading.Thread(target=work, args=(locks[i % len(locks)],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return most, total


def test_file_lock_excludes_threads_and_descriptors(tmp_path: Path) -> None:
    locks = [FileStudyLock(tmp_path / "study.lock") for _ in range(2)]  # two "processes"
    assert _exclusive(locks) == (1, 80)
    for lock in locks:
        lock.close()


def test_advisory_lock_excludes_connections(postgres_url: str) -> None:
    engines = [sqlalchemy.create_engine(parse_storage_url(postgres_url).location) for _ in range(2)]
    locks = [AdvisoryStudyLock(engine, "lock-test", 7) for engine in engines]
    assert _exclusive(locks) == (1, 80)
    for lock, engine in zip(locks, engines):
        lock.close()
        engine.dispose()


def test_try_lock_file_claims_once(tmp_path: Path) -> None:
    fd = try_lock_file(tmp_path / "slots" / "gpu0-slot0.lock")
    assert fd is not None
    assert try_lock_file(tmp_path / "slots" / "gpu0-slot0.lock") is None
    os.close(fd)
    again = try_lock_file(tmp_path / "slots" / "gpu0-slot0.lock")
    assert again is not None
    os.close(again)
