"""Test helpers: private Postgres schemas (no mocks), polling, and `spectune` subprocesses."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar
from urllib.parse import quote

import sqlalchemy
import sqlalchemy.exc
from sqlalchemy.pool import NullPool

from spectune.storage.options import StorageOptions
from spectune.storage.urls import StorageTarget, parse_storage_url

DEFAULT_TEST_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def with_search_path(url: str, schema: str) -> str:
    """``url`` whose connections use ``schema`` (tables are created there)."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def postgres_schema(base_url: str, prefix: str = "spectune_test") -> Iterator[str]:
    """A fresh empty schema in ``base_url``'s database; yields its URL, drops it afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    engine = sqlalchemy.create_engine(parse_storage_url(base_url).location, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
        yield with_search_path(base_url, schema)
    finally:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


# Heartbeat every second, stale after three: fast, and still far from false positives.
FAST_OPTIONS = StorageOptions(
    heartbeat_interval=1, heartbeat_grace=3, connect_tries=2, connect_delay=0.05
)


@dataclass(frozen=True)
class Backend:
    """One storage backend under test: ``url`` is what ``--storage`` gets."""

    name: str
    url: str

    @property
    def target(self) -> StorageTarget:
        return parse_storage_url(self.url)


def postgres_error(base_url: str) -> str | None:
    """Why ``base_url`` cannot be reached, or None when it can."""
    engine = sqlalchemy.create_engine(parse_storage_url(base_url).location, poolclass=NullPool)
    try:
        with engine.connect():
            return None
    except sqlalchemy.exc.OperationalError as error:
        return str(error).splitlines()[0]
    finally:
        engine.dispose()


T = TypeVar("T")


def poll_until(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.1) -> T:
    """``check()``'s first truthy value within ``timeout`` seconds, else AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class Process:
    """A running ``spectune`` process whose output is collected line by line."""

    def __init__(self, popen: subprocess.Popen[str]) -> None:
        self.popen = popen
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(popen.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(popen.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str] | None, lines: list[str]) -> None:
        assert stream is not None
        for line in stream:
            lines.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """The first stderr line matching ``pattern`` (the process logs to stderr)."""
        expression = re.compile(pattern)

        def found() -> re.Match[str] | None:
            for line in list(self.stderr):
                if match := expression.search(line):
                    return match
            if self.popen.poll() is not None:
                raise AssertionError(f"process ended ({self.popen.returncode}): {self.output}")
            return None

        return poll_until(found, timeout, f"{pattern!r} in the log of process {self.pid}")

    def finish(self, timeout: float = 180) -> int:
        """Wait for the exit; its code."""
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            raise AssertionError(f"still running after {timeout} s: {self.output}") from None
        for reader in self._readers:
            reader.join(timeout=10)
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.stdout + self.stderr)


@dataclass(frozen=True)
class Spectune:
    """Runs the ``spectune`` command as a subprocess in ``cwd`` with ``env``."""

    cwd: Path
    env: dict[str, str]

    def start(self, *args: str, env: dict[str, str] | None = None) -> Process:
        popen = subprocess.Popen(
            [sys.executable, "-m", "spectune.study.cli", *args],
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return Process(popen)

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 180) -> Process:
        """Run to the end; the finished Process (``.popen.returncode``, ``.output``)."""
        process = self.start(*args, env=env)
        process.finish(timeout)
        return process

    def create_smoke_study(self, storage_url: str, name: str, *args: str) -> None:
        """``spectune study create`` of a smoke-objective study; fails the test if it fails."""
        process = self.run(
            "study", "create", "--study-name", name, "--dataset", "toy",
            "--objective", "smoke", "--storage", storage_url, *args,
        )  # fmt: skip
        assert process.popen.returncode == 0, process.output
