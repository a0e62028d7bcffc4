"""The store's SQLite database as tests and benchmarks look into it: for assertions, and to stage a crash.

The product reaches the database only through `mailstandby.store`; a test that must see
what is on disk (another process's view, a row a crash would leave behind) opens it here,
at the path the store itself names (`store.paths.database_path`).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mailstandby.store.paths import database_path
from mailstandby.store.sqlite_schema import connect, migrate


def create(data_dir: Path) -> None:
    """An empty store (every table, no rows) under `data_dir`, as the server's first start leaves it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db = connect(database_path(data_dir))
    try:
        migrate(db)
    finally:
        db.close()


@contextlib.contextmanager
def database(data_dir: Path, *, read_only: bool = False, timeout: float = 5.0) -> Iterator[sqlite3.Connection]:
    """A connection of its own to the store's database under `data_dir`, closed on exit."""
    path = database_path(data_dir)
    if read_only:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)
    else:
        db = sqlite3.connect(path, timeout=timeout)
    try:
        yield db
    finally:
        db.close()


def query(
    data_dir: Path, sql: str, args: Sequence[Any] = (), *, timeout: float = 5.0, url: str = ""
) -> list[tuple[Any, ...]]:
    """Every row of a read, on a read-only connection (`url`: the PostgreSQL store instead)."""
    if url:
        return [tuple(r) for r in _pg_query(url, sql, args)]
    with database(data_dir, read_only=True, timeout=timeout) as db:
        return db.execute(sql, args).fetchall()


def query_dicts(data_dir: Path, sql: str, args: Sequence[Any] = (), *, url: str = "") -> list[dict[str, Any]]:
    """Every row of a read as a dict by column name, on a read-only connection (`url`: PostgreSQL)."""
    if url:
        return _pg_query(url, sql, args, dicts=True)
    with database(data_dir, read_only=True) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(sql, args)]


def _pg_query(url: str, sql: str, args: Sequence[Any], *, dicts: bool = False) -> list[Any]:
    """The same read on the PostgreSQL store, the statement spelled as the store spells it."""
    import psycopg
    from psycopg.rows import dict_row

    from mailstandby.store.postgres import pg_sql

    with psycopg.connect(url, autocommit=True, row_factory=dict_row if dicts else None) as db:  # type: ignore[arg-type]
        return list(db.execute(pg_sql(sql), tuple(args)).fetchall())


def change(data_dir: Path, sql: str, args: Sequence[Any] = ()) -> None:
    """One committed write (staging what a crash would leave behind)."""
    with database(data_dir) as db:
        db.execute(sql, args)
        db.commit()
