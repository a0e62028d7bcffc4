"""Failback sync records in the store's SQLite database (table `sync_items`, see store/sqlite_schema.py MIGRATIONS).

One record per (user, message body, primary folder): a message body id is never
reused and survives COPY/MOVE on the standby, so it names "this message" for
good. The sync opens its own connection to the database (WAL: it runs beside a
serving mailstandby, or alone from the command line) and runs every query in a
worker thread, one at a time; each write is its own transaction, durable when
the call returns (synchronous=FULL). `sync.records.SyncRecords` is the contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mailstandby.store.database import open_database
from mailstandby.store.fencing import record_leader_action
from mailstandby.sync.plan import Kind, Reason, Record, StandbyMessage, State, SyncStatus, UserStatus

T = TypeVar("T")


def _flags(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _tx(db: sqlite3.Connection, fn: Any) -> Any:
    """Run `fn()` in one transaction (one fsync for all its statements)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = fn()
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return result


def _text(flags: Iterable[str]) -> str:
    return " ".join(sorted(flags))


class SQLiteSyncRecords:
    """The sync records of the store under `data_dir`, on a connection of their own."""

    def __init__(self, data_dir: Path, *, url: str = "") -> None:
        self.data_dir = data_dir
        self.url = url
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        self._db = await asyncio.to_thread(open_database, self.data_dir, self.url)

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            async with self._lock:
                await asyncio.to_thread(db.close)

    async def run_started(self, term: int, node: str, detail: str) -> None:
        def run(db: sqlite3.Connection) -> None:
            _tx(db, lambda: record_leader_action(db, term, node, "sync-run", detail))

        await self._run(run)

    async def _run(self, fn: Any, *args: Any) -> Any:
        """`fn(db, *args)` in a worker thread, one at a time. Cancelled, it still holds the connection
        until the thread is done (a thread cannot be stopped), so no two threads ever share it and
        `close()` never closes it under a running query."""
        assert self._db is not None, "sync records are not open"
        db = self._db
        async with self._lock:
            work = asyncio.ensure_future(asyncio.to_thread(fn, db, *args))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                while not work.done():  # a short query: wait it out, even through repeated cancels
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait([work])
                raise

    # -- reads --------------------------------------------------------------------------------------
    async def instance(self) -> int:
        """This installation's random id (in the trace header), created once."""

        def run(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT value FROM meta WHERE key = 'sync_instance'").fetchone()
            if row is not None:
                return int(row[0])
            value = secrets.randbits(48) | 1
            db.execute("INSERT INTO meta (key, value) VALUES ('sync_instance', ?) ON CONFLICT DO NOTHING", (value,))
            return int(db.execute("SELECT value FROM meta WHERE key = 'sync_instance'").fetchone()[0])

        return int(await self._run(run))

    async def users(self) -> list[str]:
        return [u for (u,) in await self._run(lambda db: db.execute("SELECT DISTINCT user FROM mailboxes").fetchall())]

    async def candidates(self, users: Sequence[str]) -> list[StandbyMessage]:
        """Standby-only messages, and journal copies with flags, of `users`, oldest first."""

        def run(db: sqlite3.Connection) -> list[StandbyMessage]:
            out = []
            for user in users:
                rows = db.execute(
                    "SELECT b.name, m.uid, m.body_id, m.flags, m.internal_date, m.journaled"
                    " FROM mail m JOIN mailboxes b ON b.id = m.mailbox_id"
                    " WHERE b.user = ? AND (m.journaled = 0 OR m.flags != '') ORDER BY m.internal_date, m.body_id",
                    (user,),
                ).fetchall()
                out += [StandbyMessage(user, n, uid, bid, _flags(f), d, bool(j)) for n, uid, bid, f, d, j in rows]
            return out

        return list(await self._run(run))

    async def records(self, users: Sequence[str]) -> dict[tuple[str, int, str], Record]:
        def run(db: sqlite3.Connection) -> dict[tuple[str, int, str], Record]:
            out = {}
            for user in users:
                for body_id, folder, kind, state, flags, attempts in db.execute(
                    "SELECT body_id, folder, kind, state, flags, attempts FROM sync_items WHERE user = ?", (user,)
                ):
                    out[(user, body_id, folder)] = Record(Kind(kind), State(state), _flags(flags), attempts)
            return out

        return dict(await self._run(run))

    async def body(self, body_id: int) -> bytes | None:
        row = await self._run(lambda db: db.execute("SELECT data FROM bodies WHERE id = ?", (body_id,)).fetchone())
        return None if row is None else bytes(row[0])

    async def status(self, users: Sequence[str] | None = None) -> SyncStatus:
        def run(db: sqlite3.Connection) -> SyncStatus:
            status = SyncStatus()
            for user, state, n in db.execute("SELECT user, state, count(*) FROM sync_items GROUP BY user, state"):
                if users is not None and user not in users:
                    continue
                s = status.users.setdefault(user, UserStatus())
                s.total += n
                if state == State.DONE:
                    s.done += n
                elif state == State.FAILED:
                    s.failed += n
                else:
                    s.pending += n
            return status

        return await self._run(run)  # type: ignore[no-any-return]

    async def failures(self) -> list[tuple[str, str, int, int, str]]:
        """(user, folder, body id, attempts, last error) of every record that was given up."""
        return list(
            await self._run(
                lambda db: db.execute(
                    "SELECT user, folder, body_id, attempts, last_error FROM sync_items WHERE state = ?"
                    " ORDER BY user, folder",
                    (State.FAILED.value,),
                ).fetchall()
            )
        )

    # -- writes -------------------------------------------------------------------------------------
    async def plan(self, items: Sequence[tuple[StandbyMessage, str, Kind]]) -> None:
        """Create pending records for work found (existing records keep their state and attempts,
        except a done record whose flags must be brought up to date, which is pending again)."""

        def run(db: sqlite3.Connection) -> None:
            now = time.time()
            _tx(
                db,
                lambda: db.executemany(
                    "INSERT INTO sync_items (user, body_id, folder, kind, state, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (user, body_id, folder) DO UPDATE SET state = 'pending',"
                    " updated_at = excluded.updated_at"
                    " WHERE sync_items.state = 'done'",
                    [(m.user, m.body_id, folder, kind.value, State.PENDING.value, now) for m, folder, kind in items],
                ),
            )

        await self._run(run)

    async def finish(self, done: Sequence[tuple[str, int, str, frozenset[str], Reason, int | None]]) -> None:
        """Mark records done: (user, body id, folder, flags the primary copy now has, reason, primary uid)."""

        def run(db: sqlite3.Connection) -> None:
            _tx(
                db,
                lambda: db.executemany(
                    "UPDATE sync_items SET state = 'done', flags = ?, reason = ?,"
                    " primary_uid = coalesce(?, primary_uid),"
                    " last_error = '', updated_at = ? WHERE user = ? AND body_id = ? AND folder = ?",
                    [(_text(f), r.value, puid, time.time(), u, b, fo) for u, b, fo, f, r, puid in done],
                ),
            )

        if done:
            await self._run(run)

    async def forget(self, keys: Sequence[tuple[str, int, str]]) -> None:
        """Drop pending records (user, body id, folder) of messages that no longer need syncing."""

        def run(db: sqlite3.Connection) -> None:
            _tx(
                db,
                lambda: db.executemany(
                    "DELETE FROM sync_items WHERE user = ? AND body_id = ? AND folder = ? AND state = 'pending'", keys
                ),
            )

        await self._run(run)

    async def refused(self, user: str, body_id: int, folder: str, error: str, max_attempts: int) -> bool:
        """Count a refusal; returns True when the record is now given up (failed)."""

        def run(db: sqlite3.Connection) -> bool:
            row = db.execute(
                "UPDATE sync_items SET attempts = attempts + 1, last_error = ?, reason = ?,"
                " state = CASE WHEN attempts + 1 >= ? THEN 'failed' ELSE state END, updated_at = ?"
                " WHERE user = ? AND body_id = ? AND folder = ? RETURNING state",
                (error[:500], Reason.REFUSED.value, max_attempts, time.time(), user, body_id, folder),
            ).fetchone()
            return row is not None and row[0] == State.FAILED.value

        return bool(await self._run(run))
