"""Storage URLs: which backend a URL means, and how to show it without its password."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import sqlalchemy.engine
import sqlalchemy.exc

from spectune.storage.errors import StorageError

ACCEPTED_FORMS = (
    "a journal file path (e.g. runs/NAME.journal, the default) or journal:///path, "
    "or postgresql://user:password@host:port/database"
)
DEFAULT_JOURNAL_DIR = Path("runs")
# SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; spectune ships psycopg2.
POSTGRES_DRIVER = "postgresql+psycopg2"


@dataclass(frozen=True)
class StorageTarget:
    """Where a study lives: an Optuna journal file or a Postgres database."""

    kind: Literal["journal", "postgres"]
    location: str  # journal: a file path; postgres: a SQLAlchemy URL (psycopg2 driver)

    @property
    def journal_path(self) -> Path:
        assert self.kind == "journal", self
        return Path(self.location)

    @property
    def masked(self) -> str:
        """The location for messages and logs: never the password."""
        return mask_url(self.location) if self.kind == "postgres" else self.location

    @property
    def server(self) -> str:
        """``host:port`` of a Postgres target, for connection messages."""
        url = sqlalchemy.engine.make_url(self.location)
        return f"{url.host or 'localhost'}:{url.port or 5432}"

    @property
    def password(self) -> str | None:
        if self.kind != "postgres":
            return None
        secret = sqlalchemy.engine.make_url(self.location).password
        return str(secret) if secret else None

    def redact(self, text: str) -> str:
        """``text`` with this target's password replaced (driver messages may quote the URL)."""
        secret = self.password
        return text.replace(secret, "***") if secret else text


def default_target(study_name: str) -> StorageTarget:
    """The embedded default: a journal file per study on local disk."""
    return StorageTarget("journal", str(DEFAULT_JOURNAL_DIR / f"{study_name}.journal"))


def parse_storage_url(raw: str) -> StorageTarget:
    """Map ``--storage``'s value to a target, refusing what cannot serve several workers."""
    value = raw.strip()
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if not scheme:
        return _journal(value, raw)
    if scheme == "journal":
        return _journal(value[len("journal://") :], raw)
    if scheme.startswith("sqlite"):
        raise StorageError(
            f"--storage {mask_url(raw)}: SQLite is not supported for several worker processes: "
            "it hands the same WAITING trial (a retry or an enqueued config) to two workers "
            "(Optuna #4002) and serialises writers; use a journal file on one machine "
            "(e.g. runs/NAME.journal, the default) or postgresql://... across machines"
        )
    if scheme in ("postgresql", POSTGRES_DRIVER):
        return _postgres(value, raw)
    raise StorageError(f"--storage {mask_url(raw)}: unknown storage URL; use {ACCEPTED_FORMS}")


def _journal(path: str, raw: str) -> StorageTarget:
    if not path:
        raise StorageError(f"--storage {raw!r}: empty journal path; use {ACCEPTED_FORMS}")
    if Path(path).is_dir():
        raise StorageError(
            f"--storage {raw}: {path} is a directory; give a file path such as {path}/NAME.journal"
        )
    return StorageTarget("journal", path)


def _postgres(value: str, raw: str) -> StorageTarget:
    try:
        url = sqlalchemy.engine.make_url(value)
    except sqlalchemy.exc.ArgumentError as error:
        raise StorageError(f"--storage {mask_url(raw)}: not a valid URL ({error})") from error
    if not url.database:
        raise StorageError(
            f"--storage {mask_url(raw)}: name the database, e.g. postgresql://user@host:5432/optuna"
        )
    url = url.set(drivername=POSTGRES_DRIVER)
    return StorageTarget("postgres", url.render_as_string(hide_password=False))


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        parsed = None
    if parsed is not None and parsed.password is not None:
        return parsed.render_as_string(hide_password=True)
    # Not parseable as a SQLAlchemy URL: hide anything between "user:" and "@".
    return re.sub(r"(://[^/:@]*:)[^@/]*@", r"\1***@", url)
