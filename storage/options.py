"""Liveness, retry and connection settings of a storage (the defaults suit GPU epochs)."""

from __future__ import annotations

from dataclasses import dataclass

from spectune.storage.errors import StorageError


@dataclass(frozen=True)
class StorageOptions:
    """How workers keep their trials alive and how they reach Postgres.

    ``heartbeat_interval``: seconds between two signs of life of a running trial (Optuna's
    heartbeat on Postgres, the service's lease on a journal file). ``heartbeat_grace``: seconds
    without one after which another worker fails the trial and re-queues its configuration, at
    most ``max_retry`` times. Connection attempts at start: ``connect_tries``, waiting
    ``connect_delay`` seconds, doubling up to ``connect_delay_cap``.
    """

    heartbeat_interval: int = 60
    heartbeat_grace: int = 600
    max_retry: int = 3
    connect_tries: int = 6
    connect_delay: float = 1.0
    connect_delay_cap: float = 30.0
    # A worker uses about 3 connections at once (main loop, heartbeat thread, sweep thread)
    # plus its dedicated lock connection; a small pool keeps 100 workers under max_connections.
    pool_size: int = 2
    max_overflow: int = 2
    pool_recycle: int = 300  # seconds; NATs and proxies drop idle connections after ~5-15 min

    def __post_init__(self) -> None:
        if self.heartbeat_interval < 1:
            raise StorageError(f"heartbeat interval must be >= 1 s, got {self.heartbeat_interval}")
        if self.heartbeat_grace <= self.heartbeat_interval:
            raise StorageError(
                f"heartbeat grace ({self.heartbeat_grace} s) must exceed the heartbeat interval "
                f"({self.heartbeat_interval} s), or live trials would be failed as stale"
            )
        if self.max_retry < 0:
            raise StorageError(f"max retry must be >= 0, got {self.max_retry}")
        if self.connect_tries < 1:
            raise StorageError(f"connect tries must be >= 1, got {self.connect_tries}")
        if self.connect_delay < 0 or self.connect_delay_cap < self.connect_delay:
            raise StorageError(
                f"connect delay must be >= 0 and <= its cap {self.connect_delay_cap}, "
                f"got {self.connect_delay}"
            )
        if self.pool_size < 1 or self.max_overflow < 0:
            raise StorageError(
                f"pool size must be >= 1 and overflow >= 0, got {self.pool_size}, "
                f"{self.max_overflow}"
            )

    def delays(self) -> list[float]:
        """Waits between connection attempts: exponential backoff, capped."""
        return [
            min(self.connect_delay * 2**attempt, self.connect_delay_cap)
            for attempt in range(self.connect_tries - 1)
        ]
