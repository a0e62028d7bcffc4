"""Connections of their own (the command line, the failback sync): SQLite file or PostgreSQL server.

`open_database(data_dir, url)` answers a connection whose `execute`/`executemany` take the
shared dialect (store/postgres.py), schema brought up to date unless `read_only`: the SQLite
database under `data_dir` when `url` is empty, else the PostgreSQL server `url` names.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from mailstandby.config import StoreSettings
from mailstandby.store.mailbox import Change
from mailstandby.store.paths import database_path
from mailstandby.store.postgres import PgConnection, connect_pg, migrate_pg
from mailstandby.store.sqlite_schema import connect, migrate

T = TypeVar("T")


def database_exists(data_dir: Path, url: str = "") -> bool:
    """Whether there is a store to read: the SQLite file, or a PostgreSQL database a server has set up
    (StoreError when the server cannot be reached)."""
    if not url:
        return database_path(data_dir).exists()
    db = connect_pg(url)
    try:
        return bool(db.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0])
    finally:
        db.close()


def open_database(data_dir: Path, url: str = "", *, read_only: bool = False) -> Any:
    """A connection of its own; `read_only` opens an existing SQLite database without changing it."""
    if url:
        pg = connect_pg(url)
        try:
            if not read_only:
                migrate_pg(pg)
        except BaseException:
            pg.close()
            raise
        return pg
    path = database_path(data_dir)
    if read_only:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = connect(path)
    try:
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def begin_snapshot(db: Any) -> None:
    """Start a read transaction in which every statement sees the same committed state."""
    if isinstance(db, PgConnection):
        db.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    else:
        db.execute("BEGIN")


class SQLStore(Protocol):
    """What the area modules (store/sqlite_*.py) need of the server's store: `SQLiteStore` or
    `PostgresStore`. `call(fn)` runs `fn(db)` in the writer's group-committed transaction (its own
    savepoint) and returns once that committed; `read_connection()` is the event loop's."""

    data_dir: Path
    settings: StoreSettings

    async def call(self, fn: Callable[[Any], T]) -> T: ...

    def read_connection(self) -> Any: ...

    def announce(self, changes: list[Change]) -> None:
        """Committed mailbox changes, made known to the other nodes sharing the store (if any)."""
        ...
