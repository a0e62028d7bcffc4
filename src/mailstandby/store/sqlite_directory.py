"""The imported directory in the store's SQLite database: read it, and apply an import in one transaction.

Tables (store migration "directory import", in store/sqlite_schema.py): `directory_users` holds one row
per imported user (`source` `ldap` or `config`, the `User` as JSON);
`directory_imports` holds one row per applied import, and its largest
`generation` tells a running server that the directory changed.

An import reads the stored directory, plans, checks and writes inside one
transaction, so two imports racing (the server's timer and an administrator's
`mailstandby directory import`) never interleave, and a failure leaves the
previous directory exactly as it was. `SQLiteDirectoryStore` is the server's
(writes through the store's writer thread); `SQLiteDirectoryDB` is the command
line's (a connection of its own). `directory.stored` holds their contracts.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from mailstandby.directory.merge import Fresh, Plan, plan
from mailstandby.directory.records import Stored, from_json, to_json
from mailstandby.store.database import SQLStore, begin_snapshot, open_database


def load(db: sqlite3.Connection) -> dict[str, Stored]:
    """Every stored user by address key."""
    return {
        key: Stored(source, from_json(data))
        for key, source, data in db.execute("SELECT key, source, data FROM directory_users ORDER BY key")
    }


def generation(db: sqlite3.Connection) -> int:
    """The number of the last applied import (0: never imported)."""
    return db.execute("SELECT coalesce(max(generation), 0) FROM directory_imports").fetchone()[0]


def last_import(db: sqlite3.Connection) -> tuple[int, float, str] | None:
    row = db.execute("SELECT generation, at, origin FROM directory_imports ORDER BY generation DESC LIMIT 1").fetchone()
    return None if row is None else (row[0], row[1], row[2])


def snapshot(data_dir: Path, url: str = "") -> tuple[int, dict[str, Stored]]:
    """(generation, users) read consistently through a read-only connection of its own (any thread)."""
    db = open_database(data_dir, url, read_only=True)
    try:
        begin_snapshot(db)
        return generation(db), load(db)
    finally:
        db.close()


def apply_import(
    db: sqlite3.Connection, fresh: Fresh, *, origin: str, max_disable_fraction: float, dry_run: bool = False
) -> Plan:
    """Plan `fresh` against the stored directory and (unless `dry_run`) write it; the caller owns the
    transaction."""
    p = plan(load(db), fresh.users, max_disable_fraction=max_disable_fraction)
    if not dry_run:
        write_plan(db, p, origin=origin)
    return p


def write_plan(db: sqlite3.Connection, p: Plan, *, origin: str) -> None:
    """Write a plan made against the current generation; one that changes nothing records no generation."""
    if p.diff.empty and not p.write:
        return
    now = time.time()
    db.executemany(
        "INSERT INTO directory_users (key, source, enabled, data, updated_at) VALUES (?,?,?,?,?)"
        " ON CONFLICT (key) DO UPDATE SET source = excluded.source, enabled = excluded.enabled,"
        " data = excluded.data, updated_at = excluded.updated_at",
        [(s.key, s.source, int(s.user.enabled), to_json(s.user), now) for s in p.write],
    )
    db.executemany("DELETE FROM directory_users WHERE key = ?", [(k,) for k in p.delete])
    d = p.diff
    db.execute(
        "INSERT INTO directory_imports (at, origin, added, changed, disabled, removed) VALUES (?,?,?,?,?,?)",
        (now, origin, len(d.added), len(d.changed), len(d.disabled), len(d.removed)),
    )


class SQLiteDirectoryStore:
    """The server's view of the imported directory: `directory.stored.DirectoryStore` on the server's store."""

    def __init__(self, store: SQLStore) -> None:
        self.store = store

    def snapshot(self) -> tuple[int, dict[str, Stored]]:
        return snapshot(self.store.data_dir, self.store.settings.url)

    def generation(self) -> int:
        return generation(self.store.read_connection())

    async def write_plan(
        self, p: Plan, *, planned_at: int, fresh: Fresh, origin: str, max_disable_fraction: float
    ) -> Plan:
        def write(db: sqlite3.Connection) -> Plan:
            if generation(db) != planned_at:  # another import landed meanwhile: plan again, here
                return apply_import(db, fresh, origin=origin, max_disable_fraction=max_disable_fraction)
            write_plan(db, p, origin=origin)
            return p

        return await self.store.call(write)


class SQLiteDirectoryDB:
    """The command line's: `directory.stored.StoredDirectory` on a connection of its own (schema brought up to
    date on opening)."""

    def __init__(self, data_dir: Path, *, url: str = "") -> None:
        self.data_dir = data_dir
        self.url = url
        self._db = open_database(data_dir, url)

    def close(self) -> None:
        self._db.close()

    def load(self) -> dict[str, Stored]:
        return load(self._db)

    def generation(self) -> int:
        return generation(self._db)

    def last_import(self) -> tuple[int, float, str] | None:
        return last_import(self._db)

    def snapshot(self) -> tuple[int, dict[str, Stored]]:
        return snapshot(self.data_dir, self.url)

    def apply_import(self, fresh: Fresh, *, origin: str, max_disable_fraction: float, dry_run: bool) -> Plan:
        """Plan and (unless `dry_run`) write `fresh` in one IMMEDIATE transaction."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            applied = apply_import(db, fresh, origin=origin, max_disable_fraction=max_disable_fraction, dry_run=dry_run)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return applied
