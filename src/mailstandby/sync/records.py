"""What the failback sync keeps in the store, and the lock that lets one sync run at a time.

`SyncRecords` is the contract (store/sqlite_sync.py implements it on SQLite):
one record per (user, message body, primary folder); a message body id is never
reused and survives COPY/MOVE on the standby, so it names "this message" for
good. Every write is durable when its call returns.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from mailstandby.sync.plan import Kind, Reason, Record, StandbyMessage, SyncStatus


class SyncRecords(Protocol):
    """The sync's records and the standby mail it reads, as the engine needs them."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def run_started(self, term: int, node: str, detail: str) -> None:
        """Record that the leader `node` starts a failback run in `term`; NotLeading (nothing recorded)
        when that term is no longer the current one."""
        ...

    async def instance(self) -> int:
        """This installation's random id (in the trace header), created once."""
        ...

    async def users(self) -> list[str]:
        """Every user with a standby mailbox."""
        ...

    async def candidates(self, users: Sequence[str]) -> list[StandbyMessage]:
        """Standby-only messages, and journal copies with flags, of `users`, oldest first."""
        ...

    async def records(self, users: Sequence[str]) -> dict[tuple[str, int, str], Record]: ...

    async def body(self, body_id: int) -> bytes | None: ...

    async def status(self, users: Sequence[str] | None = None) -> SyncStatus: ...

    async def failures(self) -> list[tuple[str, str, int, int, str]]:
        """(user, folder, body id, attempts, last error) of every record that was given up."""
        ...

    async def plan(self, items: Sequence[tuple[StandbyMessage, str, Kind]]) -> None:
        """Create pending records for work found (existing records keep their state and attempts,
        except a done record whose flags must be brought up to date, which is pending again)."""
        ...

    async def finish(self, done: Sequence[tuple[str, int, str, frozenset[str], Reason, int | None]]) -> None:
        """Mark records done: (user, body id, folder, flags the primary copy now has, reason, primary uid)."""
        ...

    async def forget(self, keys: Sequence[tuple[str, int, str]]) -> None:
        """Drop pending records (user, body id, folder) of messages that no longer need syncing."""
        ...

    async def refused(self, user: str, body_id: int, folder: str, error: str, max_attempts: int) -> bool:
        """Count a refusal; returns True when the record is now given up (failed)."""
        ...


class RunLock:
    """One failback sync at a time on a store, across processes: the server's own sync and
    `mailstandby sync run` would otherwise plan and append the same messages side by side.
    An exclusive flock(2) on `run/sync.lock` in the data directory; the kernel releases it when the
    holder exits, kill -9 included, so a crash never leaves a stale lock."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "run" / "sync.lock"
        self._fd: int | None = None

    def acquire(self) -> str | None:
        """Take the lock; None when taken, else what the holder wrote (its pid and start time)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("ascii", "replace").strip()
            os.close(fd)
            return holder or "another process"
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        self._fd = fd
        return None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.ftruncate(fd, 0)
            os.close(fd)  # closing the descriptor drops the flock
