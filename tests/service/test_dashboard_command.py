"""`spectune dashboard` as a real process on a journal file and on Postgres: what it serves,
where it listens, what it refuses (exit code 2, one line, nothing served) and what it warns of."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna

from spectune.storage import attrs
from spectune.storage.factory import open_storage
from spectune.storage.testing import FAST_OPTIONS, Backend, Process, Spectune, poll_until

NO_LOGIN = "optuna-dashboard has no login"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return int(response.status), response.read()


def get_json(url: str) -> Any:
    status, body = get(url)
    assert status == 200, (url, status)
    return json.loads(body)


def stop(process: Process) -> None:
    """End the dashboard (SIGTERM, then SIGKILL) and collect its output."""
    if process.popen.poll() is None:
        process.popen.terminate()
        try:
            process.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.popen.kill()
    process.finish(timeout=10)


@contextmanager
def dashboard(spectune: Spectune, *args: str) -> Iterator[tuple[Process, str, int]]:
    """A running ``spectune dashboard`` on a free port: (process, base URL, port); always
    stopped on leaving, passed or failed."""
    port = free_port()
    process = spectune.start("dashboard", "--port", str(port), *args)
    base = f"http://127.0.0.1:{port}"

    def serving() -> bool:
        if process.popen.poll() is not None:
            raise AssertionError(f"dashboard ended ({process.popen.returncode}): {process.output}")
        try:
            return get(f"{base}/dashboard/")[0] == 200
        except (urllib.error.URLError, OSError):
            return False

    try:
        poll_until(serving, 60, f"the dashboard on port {port}")
        yield process, base, port
    finally:
        stop(process)


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on ``port`` (Linux /proc/net)."""
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].rpartition(":")
            if fields[3] != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # /proc prints each 32-bit word in host (little-endian) order.
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, packed))
    return found


def refusal(process: Process) -> str:
    """The refusal line of a finished dashboard: exit code 2, one line, nothing served."""
    assert process.popen.returncode == 2, process.output
    assert process.stdout == [], process.output  # no "open http://..." for a server never up
    assert len(process.stderr) == 1, process.output
    line = process.stderr[0]
    assert line.startswith("spectune dashboard: error: "), line
    return line


def set_recorded_optuna(backend: Backend, name: str, version: str) -> None:
    storage = open_storage(backend.target, FAST_OPTIONS)
    study = optuna.load_study(study_name=name, storage=storage)
    spec = study.user_attrs[attrs.SPEC]
    spec["versions"]["optuna"] = version
    study.set_user_attr(attrs.SPEC, spec)


def test_the_dashboard_serves_the_study_on_loopback(
    spectune: Spectune, backend: Backend, study_name: str
) -> None:
    spectune.create_smoke_study(backend.url, study_name, "--n-trials", "3")
    args = ("--storage", backend.url, "--study-name", study_name)
    with dashboard(spectune, *args) as (process, base, port):
        status, page = get(f"{base}/dashboard/")
        assert status == 200 and b"bundle.js" in page  # the single-page app
        studies = get_json(f"{base}/api/studies")["study_summaries"]
        ids = [s["study_id"] for s in studies if s["study_name"] == study_name]
        assert len(ids) == 1, studies
        detail = get_json(f"{base}/api/studies/{ids[0]}")
        assert detail["name"] == study_name and detail["directions"] == ["maximize"]

        assert listening_addresses(port) == {"127.0.0.1"}
    assert f"open http://127.0.0.1:{port}/dashboard/" in process.stdout[0], process.output
    assert not any(NO_LOGIN in line for line in process.stderr), process.output
    assert not any(study_name in line for line in process.stderr), process.output  # no warning


def test_a_study_of_another_optuna_version_is_served_with_a_warning(
    spectune: Spectune, backend: Backend, study_name: str
) -> None:
    spectune.create_smoke_study(backend.url, study_name, "--n-trials", "3")
    set_recorded_optuna(backend, study_name, "4.0.0")
    with dashboard(spectune, "--storage", backend.url) as (process, base, _):
        names = [s["study_name"] for s in get_json(f"{base}/api/studies")["study_summaries"]]
        assert study_name in names
        process.wait_for(
            rf"^spectune dashboard: warning: study {re.escape(study_name)} was created with "
            rf"Optuna 4\.0\.0, this dashboard runs Optuna {re.escape(optuna.__version__)}"
        )


def test_a_non_loopback_host_warns_that_there_is_no_login(
    spectune: Spectune, tmp_path: Path, study_name: str
) -> None:
    journal = str(tmp_path / "studies.journal")
    spectune.create_smoke_study(journal, study_name, "--n-trials", "3")
    with dashboard(spectune, "--storage", journal, "--host", "0.0.0.0") as (process, _, port):
        process.wait_for(rf"warning: listening on 0\.0\.0\.0: {NO_LOGIN}")
        assert listening_addresses(port) == {"0.0.0.0"}


def test_an_uninitialised_postgres_schema_is_refused(
    spectune: Spectune, empty_postgres_url: str
) -> None:
    process = spectune.run("dashboard", "--storage", empty_postgres_url, "--port", str(free_port()))
    line = refusal(process)
    assert "has no Optuna tables" in line and "spectune storage init" in line, line


def test_a_missing_journal_file_is_refused(spectune: Spectune, tmp_path: Path) -> None:
    journal = tmp_path / "nowhere.journal"
    process = spectune.run("dashboard", "--storage", str(journal), "--port", str(free_port()))
    assert f"no journal file {journal}" in refusal(process)
    assert not journal.exists()  # a dashboard never creates a storage


def test_a_file_that_is_not_a_journal_is_refused(spectune: Spectune, tmp_path: Path) -> None:
    journal = tmp_path / "bad.journal"
    journal.write_text("garbage\n")  # Optuna alone reads it as an empty journal: an empty page
    for study in ((), ("--study-name", "x")):
        process = spectune.run(
            "dashboard", "--storage", str(journal), *study, "--port", str(free_port())
        )
        assert refusal(process) == (
            f"spectune dashboard: error: {journal} is not an Optuna journal file (line 1 is not "
            "a JSON log entry); give --storage a journal made by spectune, or the path of a new "
            "file"
        )
    assert journal.read_text() == "garbage\n"


def test_without_storage_or_study_name_it_is_refused(spectune: Spectune) -> None:
    process = spectune.run("dashboard", "--port", str(free_port()))
    assert "give --storage (or $SPECTUNE_STORAGE) or --study-name" in refusal(process)


def test_a_study_name_not_in_the_storage_is_refused(
    spectune: Spectune, backend: Backend, study_name: str
) -> None:
    spectune.create_smoke_study(backend.url, study_name, "--n-trials", "3")  # storage exists
    missing = f"{study_name}-missing"
    process = spectune.run(
        "dashboard", "--storage", backend.url, "--study-name", missing, "--port", str(free_port())
    )
    line = refusal(process)
    assert f"no study {missing!r}" in line and "spectune study create" in line, line


def test_a_port_in_use_is_refused_and_named(
    spectune: Spectune, tmp_path: Path, study_name: str
) -> None:
    journal = str(tmp_path / "studies.journal")
    spectune.create_smoke_study(journal, study_name, "--n-trials", "3")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = spectune.run("dashboard", "--storage", journal, "--port", str(port))
    line = refusal(process)  # neither "open http://..." nor Bottle's "Listening on ..."
    assert f"cannot listen on 127.0.0.1:{port}" in line and "--port" in line, line
