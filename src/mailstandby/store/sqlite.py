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
import contextlib
import errno
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mailstandby.config import StoreSettings
from mailstandby.core.events import Event
from mailstandby.core.model import Envelope
from mailstandby.files import create_private, write_private
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

log = logging.getLogger(__name__)

T = TypeVar("T")

MIGRATIONS: list[str] = [
    # 1: messages and their per-recipient queue entries
    """
    CREATE TABLE messages (
        id          TEXT PRIMARY KEY,
        sender      TEXT NOT NULL,
        received_at REAL NOT NULL,
        size        INTEGER NOT NULL,
        segment     INTEGER NOT NULL,
        offset      INTEGER NOT NULL,
        crc         INTEGER NOT NULL,
        body_type   TEXT NOT NULL,
        smtputf8    INTEGER NOT NULL,
        origin      TEXT NOT NULL,
        done        INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX messages_segment ON messages (segment, done);
    CREATE TABLE deliveries (
        message_id   TEXT NOT NULL REFERENCES messages (id),
        rcpt         TEXT NOT NULL,
        state        TEXT NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL,
        last_reply   TEXT NOT NULL DEFAULT '',
        route        TEXT NOT NULL DEFAULT '',
        updated_at   REAL NOT NULL,
        PRIMARY KEY (message_id, rcpt)
    );
    CREATE INDEX deliveries_state ON deliveries (state, message_id);
    """,
    # 2: standby mailboxes (store/sqlite_mailbox.py) and standby credentials
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    CREATE TABLE mailboxes (
        id            INTEGER PRIMARY KEY,
        user          TEXT NOT NULL,
        name          TEXT NOT NULL,
        uidvalidity   INTEGER NOT NULL,
        uidnext       INTEGER NOT NULL DEFAULT 1,
        highestmodseq INTEGER NOT NULL DEFAULT 1,
        special_use   TEXT,
        subscribed    INTEGER NOT NULL DEFAULT 0,
        UNIQUE (user, name)
    );
    CREATE TABLE bodies (id INTEGER PRIMARY KEY, data BLOB NOT NULL, refs INTEGER NOT NULL);
    CREATE TABLE mail (
        mailbox_id    INTEGER NOT NULL REFERENCES mailboxes (id),
        uid           INTEGER NOT NULL,
        body_id       INTEGER NOT NULL REFERENCES bodies (id),
        flags         TEXT NOT NULL DEFAULT '',
        internal_date REAL NOT NULL,
        size          INTEGER NOT NULL,
        modseq        INTEGER NOT NULL,
        journaled     INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (mailbox_id, uid)
    ) WITHOUT ROWID;
    CREATE INDEX mail_journal ON mail (journaled, internal_date);
    CREATE TABLE credentials (user TEXT PRIMARY KEY, hash TEXT NOT NULL, updated_at REAL NOT NULL);
    """,
    # 3: the audit trail (logins now; administrator actions later)
    """
    CREATE TABLE audit (
        id      INTEGER PRIMARY KEY,
        at      REAL NOT NULL,
        actor   TEXT NOT NULL,
        action  TEXT NOT NULL,
        outcome TEXT NOT NULL,
        peer    TEXT NOT NULL DEFAULT '',
        detail  TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX audit_at ON audit (at);
    """,
    # 4: failover state (one row), its transitions, the monitor's health changes, administrators
    """
    CREATE TABLE failover_state (
        id     INTEGER PRIMARY KEY CHECK (id = 1),
        mode   TEXT NOT NULL,
        users  TEXT,
        seq    INTEGER NOT NULL,
        since  REAL NOT NULL,
        held   INTEGER NOT NULL
    );
    CREATE TABLE failover_log (
        id        INTEGER PRIMARY KEY,
        at        REAL NOT NULL,
        actor     TEXT NOT NULL,
        from_mode TEXT NOT NULL,
        to_mode   TEXT NOT NULL,
        users     TEXT,
        seq       INTEGER NOT NULL,
        reason    TEXT NOT NULL
    );
    CREATE TABLE health_log (
        id     INTEGER PRIMARY KEY,
        at     REAL NOT NULL,
        target TEXT NOT NULL,
        status TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX health_log_at ON health_log (at);
    CREATE TABLE admins (name TEXT PRIMARY KEY, hash TEXT NOT NULL, updated_at REAL NOT NULL);
    """,
    # 5: the DNS records a switch replaced, to be put back on failback
    """
    CREATE TABLE dns_saved (
        name     TEXT NOT NULL,
        rdtype   TEXT NOT NULL,
        ttl      INTEGER NOT NULL,
        rdatas   TEXT NOT NULL,
        saved_at REAL NOT NULL,
        PRIMARY KEY (name, rdtype)
    );
    """,
    # 6: user notifications (one row per user, kind, occurrence and destination), setup links and codes
    """
    CREATE TABLE notifications (
        id           INTEGER PRIMARY KEY,
        user         TEXT NOT NULL,
        kind         TEXT NOT NULL,
        occurrence   TEXT NOT NULL,
        mode         TEXT NOT NULL,
        destination  TEXT NOT NULL,
        payload      TEXT NOT NULL DEFAULT '',
        state        TEXT NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL DEFAULT 0,
        last_error   TEXT NOT NULL DEFAULT '',
        message_id   TEXT NOT NULL DEFAULT '',
        created_at   REAL NOT NULL,
        updated_at   REAL NOT NULL,
        UNIQUE (user, kind, occurrence, mode, destination)
    );
    CREATE INDEX notifications_due ON notifications (state, next_attempt);
    CREATE TABLE setup_tokens (
        hash       TEXT PRIMARY KEY,
        user       TEXT NOT NULL,
        purpose    TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        used_at    REAL,
        tries      INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX setup_tokens_user ON setup_tokens (user, purpose);
    """,
    # 7: directory import (store/sqlite_directory.py): users imported from LDAP and the device gateway, one row per
    # user (JSON), and one row per applied import whose largest generation tells the server to reload
    """
    CREATE TABLE directory_users (
        key        TEXT PRIMARY KEY,
        source     TEXT NOT NULL,
        enabled    INTEGER NOT NULL,
        data       TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE directory_imports (
        generation INTEGER PRIMARY KEY,
        at         REAL NOT NULL,
        origin     TEXT NOT NULL,
        added      INTEGER NOT NULL,
        changed    INTEGER NOT NULL,
        disabled   INTEGER NOT NULL,
        removed    INTEGER NOT NULL
    );
    """,
    # 8: failback sync (sync/): one record per standby message per user and primary folder
    """
    CREATE TABLE sync_items (
        user        TEXT NOT NULL,
        body_id     INTEGER NOT NULL,
        folder      TEXT NOT NULL,
        kind        TEXT NOT NULL,
        state       TEXT NOT NULL,
        flags       TEXT NOT NULL DEFAULT '',
        attempts    INTEGER NOT NULL DEFAULT 0,
        reason      TEXT NOT NULL DEFAULT '',
        last_error  TEXT NOT NULL DEFAULT '',
        primary_uid INTEGER,
        updated_at  REAL NOT NULL,
        PRIMARY KEY (user, body_id, folder)
    );
    CREATE INDEX sync_items_state ON sync_items (state, user);
    """,
    # 9: \\Recent (RFC 3501 §2.3.2): the highest UID a session has claimed per mailbox; what is
    # there at the upgrade counts as claimed
    """
    ALTER TABLE mailboxes ADD COLUMN recent_uid INTEGER NOT NULL DEFAULT 0;
    UPDATE mailboxes SET recent_uid = uidnext - 1;
    """,
    # 10: the DSN extension (RFC 3461): RET and ENVID per message, NOTIFY and ORCPT per recipient
    """
    ALTER TABLE messages ADD COLUMN dsn_ret TEXT NOT NULL DEFAULT '';
    ALTER TABLE messages ADD COLUMN dsn_envid TEXT NOT NULL DEFAULT '';
    ALTER TABLE deliveries ADD COLUMN dsn_notify TEXT NOT NULL DEFAULT '';
    ALTER TABLE deliveries ADD COLUMN dsn_orcpt TEXT NOT NULL DEFAULT '';
    """,
    # 11: deliveries marked in flight before they are sent (nonzero until a known outcome is recorded),
    # so that after a crash an unknown outcome is looked up in the primary mailbox before sending again
    """
    ALTER TABLE deliveries ADD COLUMN sent_at REAL NOT NULL DEFAULT 0;
    """,
    # 12: when a delay notice (RFC 3461 NOTIFY=DELAY) was queued for a recipient (0: none), so one is sent once
    """
    ALTER TABLE deliveries ADD COLUMN delay_reported REAL NOT NULL DEFAULT 0;
    """,
]

UPSERT_CREDENTIAL = (
    "INSERT INTO credentials (user, hash, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT (user) DO UPDATE SET hash = excluded.hash, updated_at = excluded.updated_at"
)
UPSERT_ADMIN = (
    "INSERT INTO admins (name, hash, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, updated_at = excluded.updated_at"
)


def insert_audit(
    db: sqlite3.Connection, actor: str, action: str, outcome: str, *, peer: str = "", detail: str = "", at: float = 0.0
) -> None:
    """One entry of the audit trail (who, what, how it ended, from where; never a secret)."""
    db.execute(
        "INSERT INTO audit (at, actor, action, outcome, peer, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (at or time.time(), actor[:256], action, outcome, peer, detail[:1000]),
    )


def connect(path: Path) -> sqlite3.Connection:
    with contextlib.suppress(FileNotFoundError):  # no directory: sqlite3 says so below
        create_private(path)  # 0600 whatever the umask; SQLite gives -wal and -shm the same mode
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA busy_timeout=10000")
    return db


def migrate(db: sqlite3.Connection) -> int:
    """Bring the schema to the newest version; returns the version."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise StoreError(f"store schema v{version} is newer than this mailstandby (v{len(MIGRATIONS)})")
    for n, script in enumerate(MIGRATIONS[version:], start=version + 1):
        db.execute("BEGIN IMMEDIATE")
        for statement in filter(str.strip, script.split(";")):
            db.execute(statement)
        db.execute(f"PRAGMA user_version={n}")
        db.execute("COMMIT")
    return len(MIGRATIONS)


@dataclass(slots=True)
class _Op:
    done: Callable[[Any, BaseException | None], None]
    result: Any = None
    error: BaseException | None = None


@dataclass(slots=True)
class _Accept(_Op):
    message: NewMessage | None = None


@dataclass(slots=True)
class _Record(_Op):
    outcomes: list[Outcome] = field(default_factory=list)
    also: Callable[[sqlite3.Connection], Any] | None = None  # run in the same transaction as the outcomes
    atomic: bool = False  # `also` failing undoes the outcomes too


@dataclass(slots=True)
class _Call(_Op):
    """A function run in the writer thread inside the batch transaction, in its own savepoint."""

    fn: Callable[[sqlite3.Connection], Any] | None = None



async def hand_to_writer(ops: queue.SimpleQueue[_Op | None], op: _Op) -> Any:
    """Queue `op` for a store's writer thread and wait, on the event loop, for its result."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()

    def done(result: Any, error: BaseException | None) -> None:
        if fut.done():
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)

    op.done = lambda r, e: loop.call_soon_threadsafe(done, r, e)
    ops.put(op)
    return await fut


def run_writer(
    ops: queue.SimpleQueue[_Op | None], apply: Callable[[list[_Op]], None], after: Callable[[], None] = lambda: None
) -> None:
    """A store's writer thread: everything waiting is one batch for `apply` (group commit); each op is
    then told its result. A None in the queue stops the thread once the batch before it is done."""
    stopping = False
    while not stopping:
        first = ops.get()
        if first is None:
            break
        batch = [first]
        while True:
            try:
                op = ops.get_nowait()
            except queue.Empty:
                break
            if op is None:
                stopping = True
                break
            batch.append(op)
        try:
            apply(batch)
        except BaseException as e:  # the thread must never die silently
            log.exception("store writer failed")
            for op in batch:
                if op.error is None and op.result is None:
                    op.error = StoreError(f"store failure: {e}")
        for op in batch:
            op.done(op.result, op.error)
        after()


class SQLiteStore:
    """MailStore on SQLite + spool segments under one data directory."""

    def __init__(self, data_dir: Path, settings: StoreSettings) -> None:
        self.data_dir = data_dir
        self.settings = settings
        self.spool = data_dir / "spool"
        self.quarantine = data_dir / "quarantine"
        self._ops: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
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
        return await self._submit(_Accept(done=_noop, message=message))

    async def record(
        self, outcomes: list[Outcome], *, also: Callable[[sqlite3.Connection], T] | None = None, atomic: bool = False
    ) -> T | None:
        """Record outcomes; `also(db)` (e.g. filing journal copies) commits in the same transaction,
        in its own savepoint: if it fails, only its work is undone (and logged) — or, when `atomic`,
        the outcomes are undone with it and StoreError is raised."""
        if outcomes or also is not None:
            return await self._submit(_Record(done=_noop, outcomes=outcomes, also=also, atomic=atomic))
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

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(db)` in the writer thread, group-committed; returns once it is durable.

        `fn` must only use the connection it is given and must not block on anything
        else; an exception it raises undoes its own writes and is re-raised here.
        """
        return await self._submit(_Call(done=_noop, fn=fn))

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
    async def _submit(self, op: _Op) -> Any:
        if self._thread is None:
            raise StoreError("store is closed")
        return await hand_to_writer(self._ops, op)

    # -- writer thread -------------------------------------------------------
    def _run(self) -> None:
        run_writer(self._ops, self._apply, self._delete_freed_segments)

    def _apply(self, batch: list[_Op]) -> None:
        assert self._db is not None and self._writer is not None
        accepts = [op for op in batch if isinstance(op, _Accept)]
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
                if isinstance(op, _Record) and op.atomic:
                    if self._run_atomic(op, now):
                        touched.update(o.message_id for o in op.outcomes)
                elif isinstance(op, _Record):
                    self._apply_outcomes(op.outcomes, now)
                    touched.update(o.message_id for o in op.outcomes)
                    if op.also is not None:
                        op.result = self._run_also(op.also)
            self._retire(touched)
            for op in batch:
                if isinstance(op, _Call):
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

    def _run_atomic(self, op: _Record, now: float) -> bool:
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

    def _run_call(self, op: _Call) -> None:
        assert self._db is not None and op.fn is not None
        self._db.execute("SAVEPOINT call")
        try:
            op.result = op.fn(self._db)
        except Exception as e:  # the caller's own error (e.g. MailboxError): undo this call only
            self._db.execute("ROLLBACK TO call")
            op.error = e
        self._db.execute("RELEASE call")

    def _write_bodies(self, accepts: list[_Accept]) -> list[Location | None]:
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


def queued_recipient(env: Envelope, rcpt: str) -> QueuedRecipient:
    """A new recipient's queue entry, with its DSN request (RFC 3461) if it made one."""
    dsn = env.dsn.get(rcpt)
    if dsn is None:
        return QueuedRecipient(rcpt)
    return QueuedRecipient(rcpt, notify=",".join(sorted(dsn.notify)), orcpt=dsn.orcpt)


def _noop(result: Any, error: BaseException | None) -> None:
    """Placeholder completion; replaced by `_submit`."""
