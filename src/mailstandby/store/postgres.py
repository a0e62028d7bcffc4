"""The PostgreSQL store: `[store] url = "postgresql://…"`; message bodies live in the database (BYTEA).

Design: synchronous psycopg 3 connections driven the way `store/sqlite.py` drives SQLite, so
every area module (`store/sqlite_*.py`) runs its statements unchanged on either backend:
- one writer thread owns a connection and commits everything that arrived while the previous
  batch was being written in one transaction (group commit); a session is told its message is
  accepted only after that COMMIT returned, with `synchronous_commit` at least `on` (with a
  synchronous standby configured, that includes the standby's flush);
- the event loop reads through a second connection in autocommit mode (`read_connection()`),
  as it does on SQLite: short indexed queries; bodies are read in a worker thread.
The statements are written in the dialect both engines share; `PgConnection` only changes
their spelling: `?` placeholders become psycopg's `%s`, the reserved word `user` is quoted,
`BEGIN IMMEDIATE` is `BEGIN`. The SQL text of the area modules never holds a `?` or the word
`user` inside a string literal (a unit test checks this).

Several nodes may share one database: each queued recipient is delivered by the node holding its
claim (store/claims.py: claimed with `FOR UPDATE SKIP LOCKED`, a lease renewed while delivering,
outcomes written only under the claim). `pending()` leaves out what another node holds.
Leader election and fencing: store/postgres_leader.py, store/fencing.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import queue
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import pq

from mailstandby.config import StoreSettings, default_node_id
from mailstandby.core.events import Event
from mailstandby.files import write_private
from mailstandby.store import claims
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
from mailstandby.store.changefeed import CHANNEL, payload
from mailstandby.store.postgres_schema import PG_MIGRATIONS
from mailstandby.store.postgres_settings import join_cluster, rejoin
from mailstandby.store.writer import Accept, Call, Op, Record, hand_to_writer, noop, queued_recipient, run_writer

log = logging.getLogger(__name__)

T = TypeVar("T")

_USER = re.compile(r'(?<![\w"])user(?![\w"])')
_WEAK_COMMIT = ("off", "local")  # a commit that may return before the WAL (or the sync standby) has it
_WRITER_IDLE_IN_TRANSACTION_MS = 5000  # a paused node's open transaction is ended by the server after this
_MIGRATION_LOCK = 0x6D736273  # pg_advisory_xact_lock key: one node migrates at a time
DEFAULT_CONNECT_TIMEOUT = 10  # seconds per host (StoreSettings.connect_timeout)
RECONNECT_FIRST = 0.1  # seconds before the first new attempt after a failed connection
RECONNECT_MAX = 5.0  # the backoff's ceiling while the server stays away


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


def connect_pg(
    url: str, *, reconnect_reads: bool = False, timeout: int = DEFAULT_CONNECT_TIMEOUT, writer: bool = False
) -> PgConnection:
    """An autocommit connection whose commits wait for the WAL flush (`synchronous_commit` at least `on`;
    a stronger server setting such as `remote_apply` is kept); `timeout`: seconds per host of the URL;
    `reconnect_reads`: reads re-run once on a new connection after the server went away;
    `writer`: the server ends the session if it ever sits idle inside a transaction (the writer never
    does unless its process is paused: then it must not hold the leadership row's lock)."""
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=timeout, application_name="mailstandby")
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


def _error(e: Exception, what: str) -> StoreError:
    if isinstance(e, StoreError):
        return e
    return StoreError(f"{what}: {e}", no_space=isinstance(e, psycopg.errors.DiskFull))


class PostgresStore:
    """MailStore on PostgreSQL; `call()` and `read_connection()` as SQLiteStore's, for the area modules."""

    def __init__(
        self,
        data_dir: Path,
        settings: StoreSettings,
        shared: Mapping[str, int] | None = None,
        *,
        node_id: str = "",
        lease: float = 60.0,
    ) -> None:
        """`shared`: this node's digests of the settings a cluster's nodes must agree on
        (shared_settings.py); None (tools, tests): not checked."""
        self.data_dir = data_dir
        self.settings = settings
        self.url = settings.url
        self.shared = shared
        self.node_id = node_id or default_node_id(data_dir)  # the name this node's claims carry
        self.lease = lease  # seconds a claim lasts unless renewed
        self._background: set[asyncio.Task[None]] = set()
        self.quarantine = data_dir / "quarantine"
        self._ops: queue.SimpleQueue[Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._db: PgConnection | None = None
        self._read_db: PgConnection | None = None
        self._reconnect = Reconnect(self.url, settings.connect_timeout, writer=True)  # the writer thread's

    # -- lifecycle ---------------------------------------------------------
    async def open(self) -> None:
        await asyncio.to_thread(self._open_sync)
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def _open_sync(self) -> None:
        for d in (self.data_dir, self.quarantine):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = connect_pg(self.url, timeout=self.settings.connect_timeout, writer=True)
        try:
            migrate_pg(db)
            if self.shared is not None:
                join_cluster(db, self.shared)
            self._read_db = connect_pg(self.url, reconnect_reads=True, timeout=self.settings.connect_timeout)
        except BaseException:
            db.close()
            raise
        self._db = db

    async def close(self) -> None:
        if self._thread is not None:
            self._ops.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        for db in (self._db, self._read_db):
            if db is not None:
                db.close()

    # -- the MailStore contract ---------------------------------------------
    async def accept(self, message: NewMessage) -> QueuedMessage:
        return await self._submit(Accept(done=noop, message=message))

    async def record(
        self, outcomes: list[Outcome], *, also: Callable[[Any], T] | None = None, atomic: bool = False
    ) -> T | None:
        if outcomes or also is not None:
            return await self._submit(Record(done=noop, outcomes=outcomes, also=also, atomic=atomic))
        return None

    async def mark_sent(self, message_id: str, rcpts: list[str], at: float) -> None:
        """Recipients about to be relayed to the primary: a crash from here on leaves their outcome unknown.
        Raises StoreError (nothing marked) when this node no longer holds the claim on all of them."""

        def mark(db: PgConnection) -> None:
            if claims.mark_sent(db, self.node_id, message_id, rcpts, at) != len(set(rcpts)):
                raise StoreError(f"claim on {message_id} lost to another node")

        await self.call(mark)

    async def claim(self, message_id: str, rcpts: list[str]) -> list[QueuedRecipient]:
        """Take or renew this node's claim on these queued recipients; returns the ones it now holds,
        as stored (another node may have tried them since), with the in-flight mark a dead node left."""
        now = time.time()
        held = await self.call(lambda db: claims.claim(db, self.node_id, message_id, rcpts, now, self.lease))
        for c in held:
            if c.was not in ("", self.node_id):
                log.warning(
                    "%s: id=%s to=<%s> from=%s in_doubt=%s",
                    Event.QUEUE_TAKEN_OVER,
                    message_id,
                    c.recipient.rcpt,
                    c.was,
                    bool(c.recipient.sent_at),
                )
        return [c.recipient for c in held]

    async def claim_due(self, limit: int = 100) -> list[QueuedMessage]:
        """Claim due retries no node holds and claims whose lease expired (a dead or paused node's)."""
        now = time.time()
        held = await self.call(lambda db: claims.claim_due(db, self.node_id, now, self.lease, limit))
        for c in held:
            if c.was:
                log.warning("%s: id=%s to=<%s> from=%s", Event.QUEUE_TAKEN_OVER, c.message_id, c.recipient.rcpt, c.was)
        return await asyncio.to_thread(self._messages_of, held)

    def announce(self, changes: list[Any]) -> None:
        """NOTIFY the other nodes of committed mailbox changes (store/changefeed.py); a hint, sent after
        the commit: a notice lost in a crash leaves their sessions to the next change or resync."""
        if not changes:
            return
        notes = [payload(self.node_id, c) for c in changes]
        task = asyncio.get_running_loop().create_task(self._announce(notes))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _announce(self, notes: list[str]) -> None:
        def notify(db: PgConnection) -> None:
            for note in notes:
                db.execute("SELECT pg_notify(?, ?)", (CHANNEL, note))

        try:
            await self.call(notify)
        except StoreError as e:
            log.warning("cannot announce mailbox changes to other nodes: %s", e)

    async def renew_claims(self, message_ids: list[str]) -> None:
        """Extend this node's leases on the queued recipients of these messages."""
        until = time.time() + self.lease
        await self.call(lambda db: claims.renew(db, self.node_id, message_ids, until))

    async def read_body(self, message_id: str) -> bytes:
        row = await asyncio.to_thread(self._body_sync, message_id)
        if row is None:
            raise StoreError(f"no message {message_id}")
        body, crc = bytes(row[0]), row[1]
        if zlib.crc32(body) != crc:
            await self._quarantine(message_id, body, "checksum mismatch")
            raise CorruptMessage(f"message {message_id} quarantined: checksum mismatch")
        return body

    def _body_sync(self, message_id: str) -> tuple[bytes, int] | None:
        try:
            return (
                self.read_connection().execute("SELECT body, crc FROM messages WHERE id = ?", (message_id,)).fetchone()
            )
        except psycopg.Error as e:
            raise StoreError(f"cannot read message {message_id}: {e}") from e

    async def pending(self) -> list[QueuedMessage]:
        return await asyncio.to_thread(self._pending_sync)

    async def call(self, fn: Callable[[Any], T]) -> T:
        """Run `fn(db)` in the writer thread, group-committed; returns once committed."""
        return await self._submit(Call(done=noop, fn=fn))

    def read_connection(self) -> PgConnection:
        """The event loop's connection (autocommit); a read that meets a lost server reconnects once."""
        assert self._read_db is not None, "store is not open"
        return self._read_db

    def free_space(self) -> int:
        """Bytes free under the data directory (quarantine copies); the database reports its own
        disk full as an error (SQLSTATE 53100), answered 452 like a full spool."""
        st = os.statvfs(self.data_dir)
        return st.f_bavail * st.f_frsize

    def deliveries(self, message_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT message_id, rcpt, state, attempts, last_reply, route FROM deliveries"
        args: tuple[str, ...] = ()
        if message_id is not None:
            sql += " WHERE message_id = ?"
            args = (message_id,)
        cols = ("message_id", "rcpt", "state", "attempts", "last_reply", "route")
        return [dict(zip(cols, r, strict=True)) for r in self.read_connection().execute(sql + " ORDER BY rcpt", args)]

    # -- event-loop side of the writer ---------------------------------------
    async def _submit(self, op: Op) -> Any:
        if self._thread is None:
            raise StoreError("store is closed")
        return await hand_to_writer(self._ops, op)

    # -- writer thread -------------------------------------------------------
    def _run(self) -> None:
        run_writer(self._ops, self._apply)

    def _writer_connection(self) -> PgConnection:
        """The writer's connection, made anew (with backoff) when the server went away (restart, promoted
        replica); until then each batch fails at once with StoreError, which the sessions answer 4xx."""
        if self._db is None or self._db.broken:
            if self._db is not None:
                self._db.close()
                self._db = None
            db = self._reconnect.connect()
            try:
                if self.shared is not None:
                    rejoin(db)
            except BaseException:
                db.close()
                raise
            self._db = db
            log.info("the store's writer is connected again")
        return self._db

    def _apply(self, batch: list[Op]) -> None:
        now = time.time()
        db: PgConnection | None = None
        try:
            db = self._writer_connection()
            db.execute("BEGIN")
            accepts = [op for op in batch if isinstance(op, Accept) and op.message is not None]
            inserted = self._insert(db, [op.message for op in accepts if op.message is not None], now)
            for op, queued in zip(accepts, inserted, strict=True):
                op.result = queued
            touched: set[str] = set()
            for op in batch:
                if isinstance(op, Record) and op.atomic:
                    if self._run_atomic(db, op, now):
                        touched.update(o.message_id for o in op.outcomes)
                elif isinstance(op, Record):
                    lost = self._apply_outcomes(db, op.outcomes, now)
                    touched.update(o.message_id for o in op.outcomes)
                    if op.also is not None and not lost:  # copies of mail another node settled: not ours
                        op.result = self._run_also(db, op.also)
            self._retire(db, touched)
            for op in batch:
                if isinstance(op, Call):
                    self._run_call(db, op)
            db.execute("COMMIT")  # synchronous_commit = on: durable (and replicated, if so configured) now
        except Exception as e:  # unknown outcome counts as failure: a retry is cheaper than a loss
            if db is not None and not db.broken and db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except (psycopg.Error, StoreError):
                    log.warning("rollback failed; the connection is made anew", exc_info=True)
                    db.close()
            log.warning("store commit failed: %s", e)
            for op in batch:
                op.result = None
                op.error = op.error or _error(e, "index commit failed")

    def _run_also(self, db: PgConnection, fn: Callable[[Any], Any]) -> Any:
        db.execute("SAVEPOINT also")
        try:
            return fn(db)
        except Exception:
            db.execute("ROLLBACK TO also")
            log.exception("work recorded with delivery outcomes failed; the outcomes stand")
            return None
        finally:
            db.execute("RELEASE also")

    def _run_atomic(self, db: PgConnection, op: Record, now: float) -> bool:
        db.execute("SAVEPOINT atomic")
        try:
            if self._apply_outcomes(db, op.outcomes, now):
                raise StoreError("claim lost to another node: not recorded")
            op.result = op.also(db) if op.also is not None else None
        except Exception as e:
            db.execute("ROLLBACK TO atomic")
            op.error = _error(e, "recording failed")
            return False
        finally:
            db.execute("RELEASE atomic")
        return True

    def _run_call(self, db: PgConnection, op: Call) -> None:
        assert op.fn is not None
        db.execute("SAVEPOINT call")
        try:
            op.result = op.fn(db)
        except Exception as e:  # the caller's own error (e.g. MailboxError): undo this call only
            db.execute("ROLLBACK TO call")
            op.error = e
        db.execute("RELEASE call")

    def _insert(self, db: PgConnection, messages: list[NewMessage], now: float) -> list[QueuedMessage]:
        """Every message of the batch in two statements (each one round trip: psycopg pipelines executemany)."""
        db.executemany(
            "INSERT INTO messages (id, sender, received_at, size, body, crc, body_type, smtputf8, origin,"
            " dsn_ret, dsn_envid) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    m.id,
                    m.envelope.sender,
                    m.received_at,
                    len(m.body),
                    m.body,
                    zlib.crc32(m.body),
                    m.envelope.body_type.value,
                    int(m.envelope.smtputf8),
                    m.origin.value,
                    m.envelope.ret,
                    m.envelope.envid,
                )
                for m in messages
            ],
        )
        queued = [self._queued(m) for m in messages]
        db.executemany(  # claimed by this node: what it accepts, it delivers
            "INSERT INTO deliveries (message_id, rcpt, state, next_attempt, updated_at, dsn_notify, dsn_orcpt,"
            " claimed_by, lease_until) VALUES (?,?,?,?,?,?,?,?,?)",
            [
                (q.id, r.rcpt, RcptState.QUEUED.value, 0.0, now, r.notify, r.orcpt, self.node_id, now + self.lease)
                for q in queued
                for r in q.recipients
            ],
        )
        delayed = [(now, mid, rcpt) for m in messages for mid, rcpt in m.reports_delay]
        if delayed:  # a delay notice: its recipients are reported in the same transaction
            db.executemany("UPDATE deliveries SET delay_reported=? WHERE message_id=? AND rcpt=?", delayed)
        return queued

    @staticmethod
    def _queued(m: NewMessage) -> QueuedMessage:
        env = m.envelope
        return QueuedMessage(
            id=m.id,
            sender=env.sender,
            received_at=m.received_at,
            size=len(m.body),
            smtputf8=env.smtputf8,
            body_type=env.body_type.value,
            origin=m.origin,
            recipients=[queued_recipient(env, r) for r in env.recipients],
            ret=env.ret,
            envid=env.envid,
        )

    def _apply_outcomes(self, db: PgConnection, outcomes: list[Outcome], now: float) -> int:
        """Write the outcomes this node still holds the claim on (releasing it); returns how many were not."""
        lost = 0
        for o in outcomes:
            cur = db.execute(
                claims.OUTCOME,
                (
                    o.state.value,
                    o.attempts,
                    o.next_attempt,
                    _text(o.reply[:500]),
                    o.route,
                    now,
                    bool(o.in_doubt),
                    o.message_id,
                    o.rcpt,
                    RcptState.QUEUED.value,
                    self.node_id,
                ),
            )
            if cur.rowcount == 0:
                lost += 1
                log.warning("%s: id=%s to=<%s>: outcome not recorded", Event.QUEUE_CLAIM_LOST, o.message_id, o.rcpt)
        return lost

    def _retire(self, db: PgConnection, message_ids: set[str]) -> None:
        """Messages with no queued recipient are done; their body is dropped (the spool segment's deletion)."""
        for mid in sorted(message_ids):
            db.execute(
                "UPDATE messages SET done = 1, body = ? WHERE id = ? AND done = 0"
                " AND NOT EXISTS (SELECT 1 FROM deliveries WHERE message_id = ? AND state = ?)",
                (b"", mid, mid, RcptState.QUEUED.value),
            )

    # -- reads -----------------------------------------------------------------
    def _pending_sync(self) -> list[QueuedMessage]:
        db = connect_pg(self.url, timeout=self.settings.connect_timeout)
        try:
            rows = db.execute(
                "SELECT m.id, m.sender, m.received_at, m.size, m.smtputf8, m.body_type, m.origin,"
                " d.rcpt, d.attempts, d.next_attempt, d.last_reply, m.dsn_ret, m.dsn_envid, d.dsn_notify, d.dsn_orcpt,"
                " d.sent_at, d.delay_reported"
                " FROM deliveries d JOIN messages m ON m.id = d.message_id"
                f" WHERE d.state = ? AND {claims.UNCLAIMED} ORDER BY m.received_at, m.id, d.rcpt",
                (RcptState.QUEUED.value, self.node_id, time.time()),
            ).fetchall()
        finally:
            db.close()
        return _grouped(rows)

    def _messages_of(self, held: list[claims.Claimed]) -> list[QueuedMessage]:
        """The queue view of claimed recipients (their messages' envelopes read anew)."""
        ids = sorted({c.message_id for c in held})
        if not ids:
            return []
        rows = self.read_connection().execute(
            "SELECT id, sender, received_at, size, smtputf8, body_type, origin, dsn_ret, dsn_envid"
            " FROM messages WHERE id = ANY(?) ORDER BY received_at, id",
            (ids,),
        )
        by_id = {
            mid: QueuedMessage(mid, sender, rec, size, bool(utf8), bt, Origin(origin), ret=ret, envid=envid)
            for mid, sender, rec, size, utf8, bt, origin, ret, envid in rows
        }
        for c in held:
            if c.message_id in by_id:
                by_id[c.message_id].recipients.append(c.recipient)
        return list(by_id.values())

    async def _quarantine(self, message_id: str, body: bytes, why: str) -> None:
        log.error("%s: message %s unreadable (%s)", Event.STORE_QUARANTINED, message_id, why)
        with contextlib.suppress(OSError):
            write_private(self.quarantine / f"{message_id}.partial", body)
        rows = await asyncio.to_thread(
            lambda: (
                self.read_connection()
                .execute(
                    "SELECT rcpt FROM deliveries WHERE message_id=? AND state=?", (message_id, RcptState.QUEUED.value)
                )
                .fetchall()
            )
        )
        outcomes = [Outcome(message_id, r, RcptState.QUARANTINED, 0, 0.0, f"quarantined: {why}") for (r,) in rows]
        await self.record(outcomes)


def _text(value: str) -> str:
    """Text PostgreSQL accepts: no surrogates, no NUL."""
    return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


def _grouped(rows: list[Any]) -> list[QueuedMessage]:
    """Queue rows (one per recipient) as messages with their recipients."""
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
