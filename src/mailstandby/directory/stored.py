"""The imported directory in the store: read it, and apply an import in the caller's transaction.

Tables (store migration "directory import", in store/sqlite.py): `directory_users` holds one row
per imported user (`source` `ldap` or `config`, the `User` as JSON);
`directory_imports` holds one row per applied import, and its largest
`generation` tells a running server that the directory changed.

`apply_import` reads the stored directory, plans, checks and writes inside
the transaction it is given, so two imports racing (the server's timer and an
administrator's `mailstandby directory import`) never interleave, and a
failure leaves the previous directory exactly as it was.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from mailstandby.directory.merge import Fresh, Plan, plan
from mailstandby.directory.records import Stored, from_json, to_json


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


def snapshot(path: Path) -> tuple[int, dict[str, Stored]]:
    """(generation, users) read consistently through a read-only connection of its own (any thread)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        db.execute("BEGIN")
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
        "INSERT OR REPLACE INTO directory_users (key, source, enabled, data, updated_at) VALUES (?,?,?,?,?)",
        [(s.key, s.source, int(s.user.enabled), to_json(s.user), now) for s in p.write],
    )
    db.executemany("DELETE FROM directory_users WHERE key = ?", [(k,) for k in p.delete])
    d = p.diff
    db.execute(
        "INSERT INTO directory_imports (at, origin, added, changed, disabled, removed) VALUES (?,?,?,?,?,?)",
        (now, origin, len(d.added), len(d.changed), len(d.disabled), len(d.removed)),
    )
