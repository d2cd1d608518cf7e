"""Building Optuna storages: one per process and URL, with retries, never creating tables.

Only ``init_storage`` (``spectune storage init``) creates or upgrades the Postgres schema, so
workers starting together cannot race on table creation (Optuna #1092, #4621).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from sqlalchemy.pool import NullPool

from spectune.storage.errors import StorageError, StudyNotFound
from spectune.storage.liveness import stale_requeue
from spectune.storage.locks import (
    AdvisoryStudyLock,
    FileStudyLock,
    JournalAppendLock,
    StudyLock,
)
from spectune.storage.options import StorageOptions
from spectune.storage.urls import StorageTarget

log = logging.getLogger(__name__)

T = TypeVar("T")

_cache: dict[tuple[StorageTarget, StorageOptions], BaseStorage] = {}
_cache_lock = threading.Lock()
_INIT_LOCK_KEY = 0x5E7C_0001  # pg_advisory_lock key serialising concurrent `storage init`s
# A journal's first line is one small entry (the first study's creation): read no more than this.
_FIRST_LINE_LIMIT = 1 << 20


def open_storage(
    target: StorageTarget, options: StorageOptions, *, create: bool = False
) -> BaseStorage:
    """The process's storage for ``target``: built once, then shared by every caller and thread.

    One engine (and pool) per process, however often the storage is asked for (Optuna #1347).
    ``create``: a journal file may be created (``study create``); a worker never creates one.
    """
    key = (target, options)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = build_storage(target, options, create=create)
        return _cache[key]


def build_storage(
    target: StorageTarget, options: StorageOptions, *, create: bool = False
) -> BaseStorage:
    """A new storage object (uncached: prefer ``open_storage``)."""
    if target.kind == "journal":
        path = target.journal_path
        if not path.exists():
            if not create:
                raise StorageError(
                    f"no journal file {path}; create a study there with `spectune study create`"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
        else:
            check_journal(path)
        lock = JournalAppendLock(path.with_name(path.name + ".append.lock"))
        return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
    return _connect(target, options, lambda: _postgres_storage(target, options))


def check_journal(path: Path) -> None:
    """Refuse a file that is not an Optuna journal, before anything reads or appends to it.

    Optuna takes a bad last line for a half-written entry and skips it, so such a file reads
    as empty; once a study is appended behind it, every read fails with a JSONDecodeError.
    Only the first line is read: an empty file is a new journal.
    """
    try:
        with path.open("rb") as stream:
            line = stream.readline(_FIRST_LINE_LIMIT)
    except OSError as error:
        raise StorageError(f"cannot read journal file {path}: {error.strerror or error}") from error
    if line and not _is_log_entry(line):
        raise StorageError(
            f"{path} is not an Optuna journal file (line 1 is not a JSON log entry); give "
            "--storage a journal made by spectune, or the path of a new file"
        )


def _is_log_entry(line: bytes) -> bool:
    if not line.endswith(b"\n"):
        # another process may be appending the first entry right now: judge its start only
        return line.startswith(b'{"op_code"')
    try:
        entry = json.loads(line)
    except ValueError:  # not JSON, or not UTF-8
        return False
    return isinstance(entry, dict) and "op_code" in entry


def open_existing_study(
    target: StorageTarget, options: StorageOptions, study_name: str
) -> BaseStorage:
    """The storage holding ``study_name``; StudyNotFound (nothing written) when it is absent."""
    missing = StudyNotFound(
        f"no study {study_name!r} in {target.masked}; create it with "
        f"`spectune study create --study-name {study_name} ...`"
    )
    if target.kind == "journal" and not target.journal_path.exists():
        raise missing
    storage = open_storage(target, options)
    try:
        storage.get_study_id_from_name(study_name)
    except KeyError:
        raise missing from None
    return storage


def study_lock(
    storage: BaseStorage, target: StorageTarget, study_name: str, study_id: int
) -> StudyLock:
    """The study-wide lock of this process (budget claims, sweeps, worker indices)."""
    if target.kind == "postgres":
        assert isinstance(storage, RDBStorage), storage
        return AdvisoryStudyLock(storage.engine, study_name, study_id)
    path = target.journal_path
    return FileStudyLock(path.with_name(f"{path.name}.study-{study_id}.lock"))


def init_storage(target: StorageTarget, options: StorageOptions) -> str:
    """Create the schema, or upgrade an old one; idempotent. Returns what was done."""
    if target.kind == "journal":
        folder = target.journal_path.parent
        folder.mkdir(parents=True, exist_ok=True)
        return f"journal storage ready in {folder}/ (each study's file is made by `study create`)"
    engine = sqlalchemy.create_engine(
        target.location, poolclass=NullPool, connect_args=_connect_args("spectune-init")
    )
    try:
        connection = _connect(target, options, engine.connect)
        with connection:
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            connection.execute(sqlalchemy.text(f"SELECT pg_advisory_lock({_INIT_LOCK_KEY})"))
            existed = sqlalchemy.inspect(connection).has_table("alembic_version")
            # Optuna's own upgrade path skips create_all on an existing schema: a migration may
            # create a table that create_all would already have made.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                storage = RDBStorage(
                    target.location,
                    engine_kwargs={"poolclass": NullPool, "connect_args": _connect_args()},
                    skip_compatibility_check=True,
                    skip_table_creation=existed,
                )
            current, head = storage.get_current_version(), storage.get_head_version()
            if current != head:
                storage.upgrade()
                done = f"upgraded the Optuna schema from {current} to {head}"
            else:
                done = f"{'found' if existed else 'created'} the Optuna schema {head}"
            storage.engine.dispose()
            connection.execute(sqlalchemy.text(f"SELECT pg_advisory_unlock({_INIT_LOCK_KEY})"))
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as error:
        reason = _reason(error, target)
        raise StorageError(f"storage init on {target.masked} failed: {reason}") from error
    finally:
        engine.dispose()
    return f"{done} in {target.masked}"


class ServiceRDBStorage(RDBStorage):
    """RDBStorage whose reads and idempotent writes survive a dropped connection.

    ``pool_pre_ping`` replaces connections that died while idle; this covers one that dies
    during a call (a Postgres restart mid-epoch), so the trial goes on instead of failing.
    Not retried: creating a trial and changing its state (a lost reply would double them).
    """

    retry_delays: tuple[float, ...] = ()


def _with_reconnect(method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def call(self: ServiceRDBStorage, *args: Any, **kwargs: Any) -> T:
        for delay in (*self.retry_delays, None):
            try:
                return method(self, *args, **kwargs)
            except Exception as error:
                if delay is None or not is_transient(error):
                    raise
                log.warning(
                    "Postgres connection lost in %s; retry in %.1f s", method.__name__, delay
                )
                time.sleep(delay)
        raise AssertionError("unreachable")

    return call


for _name in (
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_trial",
    "get_all_trials",
    "get_n_trials",
    "get_best_trial",
    "get_trial_id_from_study_id_trial_number",
    "set_trial_param",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "record_heartbeat",
    "_get_stale_trial_ids",
):
    setattr(ServiceRDBStorage, _name, _with_reconnect(getattr(RDBStorage, _name)))


def _postgres_storage(target: StorageTarget, options: StorageOptions) -> ServiceRDBStorage:
    grace = options.heartbeat_grace
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeat_interval is experimental
        storage = ServiceRDBStorage(
            target.location,
            engine_kwargs={
                "pool_pre_ping": True,
                "pool_size": options.pool_size,
                "max_overflow": options.max_overflow,
                "pool_recycle": options.pool_recycle,
                "connect_args": _connect_args(),
            },
            heartbeat_interval=options.heartbeat_interval,
            grace_period=grace,
            heartbeat_stale_trial_callback=stale_requeue(options),
            skip_table_creation=True,  # workers never create tables: `spectune storage init` does
        )
    storage.retry_delays = tuple(options.delays())
    return storage


def _connect_args(application: str = "spectune") -> dict[str, Any]:
    # connect_timeout: an unroutable host fails in seconds, not minutes; keepalives notice a
    # dead server during a long epoch; the pid in the name tells operators whose it is.
    return {
        "connect_timeout": 10,
        "application_name": f"{application}-{os.getpid()}",
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }


def _connect(target: StorageTarget, options: StorageOptions, attempt: Callable[[], T]) -> T:
    """``attempt()``, retried with backoff while Postgres is unreachable (it may start later)."""
    delays = options.delays()
    for number in range(1, options.connect_tries + 1):
        try:
            return attempt()
        except Exception as error:
            _raise_if_not_transient(error, target)
            reason = _reason(error, target)
            if number == options.connect_tries:
                raise StorageError(
                    f"cannot reach Postgres at {target.server} after {number} tries: {reason}; "
                    "is the db service up?"
                ) from error
            delay = delays[number - 1]
            log.warning(
                "cannot reach Postgres at %s (try %d of %d): %s; retrying in %.1f s",
                target.server,
                number,
                options.connect_tries,
                reason,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


# Connection errors from a server that answered (psycopg2 gives them no error code).
_NOT_TRANSIENT_MARKERS = ("does not exist", "authentication failed", "no pg_hba.conf entry")


def _raise_if_not_transient(error: Exception, target: StorageTarget) -> None:
    for cause in _chain(error):
        if isinstance(cause, sqlalchemy.exc.ProgrammingError) and _pgcode(cause) == "42P01":
            raise StorageError(
                f"{target.masked} has no Optuna tables; run `spectune storage init` with the "
                "same --storage first"
            ) from error
    if isinstance(error, RuntimeError) and "table schema" in str(error):
        raise StorageError(
            f"the Optuna schema in {target.masked} was made by another Optuna version "
            f"({error}); run `spectune storage init` to upgrade it"
        ) from error
    text = " ".join(str(cause) for cause in _chain(error))
    if any(marker in text for marker in _NOT_TRANSIENT_MARKERS):
        # the server answered: waiting will not create the database or fix the password
        raise StorageError(
            f"cannot open {target.masked}: {_reason(error, target)}; check the database name, "
            "user and password in the storage URL"
        ) from error
    if not is_transient(error):
        raise StorageError(f"cannot open {target.masked}: {_reason(error, target)}") from error


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _pgcode(error: sqlalchemy.exc.DBAPIError) -> str | None:
    return getattr(error.orig, "pgcode", None)


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is an outage that may pass: the server unreachable, a connection lost."""
    for cause in _chain(error):
        if isinstance(cause, sqlalchemy.exc.DBAPIError) and (
            cause.connection_invalidated
            or isinstance(cause, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError))
        ):
            return True
    return False


def _reason(error: BaseException, target: StorageTarget) -> str:
    """The most specific message in the chain, first line only, without the password."""
    innermost = error
    for cause in _chain(error):
        innermost = cause
        if isinstance(cause, sqlalchemy.exc.DBAPIError):
            innermost = cause.orig if isinstance(cause.orig, BaseException) else cause
            break
    lines = str(innermost).strip().splitlines()
    return target.redact(lines[0] if lines else type(innermost).__name__)


def load_study(
    storage: BaseStorage,
    study_name: str,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """``optuna.load_study`` for a study known to exist (see ``open_existing_study``)."""
    return optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
