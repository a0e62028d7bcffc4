"""The imported directory as the store keeps it: what the directory needs of the store.

The store (store/sqlite_directory.py) keeps one record per imported user and one per applied
import; the largest import `generation` tells a running server that the directory changed.
An import is planned against the stored directory and written in one transaction, so two
imports racing (the server's timer and an administrator's `mailstandby directory import`) never
interleave, and a failure leaves the previous directory exactly as it was.
"""

from __future__ import annotations

from typing import Protocol

from mailstandby.directory.merge import Fresh, Plan
from mailstandby.directory.records import Stored


class StoredDirectory(Protocol):
    """The stored directory from the command line (one connection, synchronous)."""

    def load(self) -> dict[str, Stored]:
        """Every stored user by address key."""
        ...

    def generation(self) -> int:
        """The number of the last applied import (0: never imported)."""
        ...

    def last_import(self) -> tuple[int, float, str] | None:
        """(generation, when, origin) of the last applied import."""
        ...

    def apply_import(self, fresh: Fresh, *, origin: str, max_disable_fraction: float, dry_run: bool) -> Plan:
        """Plan `fresh` against the stored directory and (unless `dry_run`) write it, in one transaction."""
        ...


class DirectoryStore(Protocol):
    """The stored directory as the server uses it."""

    def snapshot(self) -> tuple[int, dict[str, Stored]]:
        """(generation, users) read consistently, on a connection of its own (any thread)."""
        ...

    def generation(self) -> int:
        """The last applied import's generation, read on the event loop."""
        ...

    async def write_plan(
        self, p: Plan, *, planned_at: int, fresh: Fresh, origin: str, max_disable_fraction: float
    ) -> Plan:
        """Write `p`, made against generation `planned_at`; when another import landed meanwhile, plan
        `fresh` again inside the writing transaction instead. Returns the plan written."""
        ...
