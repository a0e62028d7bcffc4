"""The embedded store: SQLite (WAL, synchronous=FULL) indexing spool segments.

Commit order for accepted mail (RFC 5321 §6.1, RELIABILITY D1/D14): bodies are
appended to the current segment and fsync'd, then the index rows are
committed in one SQLite transaction (its WAL is fsync'd), and only then are
the waiting sessions told. Everything that arrives while a batch is being
written forms the next batch, so concurrent sessions share fsyncs (group
commit) without any timer.

One writer thread owns every write; the event loop reads through its own
connection. A segment file is deleted once none of its messages has a
recipient left to deliver.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mailstandby.config import StoreSettings
from mailstandby.core.events import Event
from mailstandby.files import write_private
from mailstandby.store.base import (
    CorruptMessage,
    NewMessage,
    Origin,
    Outcome,
    QueuedMessage,
    QueuedRecipient,
    RcptState,
    StoreError,
)
from mailstandby.store.paths import database_path
from mailstandby.store.segments import Location, SegmentReader, SegmentWriter, fsync_dir
from mailstandby.store.sqlite_schema import connect, migrate
from mailstandby.store.writer import Accept, Call, Op, Record, hand_to_writer, noop, queued_recipient, run_writer

log = logging.getLogger(__name__)

T = TypeVar("T")


class SQLiteStore:
    """MailStore on SQLite + spool segments under one data directory."""

    def __init__(self, data_dir: Path, settings: StoreSettings) -> None:
        self.data_dir = data_dir
        self.settings = settings
        self.spool = data_dir / "spool"
        self.quarantine = data_dir / "quarantine"
        self._ops: queue.SimpleQueue[Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._db: sqlite3.Connection | None = None
        self._reader: SegmentReader | None = None
        self._read_db: sqlite3.Connection | None = None
        self._writer: SegmentWriter | None = None
        self._freed: set[int] = set()

    # -- lifecycle ---------------------------------------------------------
    async def open(self) -> None:
        await asyncio.to_thread(self._open_sync)
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def _open_sync(self) -> None:
        for d in (self.data_dir, self.spool, self.quarantine):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        db_path = database_path(self.data_dir)
        self._db = connect(db_path)
        migrate(self._db)
        fsync_dir(self.data_dir)
        self._read_db = connect(db_path)
        self._writer = SegmentWriter(self.spool, self.settings.segment_size)
        self._reader = SegmentReader(self.spool)
        self._remove_dead_segments()

    async def close(self) -> None:
        if self._thread is not None:
            self._ops.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        for db in (self._db, self._read_db):
            if db is not None:
                db.close()
        if self._writer is not None:
            self._writer.close()

    # -- the MailStore contract ---------------------------------------------
    async def accept(self, message: NewMessage) -> QueuedMessage:
        return await self._submit(Accept(done=noop, message=message))

    async def record(
        self, outcomes: list[Outcome], *, also: Callable[[sqlite3.Connection], T] | None = None, atomic: bool = False
    ) -> T | None:
        """Record outcomes; `also(db)` (e.g. filing journal copies) commits in the same transaction,
        in its own savepoint: if it fails, only its work is undone (and logged) — or, when `atomic`,
        the outcomes are undone with it and StoreError is raised."""
        if outcomes or also is not None:
            return await self._submit(Record(done=noop, outcomes=outcomes, also=also, atomic=atomic))
        return None

    async def mark_sent(self, message_id: str, rcpts: list[str], at: float) -> None:
        def mark(db: sqlite3.Connection) -> None:
            db.executemany(
                "UPDATE deliveries SET sent_at=? WHERE message_id=? AND rcpt=? AND state=?",
                [(at, message_id, r, RcptState.QUEUED.value) for r in rcpts],
            )

        await self.call(mark)

    async def read_body(self, message_id: str) -> bytes:
        assert self._read_db is not None and self._reader is not None
        row = self._read_db.execute(
            "SELECT segment, offset, size, crc FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"no message {message_id}")
        loc = Location(*row)
        try:
            if loc.size < 256 * 1024:
                return self._reader.read(loc)
            return await asyncio.to_thread(self._reader.read, loc)
        except OSError as e:
            if not isinstance(e, FileNotFoundError):  # EMFILE, EIO...: temporary, not damage
                raise StoreError(f"cannot read message {message_id}: {e}") from e
            await self._quarantine(message_id, loc, str(e))
            raise CorruptMessage(f"message {message_id} quarantined: {e}") from None
        except ValueError as e:
            await self._quarantine(message_id, loc, str(e))
            raise CorruptMessage(f"message {message_id} quarantined: {e}") from None

    async def pending(self) -> list[QueuedMessage]:
        return await asyncio.to_thread(self._pending_sync)

    # one node alone: it holds every claim (the claims of store/claims.py are PostgreSQL's)
    async def claim(self, message_id: str, rcpts: list[str]) -> list[QueuedRecipient]:
        return [QueuedRecipient(r) for r in rcpts]

    async def claim_due(self, limit: int = 100) -> list[QueuedMessage]:
        return []

    async def renew_claims(self, message_ids: list[str]) -> None:
        return None

    def announce(self, changes: list[Any]) -> None:
        """One node: its own sessions are told in-process, nobody else shares the store."""

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(db)` in the writer thread, group-committed; returns once it is durable.

        `fn` must only use the connection it is given and must not block on anything
        else; an exception it raises undoes its own writes and is re-raised here.
        """
        return await self._submit(Call(done=noop, fn=fn))

    def read_connection(self) -> sqlite3.Connection:
        """The event loop's read connection (sees every committed write)."""
        assert self._read_db is not None, "store is not open"
        return self._read_db

    def free_space(self) -> int:
        st = os.statvfs(self.data_dir)
        return st.f_bavail * st.f_frsize

    # -- inspection (CLI, tests) -------------------------------------------
    def deliveries(self, message_id: str | None = None) -> list[dict[str, Any]]:
        assert self._read_db is not None
        sql = "SELECT message_id, rcpt, state, attempts, last_reply, route FROM deliveries"
        args: tuple[str, ...] = ()
        if message_id is not None:
            sql += " WHERE message_id = ?"
            args = (message_id,)
        cols = ("message_id", "rcpt", "state", "attempts", "last_reply", "route")
        return [dict(zip(cols, r, strict=True)) for r in self._read_db.execute(sql, args)]

    # -- event-loop side of the writer ---------------------------------------
    async def _submit(self, op: Op) -> Any:
        if self._thread is None:
            raise StoreError("store is closed")
        return await hand_to_writer(self._ops, op)

    # -- writer thread -------------------------------------------------------
    def _run(self) -> None:
        run_writer(self._ops, self._apply, self._delete_freed_segments)

    def _apply(self, batch: list[Op]) -> None:
        assert self._db is not None and self._writer is not None
        accepts = [op for op in batch if isinstance(op, Accept)]
        segment_before = self._writer.current
        locations = self._write_bodies(accepts)
        now = time.time()
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            for op, loc in zip(accepts, locations, strict=True):
                if loc is not None:
                    op.result = self._insert(op.message, loc, now)  # type: ignore[arg-type]
            touched: set[str] = set()
            for op in batch:
                if isinstance(op, Record) and op.atomic:
                    if self._run_atomic(op, now):
                        touched.update(o.message_id for o in op.outcomes)
                elif isinstance(op, Record):
                    self._apply_outcomes(op.outcomes, now)
                    touched.update(o.message_id for o in op.outcomes)
                    if op.also is not None:
                        op.result = self._run_also(op.also)
            self._retire(touched)
            for op in batch:
                if isinstance(op, Call):
                    self._run_call(op)
            if self._writer.current != segment_before and self._segment_dead(segment_before):
                self._freed.add(segment_before)  # left behind with nothing live (e.g. all delivered while current)
            db.execute("COMMIT")
        except Exception as e:  # roll back whatever failed, or every later batch fails too
            if db.in_transaction:
                db.execute("ROLLBACK")
            self._freed.clear()
            no_space = isinstance(e, sqlite3.OperationalError) and "full" in str(e)
            for op in batch:
                op.result = None
                op.error = op.error or StoreError(f"index commit failed: {e}", no_space=no_space)

    def _run_also(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """An addition to recorded outcomes: committed with them, or (on error) alone undone and logged."""
        assert self._db is not None
        self._db.execute("SAVEPOINT also")
        try:
            return fn(self._db)
        except Exception:
            self._db.execute("ROLLBACK TO also")
            log.exception("work recorded with delivery outcomes failed; the outcomes stand")
            return None
        finally:
            self._db.execute("RELEASE also")

    def _run_atomic(self, op: Record, now: float) -> bool:
        """Outcomes and their `also` together, or neither (the op then carries the error)."""
        assert self._db is not None
        self._db.execute("SAVEPOINT atomic")
        try:
            self._apply_outcomes(op.outcomes, now)
            op.result = op.also(self._db) if op.also is not None else None
        except Exception as e:
            self._db.execute("ROLLBACK TO atomic")
            no_space = isinstance(e, sqlite3.OperationalError) and "full" in str(e)
            op.error = e if isinstance(e, StoreError) else StoreError(f"recording failed: {e}", no_space=no_space)
            return False
        finally:
            self._db.execute("RELEASE atomic")
        return True

    def _run_call(self, op: Call) -> None:
        assert self._db is not None and op.fn is not None
        self._db.execute("SAVEPOINT call")
        try:
            op.result = op.fn(self._db)
        except Exception as e:  # the caller's own error (e.g. MailboxError): undo this call only
            self._db.execute("ROLLBACK TO call")
            op.error = e
        self._db.execute("RELEASE call")

    def _write_bodies(self, accepts: list[Accept]) -> list[Location | None]:
        assert self._writer is not None
        if not accepts:
            return []
        records = [(op.message.id, op.message.body) for op in accepts]  # type: ignore[union-attr]
        try:
            locations: list[Location | None] = list(self._writer.append(records))
            self._writer.sync()
        except OSError as e:
            no_space = e.errno in (errno.ENOSPC, errno.EDQUOT)
            too_big = e.errno == errno.EFBIG
            for op in accepts:
                op.error = StoreError(f"spool write failed: {e}", no_space=no_space, too_big=too_big)
            return [None] * len(accepts)
        return locations

    def _insert(self, m: NewMessage, loc: Location, now: float) -> QueuedMessage:
        assert self._db is not None
        env = m.envelope
        self._db.execute(
            "INSERT INTO messages (id, sender, received_at, size, segment, offset, crc,"
            " body_type, smtputf8, origin, dsn_ret, dsn_envid) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                m.id,
                env.sender,
                m.received_at,
                loc.size,
                loc.segment,
                loc.offset,
                loc.crc,
                env.body_type.value,
                int(env.smtputf8),
                m.origin.value,
                env.ret,
                env.envid,
            ),
        )
        recipients = [queued_recipient(env, r) for r in env.recipients]
        self._db.executemany(
            "INSERT INTO deliveries (message_id, rcpt, state, next_attempt, updated_at, dsn_notify, dsn_orcpt)"
            " VALUES (?,?,?,?,?,?,?)",
            [(m.id, r.rcpt, RcptState.QUEUED.value, 0.0, now, r.notify, r.orcpt) for r in recipients],
        )
        if m.reports_delay:  # a delay notice: its recipients are reported in the same transaction
            self._db.executemany(
                "UPDATE deliveries SET delay_reported=? WHERE message_id=? AND rcpt=?",
                [(now, mid, rcpt) for mid, rcpt in m.reports_delay],
            )
        return QueuedMessage(
            id=m.id,
            sender=env.sender,
            received_at=m.received_at,
            size=loc.size,
            smtputf8=env.smtputf8,
            body_type=env.body_type.value,
            origin=m.origin,
            recipients=recipients,
            ret=env.ret,
            envid=env.envid,
        )

    def _apply_outcomes(self, outcomes: list[Outcome], now: float) -> None:
        assert self._db is not None
        self._db.executemany(
            "UPDATE deliveries SET state=?, attempts=?, next_attempt=?, last_reply=?, route=?,"
            " updated_at=?, sent_at=CASE WHEN ? THEN sent_at ELSE 0 END WHERE message_id=? AND rcpt=? AND state=?",
            [
                (
                    o.state.value,
                    o.attempts,
                    o.next_attempt,
                    o.reply[:500].encode("utf-8", "replace").decode("utf-8"),  # replies may hold surrogates
                    o.route,
                    now,
                    o.in_doubt,
                    o.message_id,
                    o.rcpt,
                    RcptState.QUEUED.value,
                )
                for o in outcomes
            ],
        )

    def _retire(self, message_ids: set[str]) -> None:
        """Mark messages with no queued recipient done; note segments that became free."""
        assert self._db is not None and self._writer is not None
        segments: set[int] = set()
        for mid in message_ids:
            left = self._db.execute(
                "SELECT 1 FROM deliveries WHERE message_id=? AND state=? LIMIT 1",
                (mid, RcptState.QUEUED.value),
            ).fetchone()
            if left is None:
                row = self._db.execute(
                    "UPDATE messages SET done=1 WHERE id=? AND done=0 RETURNING segment", (mid,)
                ).fetchone()
                if row is not None:
                    segments.add(row[0])
        for seg in segments:
            if seg != self._writer.current and self._segment_dead(seg):
                self._freed.add(seg)

    def _segment_dead(self, seg: int) -> bool:
        assert self._db is not None
        return self._db.execute("SELECT 1 FROM messages WHERE segment=? AND done=0 LIMIT 1", (seg,)).fetchone() is None

    def _delete_freed_segments(self) -> None:
        assert self._writer is not None
        for seg in self._freed:
            try:
                self._writer.path(seg).unlink(missing_ok=True)
            except OSError as e:
                log.warning("cannot remove spent segment %d: %s", seg, e)
        self._freed.clear()

    def _remove_dead_segments(self) -> None:
        """At start-up: drop segments that hold no live message (spent, or never indexed)."""
        assert self._writer is not None
        for path in self.spool.glob("seg-*.dat"):
            seg = int(path.stem.split("-")[1])
            if seg != self._writer.current and self._segment_dead(seg):
                path.unlink(missing_ok=True)

    # -- reads -----------------------------------------------------------------
    def _pending_sync(self) -> list[QueuedMessage]:
        assert self._db is not None
        db = connect(database_path(self.data_dir))
        try:
            rows = db.execute(
                "SELECT m.id, m.sender, m.received_at, m.size, m.smtputf8, m.body_type, m.origin,"
                " d.rcpt, d.attempts, d.next_attempt, d.last_reply, m.dsn_ret, m.dsn_envid, d.dsn_notify, d.dsn_orcpt,"
                " d.sent_at, d.delay_reported"
                " FROM deliveries d JOIN messages m ON m.id = d.message_id"
                " WHERE d.state = ? ORDER BY m.received_at, m.id",
                (RcptState.QUEUED.value,),
            ).fetchall()
        finally:
            db.close()
        by_id: dict[str, QueuedMessage] = {}
        for row in rows:
            mid, sender, received, size, utf8, body_type, origin, rcpt, att, nxt, last, ret, envid, *rest = row
            m = by_id.get(mid)
            if m is None:
                m = by_id[mid] = QueuedMessage(
                    mid, sender, received, size, bool(utf8), body_type, Origin(origin), ret=ret, envid=envid
                )
            m.recipients.append(QueuedRecipient(rcpt, att, nxt, last, *rest))  # notify orcpt sent_at delay_reported
        return list(by_id.values())

    async def _quarantine(self, message_id: str, loc: Location, why: str) -> None:
        log.error("%s: message %s unreadable (%s)", Event.STORE_QUARANTINED, message_id, why)
        try:
            src = self.spool / f"seg-{loc.segment:08d}.dat"
            fd = os.open(src, os.O_RDONLY)
            try:
                raw = os.pread(fd, loc.size, loc.offset)
            finally:
                os.close(fd)
            write_private(self.quarantine / f"{message_id}.partial", raw)
        except OSError:
            pass
        assert self._read_db is not None
        rcpts = [
            r
            for (r,) in self._read_db.execute(
                "SELECT rcpt FROM deliveries WHERE message_id=? AND state=?", (message_id, RcptState.QUEUED.value)
            )
        ]
        await self.record([Outcome(message_id, r, RcptState.QUARANTINED, 0, 0.0, f"quarantined: {why}") for r in rcpts])
