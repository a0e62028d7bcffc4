"""Notifications, setup tokens and one-time codes in the store's SQLite database (`notify.records.NotifyStore`).

Tables (store migration "user notifications", in store/sqlite_schema.py): `notifications` holds one row
per (user, kind, occurrence, mode, destination); `setup_tokens` holds SHA-256 of each setup link
token and an HMAC of each one-time code, with the user, expiry, use and wrong tries.

`SQLiteNotifyStore` is the server's: writes run in the store's writer thread, group-committed,
each in its own savepoint; reads use the event loop's read connection. `SQLiteNotifyDB` is the
command line's (and a test's beside a running server): a connection of its own, each write one
IMMEDIATE transaction, as `mailstandby passwd` does with credentials.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from mailstandby.notify.compose import Mode
from mailstandby.notify.records import NewRow, Row, State
from mailstandby.notify.tokens import Purpose, TokenProblem, TokenRow, problem
from mailstandby.store.base import NewMessage, QueuedMessage, StoreError
from mailstandby.store.database import SQLStore, open_database
from mailstandby.store.fencing import fence

T = TypeVar("T")

_COLUMNS = "id, user, kind, occurrence, mode, destination, payload, attempts"


# -- statements, run on the connection they are given ------------------------------------------
def _insert_rows(db: sqlite3.Connection, rows: Sequence[NewRow], now: float, not_before: float = 0.0) -> int:
    """Add (user, kind, occurrence, mode, destination, payload) rows that do not exist yet; the count added."""
    added = 0
    for user, kind, occurrence, mode, destination, payload in rows:
        cur = db.execute(
            "INSERT INTO notifications (user, kind, occurrence, mode, destination, payload, state,"
            " next_attempt, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (user, kind, occurrence, mode.value, destination, payload, State.PENDING.value, not_before, now, now),
        )
        added += cur.rowcount
    return added


def _add_token(db: sqlite3.Connection, hashed: str, user: str, purpose: Purpose, now: float, expires: float) -> None:
    db.execute(
        "INSERT INTO setup_tokens (hash, user, purpose, created_at, expires_at) VALUES (?,?,?,?,?)"
        " ON CONFLICT DO NOTHING",
        (hashed, user, purpose.value, now, expires),
    )


def _find(db: sqlite3.Connection, hashed: str) -> TokenRow | None:
    row = db.execute(
        "SELECT user, purpose, expires_at, used_at, tries FROM setup_tokens WHERE hash = ?", (hashed,)
    ).fetchone()
    return None if row is None else TokenRow(row[0], Purpose(row[1]), row[2], row[3], row[4])


def _consume(db: sqlite3.Connection, hashed: str, now: float) -> TokenProblem | None:
    """Mark a token used, atomically; the problem when it cannot be."""
    why = problem(_find(db, hashed), now)
    if why is None:
        db.execute("UPDATE setup_tokens SET used_at = ? WHERE hash = ?", (now, hashed))
    return why


def _try_code(db: sqlite3.Connection, user: str, hashed: str, now: float) -> TokenProblem | None:
    """Use the user's code; a wrong code counts against every live code of the user."""
    row = _find(db, hashed)
    if row is not None and row.user == user and row.purpose is Purpose.CODE:
        return _consume(db, hashed, now)
    db.execute(
        "UPDATE setup_tokens SET tries = tries + 1 WHERE user = ? AND purpose = ? AND used_at IS NULL",
        (user, Purpose.CODE.value),
    )
    return TokenProblem.UNKNOWN


def _add_code(db: sqlite3.Connection, hashed: str, user: str, now: float, expires: float, *, limit: int) -> bool:
    """Record a one-time code unless `user` has `limit` live ones already: the count and the insert are
    one step of the writer transaction, so requests in parallel cannot pass the limit together."""
    if _live_codes(db, user, now) >= limit:
        return False
    _add_token(db, hashed, user, Purpose.CODE, now, expires)
    return True


def _live_codes(db: sqlite3.Connection, user: str, now: float) -> int:
    return db.execute(
        "SELECT count(*) FROM setup_tokens WHERE user = ? AND purpose = ? AND expires_at > ?",
        (user, Purpose.CODE.value, now),
    ).fetchone()[0]


def _read_status(
    db: sqlite3.Connection, *, user: str | None = None, kind: str | None = None, occurrence: str | None = None
) -> list[dict[str, Any]]:
    sql = (
        "SELECT n.id, n.user, n.kind, n.occurrence, n.mode, n.destination, n.state, n.attempts, n.next_attempt,"
        " n.last_error, n.message_id, n.created_at, n.updated_at, d.state FROM notifications n"
        " LEFT JOIN deliveries d ON d.message_id = n.message_id AND d.rcpt = n.destination WHERE 1=1"
    )
    args: list[str] = []
    for column, value in (("n.user", user), ("n.kind", kind), ("n.occurrence", occurrence)):
        if value is not None:
            sql += f" AND {column} = ?"
            args.append(value)
    cols = (
        "id", "user", "kind", "occurrence", "mode", "destination", "state", "attempts", "next_attempt",
        "last_error", "message_id", "created_at", "updated_at", "queue_state",
    )  # fmt: skip
    return [dict(zip(cols, r, strict=True)) for r in db.execute(sql + " ORDER BY n.id", args)]


def _passwords(db: sqlite3.Connection) -> set[str]:
    return {u for (u,) in db.execute("SELECT user FROM credentials")}


class SQLiteNotifyStore:
    """`NotifyStore` on the open server store (SQLite or PostgreSQL) (the server's)."""

    def __init__(self, store: SQLStore) -> None:
        self._store = store
        self._read: Callable[[], sqlite3.Connection] = store.read_connection
        self._call: Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]] = store.call

    async def accept(self, message: NewMessage) -> QueuedMessage:
        return await self._store.accept(message)

    def queued(self, message_id: str) -> bool:
        return self._read().execute("SELECT 1 FROM messages WHERE id = ?", (message_id,)).fetchone() is not None

    # -- notification rows ----------------------------------------------------------------------
    async def add_notices(
        self, rows: Sequence[NewRow], now: float, *, links: Sequence[tuple[str, str]] = (), link_expires: float = 0.0
    ) -> int:
        def run(db: sqlite3.Connection) -> int:
            for hashed, user in links:
                _add_token(db, hashed, user, Purpose.LINK, now, link_expires)
            return _insert_rows(db, rows, now)

        return int(await self._call(run))

    async def add_code(
        self, hashed: str, user: str, rows: Sequence[NewRow], now: float, expires: float, *, limit: int
    ) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            if not _add_code(db, hashed, user, now, expires, limit=limit):
                return False
            _insert_rows(db, rows, now)
            return True

        return bool(await self._call(run))

    async def add_forward_summary(
        self, rows: Sequence[NewRow], *, user: str, kind: str, occurrence: str, now: float, limit: int
    ) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            recent = db.execute(
                "SELECT count(DISTINCT occurrence) FROM notifications WHERE user = ? AND kind = ?"
                " AND created_at > ? AND occurrence != ?",
                (user, kind, now - 3600, occurrence),
            ).fetchone()[0]
            if recent >= limit:
                return False
            _insert_rows(db, rows, now)
            return True

        return bool(await self._call(run))

    def due(self, now: float) -> tuple[list[Row], float | None]:
        db = self._read()
        try:
            rows = [
                Row(r[0], r[1], r[2], r[3], Mode(r[4]), r[5], r[6], r[7])
                for r in db.execute(
                    f"SELECT {_COLUMNS} FROM notifications WHERE state = ? AND next_attempt <= ? ORDER BY id LIMIT 500",
                    (State.PENDING.value, now),
                )
            ]
            nxt = db.execute(
                "SELECT min(next_attempt) FROM notifications WHERE state = ? AND next_attempt > ?",
                (State.PENDING.value, now),
            ).fetchone()[0]
        except (sqlite3.Error, psycopg.Error) as e:
            raise StoreError(f"cannot read pending notifications: {e}") from e
        return rows, nxt

    async def postpone(self, row_id: int, until: float, reason: str, now: float) -> None:
        def run(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE notifications SET next_attempt = ?, last_error = ?, updated_at = ? WHERE id = ? AND state = ?",
                (until, reason, now, row_id, State.PENDING.value),
            )

        await self._call(run)

    async def record_attempt(
        self,
        row_id: int,
        *,
        term: int,
        state: State,
        attempts: int,
        next_attempt: float,
        error: str,
        message_id: str,
        now: float,
    ) -> None:
        def run(db: sqlite3.Connection) -> None:
            fence(db, term)
            db.execute(
                "UPDATE notifications SET state = ?, attempts = ?, next_attempt = ?, last_error = ?, message_id = ?,"
                " updated_at = ?, term = ? WHERE id = ? AND state = ?",
                (state.value, attempts, next_attempt, error[:500], message_id, now, term, row_id, State.PENDING.value),
            )

        await self._call(run)

    def status(
        self, *, user: str | None = None, kind: str | None = None, occurrence: str | None = None
    ) -> list[dict[str, Any]]:
        return _read_status(self._read(), user=user, kind=kind, occurrence=occurrence)

    # -- setup links and codes ----------------------------------------------------------------
    def find_token(self, hashed: str) -> TokenRow | None:
        return _find(self._read(), hashed)

    async def consume_token(self, hashed: str, now: float) -> TokenProblem | None:
        result: TokenProblem | None = await self._call(lambda db: _consume(db, hashed, now))
        return result

    async def try_code(self, user: str, hashed: str, now: float) -> TokenProblem | None:
        result: TokenProblem | None = await self._call(lambda db: _try_code(db, user, hashed, now))
        return result

    async def add_link_token(self, hashed: str, user: str, now: float, expires: float) -> None:
        await self._call(lambda db: _add_token(db, hashed, user, Purpose.LINK, now, expires))

    def live_codes(self, user: str, now: float) -> int:
        return _live_codes(self._read(), user, now)

    # -- credentials (read) ---------------------------------------------------------------------
    def has_password(self, user: str) -> bool:
        return self._read().execute("SELECT 1 FROM credentials WHERE user = ?", (user,)).fetchone() is not None

    def passwords(self) -> set[str]:
        return _passwords(self._read())


class SQLiteNotifyDB(SQLiteNotifyStore):
    """The same on a connection of its own to the database under `data_dir`: each write is one IMMEDIATE
    transaction; `read_only` opens an existing database without changing it (no schema upgrade)."""

    def __init__(self, data_dir: Path, *, read_only: bool = False, url: str = "") -> None:
        self._db = open_database(data_dir, url, read_only=read_only)
        self._read = lambda: self._db
        self._call = self._transaction

    def close(self) -> None:
        self._db.close()

    async def accept(self, message: NewMessage) -> QueuedMessage:
        raise StoreError("mail is queued by the running server, not on a connection of its own")

    async def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(self._db)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return result
