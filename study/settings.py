"""The one place that reads environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from spectune.study.typed import ConfigError

N = TypeVar("N", int, float)


def data_root(cli_value: str | None) -> Path:
    """``--data-root``, else ``SPECTUNE_DATA_ROOT``, else ``./data``."""
    return Path(cli_value or os.environ.get("SPECTUNE_DATA_ROOT") or "data")


def cache_dir(cli_value: str | None) -> Path:
    """Where prepared graphs are cached: --cache-dir, SPECTUNE_CACHE_DIR, else ./runs/cache."""
    return Path(cli_value or os.environ.get("SPECTUNE_CACHE_DIR") or "runs/cache")


def storage_url(cli_value: str | None) -> str | None:
    """``--storage``, else ``SPECTUNE_STORAGE``; None means the default journal file."""
    return cli_value or os.environ.get("SPECTUNE_STORAGE") or None


def heartbeat_interval(cli_value: int | None) -> int | None:
    """Seconds between heartbeats: ``--heartbeat-interval``, ``SPECTUNE_HEARTBEAT_INTERVAL``."""
    return _number(cli_value, "SPECTUNE_HEARTBEAT_INTERVAL", int)


def heartbeat_grace(cli_value: int | None) -> int | None:
    """Seconds without heartbeat before a trial is stale: ``--heartbeat-grace``, env."""
    return _number(cli_value, "SPECTUNE_HEARTBEAT_GRACE", int)


def max_retry(cli_value: int | None) -> int | None:
    """Re-runs of a configuration whose worker died: ``--max-retry``, ``SPECTUNE_MAX_RETRY``."""
    return _number(cli_value, "SPECTUNE_MAX_RETRY", int)


def connect_tries(cli_value: int | None) -> int | None:
    """Postgres connection attempts at start: ``--connect-tries``, ``SPECTUNE_CONNECT_TRIES``."""
    return _number(cli_value, "SPECTUNE_CONNECT_TRIES", int)


def connect_delay(cli_value: float | None) -> float | None:
    """First wait between attempts (doubling): ``--connect-delay``, ``SPECTUNE_CONNECT_DELAY``."""
    return _number(cli_value, "SPECTUNE_CONNECT_DELAY", float)


def gpu_count() -> int | None:
    """``SPECTUNE_GPU_COUNT``: pretend this many GPUs exist (tests, dry runs); None: ask CUDA."""
    return _number(None, "SPECTUNE_GPU_COUNT", int)


def gpu_slot_dir(cli_value: str | None) -> Path:
    """Host-local GPU claims: ``--gpu-slot-dir``, ``SPECTUNE_GPU_SLOT_DIR``, or a /tmp folder."""
    return Path(cli_value or os.environ.get("SPECTUNE_GPU_SLOT_DIR") or "/tmp/spectune-gpu-slots")


def _number(cli_value: N | None, variable: str, kind: type[N]) -> N | None:
    if cli_value is not None:
        return cli_value
    raw = os.environ.get(variable)
    if raw is None or raw.strip() == "":
        return None
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{variable}={raw!r} must be {kind.__name__}") from None


def artifact_dir(cli_value: str | None) -> Path:
    """Checkpoints of study trials: --artifact-dir, SPECTUNE_ARTIFACT_DIR, else ./runs/artifacts.

    With workers on several machines, point it at a shared filesystem."""
    return Path(cli_value or os.environ.get("SPECTUNE_ARTIFACT_DIR") or "runs/artifacts")


def download_cache_dir(cli_value: str | None) -> Path:
    """Source wheels of the MovieLens presets: --download-cache, else $SPECTUNE_CACHE_DIR/wheels,
    else ~/.cache/spectune/wheels."""
    if cli_value:
        return Path(cli_value)
    cache = os.environ.get("SPECTUNE_CACHE_DIR")
    return Path(cache) / "wheels" if cache else Path.home() / ".cache" / "spectune" / "wheels"
