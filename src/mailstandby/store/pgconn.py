"""Connections to the PostgreSQL store: the shared SQL dialect in PostgreSQL's spelling, a connection with
the part of sqlite3.Connection the store modules use, reconnection with backoff, and migrations.

Every connection asks for TCP keepalives and a TCP user timeout unless the URL sets its own: a server
that vanished without closing (a dead host, a partition, a failed-over address) is noticed within
about half a minute instead of the kernel's two hours, so the store reports itself unavailable and
reconnects (libpq tries each host of a multi-host URL again) on its own.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict

from mailstandby.store.base import StoreError
from mailstandby.store.postgres_schema import PG_MIGRATIONS

log = logging.getLogger(__name__)

_USER = re.compile(r'(?<![\w"])user(?![\w"])')
_WEAK_COMMIT = ("off", "local")  # a commit that may return before the WAL (or the sync standby) has it
_WRITER_IDLE_IN_TRANSACTION_MS = 5000  # a paused node's open transaction is ended by the server after this
_MIGRATION_LOCK = 0x6D736273  # pg_advisory_xact_lock key: one node migrates at a time
DEFAULT_CONNECT_TIMEOUT = 10  # seconds per host (StoreSettings.connect_timeout)
RECONNECT_FIRST = 0.1  # seconds before the first new attempt after a failed connection
RECONNECT_MAX = 5.0  # the backoff's ceiling while the server stays away
# libpq parameters set when the URL has none of its own: a silent peer is given up on in about 30 s
TCP_DEFAULTS = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30000,
}


@functools.lru_cache(maxsize=2048)
def pg_sql(sql: str) -> str:
    """A statement of the shared dialect in PostgreSQL's spelling (see the module docstring)."""
    if sql.strip().upper() == "BEGIN IMMEDIATE":
        return "BEGIN"
    return _USER.sub('"user"', sql.replace("%", "%%").replace("?", "%s"))


class Reconnect:
    """A new connection to a server that went away (restart, a promoted replica: libpq tries the hosts of a
    multi-host `url` again), no sooner than the backoff allows: after a failed attempt the next waits
    RECONNECT_FIRST seconds, doubling to RECONNECT_MAX; within the wait the store answers at once that it
    is unavailable, so a dead server is not dialled for every command."""

    def __init__(self, url: str, timeout: int = DEFAULT_CONNECT_TIMEOUT, *, writer: bool = False) -> None:
        self.url = url
        self.timeout = timeout
        self.writer = writer
        self._delay = 0.0
        self._next = 0.0

    def connect(self) -> PgConnection:
        if time.monotonic() < self._next:
            raise StoreError("the store's server is unavailable; a new connection is tried shortly")
        try:
            db = connect_pg(self.url, timeout=self.timeout, writer=self.writer)
        except StoreError:
            self._delay = min(RECONNECT_MAX, self._delay * 2 or RECONNECT_FIRST)
            self._next = time.monotonic() + self._delay
            raise
        self._delay = self._next = 0.0
        return db


class PgConnection:
    """A psycopg connection (autocommit) with the part of sqlite3.Connection the store modules use.

    A statement that meets a lost server raises StoreError (temporary: the sessions answer 4xx); with
    `reconnect` set, a SELECT outside a transaction is first tried once more on a new connection."""

    def __init__(self, conn: psycopg.Connection[Any], reconnect: Reconnect | None = None) -> None:
        self.conn = conn
        self.reconnect = reconnect
        self._reconnecting = threading.Lock()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        idle = self.conn.closed or self.conn.info.transaction_status == pq.TransactionStatus.IDLE
        try:
            return self.conn.execute(pg_sql(sql), tuple(params))
        except psycopg.OperationalError as e:
            if not self.broken:
                raise
            if self.reconnect is None or not idle or not sql.lstrip().upper().startswith("SELECT"):
                raise StoreError(f"the store's server went away: {e}") from e
        with self._reconnecting:  # the event loop and worker threads share the read connection
            if self.broken:
                log.warning("the store's server went away; reconnecting")
                self.conn.close()
                self.conn = self.reconnect.connect().conn
        try:
            return self.conn.execute(pg_sql(sql), tuple(params))
        except psycopg.OperationalError as e:
            if not self.broken:
                raise
            raise StoreError(f"the store's server went away: {e}") from e

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> psycopg.Cursor[Any]:
        cur = self.conn.cursor()
        batch = [tuple(r) for r in rows]
        if batch:
            try:
                cur.executemany(pg_sql(sql), batch)
            except psycopg.OperationalError as e:
                if not self.broken:
                    raise
                raise StoreError(f"the store's server went away: {e}") from e
        return cur

    @property
    def in_transaction(self) -> bool:
        return self.conn.info.transaction_status != pq.TransactionStatus.IDLE

    @property
    def broken(self) -> bool:
        return self.conn.closed or self.conn.info.transaction_status == pq.TransactionStatus.UNKNOWN

    def close(self) -> None:
        self.conn.close()


def tcp_options(url: str) -> dict[str, Any]:
    """TCP_DEFAULTS for a connection to `url`, less what the URL sets itself (an unparsable URL gets
    none: psycopg reports it when connecting)."""
    try:
        given = conninfo_to_dict(url)
    except psycopg.Error:
        return {}
    return {k: v for k, v in TCP_DEFAULTS.items() if k not in given}


def connect_pg(
    url: str, *, reconnect_reads: bool = False, timeout: int = DEFAULT_CONNECT_TIMEOUT, writer: bool = False
) -> PgConnection:
    """An autocommit connection whose commits wait for the WAL flush (`synchronous_commit` at least `on`;
    a stronger server setting such as `remote_apply` is kept); `timeout`: seconds per host of the URL;
    `reconnect_reads`: reads re-run once on a new connection after the server went away;
    `writer`: the server ends the session if it ever sits idle inside a transaction (the writer never
    does unless its process is paused: then it must not hold the leadership row's lock)."""
    try:
        conn = psycopg.connect(
            url, autocommit=True, connect_timeout=timeout, application_name="mailstandby", **tcp_options(url)
        )
        if conn.execute("SHOW synchronous_commit").fetchone()[0] in _WEAK_COMMIT:  # keep remote_write/remote_apply
            conn.execute("SET synchronous_commit = on")
    except psycopg.Error as e:
        raise StoreError(f"cannot connect to the PostgreSQL store: {e}") from e
    if writer:
        try:
            conn.execute(f"SET idle_in_transaction_session_timeout = {_WRITER_IDLE_IN_TRANSACTION_MS}")
        except psycopg.Error as e:
            conn.close()
            raise StoreError(f"cannot set up the PostgreSQL store's writer: {e}") from e
    return PgConnection(conn, Reconnect(url, timeout) if reconnect_reads else None)


def schema_version(db: PgConnection) -> int:
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
    row = db.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate_pg(db: PgConnection) -> int:
    """Bring the schema to the newest version (one node at a time); returns the version."""
    db.execute("BEGIN")
    try:
        db.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        version = schema_version(db)
        if version > len(PG_MIGRATIONS):
            raise StoreError(f"store schema v{version} is newer than this mailstandby (v{len(PG_MIGRATIONS)})")
        for script in PG_MIGRATIONS[version:]:
            db.conn.execute(script)  # several statements, no parameters: sent as one simple query
        if version == 0:
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (len(PG_MIGRATIONS),))
        else:
            db.execute("UPDATE schema_version SET version = ?", (len(PG_MIGRATIONS),))
        db.execute("COMMIT")
    except BaseException:
        if not db.broken:
            db.execute("ROLLBACK")
        raise
    return len(PG_MIGRATIONS)


def store_error(e: Exception, what: str) -> StoreError:
    if isinstance(e, StoreError):
        return e
    return StoreError(f"{what}: {e}", no_space=isinstance(e, psycopg.errors.DiskFull))
