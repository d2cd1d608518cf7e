"""``spectune dashboard``: optuna-dashboard on the workers' storage, after the checks it lacks.

optuna-dashboard neither creates tables nor compares Optuna versions; opening the storage
through spectune refuses an uninitialised or outdated Postgres schema and a missing journal
(and uses the journal's own file lock), and studies created by another Optuna version are named.
"""

from __future__ import annotations

import socket

import optuna
from optuna.storages import BaseStorage

from spectune.storage import attrs

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def version_warnings(storage: BaseStorage) -> list[str]:
    """One line per study whose recorded Optuna version differs from the running one."""
    running = optuna.__version__
    found = []
    for study in storage.get_all_studies():
        spec = study.user_attrs.get(attrs.SPEC) or {}
        recorded = (spec.get("versions") or {}).get("optuna")
        if recorded and recorded != running:
            found.append(
                f"study {study.study_name} was created with Optuna {recorded}, this dashboard "
                f"runs Optuna {running}: install the workers' version here"
            )
    return found


def check_port(host: str, port: int) -> None:
    """OSError when ``host:port`` cannot be listened on (taken, or no such address here).

    Checked before anything is printed: Bottle announces "Listening on ..." before it binds.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as Bottle's WSGIRefServer
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server does
        probe.bind((host, port))


def serve(storage: BaseStorage, host: str, port: int) -> None:
    """Block serving optuna-dashboard until interrupted."""
    from optuna_dashboard import run_server

    run_server(storage, host=host, port=port)
