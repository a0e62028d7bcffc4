"""Standby mailboxes in the embedded SQLite store (the MailboxStore contract, store/mailbox.py).

Every change runs as a function inside the store's single writer thread, in
the same group-committed transaction as accepted mail (each call in its own
savepoint, so one failing call never undoes another's work); it returns only
once the transaction is durable. Reads use the event loop's own connection.
Message bodies live in `bodies` (shared by copies, counted by `refs`);
metadata in `mail`, keyed by (mailbox, uid).

Invariants kept here (RFC 9051 §2.3.1.1, RFC 7162 §3), as in the memory store:
UIDVALIDITY comes from a stored counter that only grows (so a re-created name
never reuses a value); UIDNEXT never goes back; every change raises the
mailbox's HIGHESTMODSEQ by one and stamps the touched messages with it; no
call for one user can reach another user's mailbox.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mailstandby.store.changefeed import MailboxMirror
from mailstandby.store.database import SQLStore
from mailstandby.store.mailbox import (
    DEFAULT_MAILBOXES,
    SEPARATOR,
    Change,
    FlagMode,
    MailboxError,
    MailboxInfo,
    MessageMeta,
    Snapshot,
    SpecialUse,
    apply_flags,
    check_flags,
    check_mailbox_name,
)
from mailstandby.store.sqlite_schema import UPSERT_CREDENTIAL, insert_audit

log = logging.getLogger(__name__)

Watcher = Callable[[Change], None]

_MAIL_COLS = "uid, flags, internal_date, size, modseq, body_id, journaled"


@dataclass(slots=True)
class _Box:
    id: int
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: str | None
    subscribed: int


def _flags_text(flags: Iterable[str]) -> str:
    return " ".join(sorted(flags))


def _meta(row: tuple) -> MessageMeta:  # type: ignore[type-arg]
    uid, flags, date, size, modseq, body_id, journaled = row
    return MessageMeta(uid, frozenset(flags.split()), date, size, modseq, body_id, bool(journaled))


# -- writer-thread functions: each runs inside the batch transaction ------------------------
def _box(db: sqlite3.Connection, user: str, name: str) -> _Box:
    row = db.execute(
        "SELECT id, name, uidvalidity, uidnext, highestmodseq, special_use, subscribed"
        " FROM mailboxes WHERE user = ? AND name = ?",
        (user, name),
    ).fetchone()
    if row is None:
        raise MailboxError("nonexistent")
    return _Box(*row)


def _user_exists(db: sqlite3.Connection, user: str) -> None:
    if db.execute("SELECT 1 FROM mailboxes WHERE user = ? AND name = 'INBOX'", (user,)).fetchone() is None:
        raise MailboxError("nonexistent", "no such user")


# counts as integers on both engines (PostgreSQL's sum() of a bigint is numeric)
_UNSEEN = "CAST(coalesce(sum(CASE WHEN instr(' ' || m.flags || ' ', ' \\Seen ') = 0 THEN 1 ELSE 0 END), 0) AS BIGINT)"
_RECENT = "CAST(coalesce(sum(CASE WHEN m.uid > b.recent_uid THEN 1 ELSE 0 END), 0) AS BIGINT)"
_SET_META = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"


def _next_uidvalidity(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = 'uidvalidity'").fetchone()
    value = max(int(time.time()) & 0xFFFFFFFF, (row[0] if row else 0) + 1) or 1
    db.execute(_SET_META, ("uidvalidity", value))
    return value


def _new_body(db: sqlite3.Connection, data: bytes) -> int:
    """Store a body under an id never used before (not even by a deleted body), so that
    caches keyed by body id (IMAP ENVELOPE/BODYSTRUCTURE) can never serve a stale entry."""
    row = db.execute("SELECT value FROM meta WHERE key = 'body_id'").fetchone()
    last = row[0] if row else db.execute("SELECT coalesce(max(id), 0) FROM bodies").fetchone()[0]
    db.execute(_SET_META, ("body_id", last + 1))
    db.execute("INSERT INTO bodies (id, data, refs) VALUES (?, ?, 1)", (last + 1, data))
    return int(last + 1)


def _create(db: sqlite3.Connection, user: str, name: str, special_use: str | None, subscribed: bool) -> int:
    row = db.execute(
        "INSERT INTO mailboxes (user, name, uidvalidity, special_use, subscribed) VALUES (?, ?, ?, ?, ?) RETURNING id",
        (user, name, _next_uidvalidity(db), special_use, int(subscribed)),
    ).fetchone()
    return int(row[0])


def _create_parents(db: sqlite3.Connection, user: str, name: str) -> None:
    """RFC 3501 §6.3.3/§6.3.5: superior names needed for `name` are created too."""
    parts = name.split(SEPARATOR)
    for depth in range(1, len(parts)):
        parent = SEPARATOR.join(parts[:depth])
        if db.execute("SELECT 1 FROM mailboxes WHERE user = ? AND name = ?", (user, parent)).fetchone() is None:
            _create(db, user, parent, None, False)


def _bump(db: sqlite3.Connection, box: _Box, uids_added: int = 0) -> int:
    box.highestmodseq += 1
    box.uidnext += uids_added
    db.execute(
        "UPDATE mailboxes SET highestmodseq = ?, uidnext = ? WHERE id = ?", (box.highestmodseq, box.uidnext, box.id)
    )
    return box.highestmodseq


def _unref(db: sqlite3.Connection, body_ids: Iterable[int]) -> None:
    for body_id in body_ids:
        db.execute("UPDATE bodies SET refs = refs - 1 WHERE id = ?", (body_id,))
        db.execute("DELETE FROM bodies WHERE id = ? AND refs <= 0", (body_id,))


def _remove(db: sqlite3.Connection, user: str, box: _Box, uids: list[int]) -> list[Change]:
    if not uids:
        return []
    bodies = [
        db.execute("SELECT body_id FROM mail WHERE mailbox_id = ? AND uid = ?", (box.id, u)).fetchone()[0] for u in uids
    ]
    db.executemany("DELETE FROM mail WHERE mailbox_id = ? AND uid = ?", [(box.id, u) for u in uids])
    _unref(db, bodies)
    _bump(db, box)
    return [Change(user, box.name, expunged=tuple(uids))]


def _copy_into(db: sqlite3.Connection, user: str, metas: list[MessageMeta], dst: _Box) -> tuple[list, Change]:  # type: ignore[type-arg]
    modseq = _bump(db, dst, uids_added=0)
    pairs, added = [], []
    for meta in metas:
        uid = dst.uidnext
        dst.uidnext += 1
        db.execute(
            "INSERT INTO mail (mailbox_id, uid, body_id, flags, internal_date, size, modseq, journaled)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                dst.id,
                uid,
                meta.body_id,
                _flags_text(meta.flags),
                meta.internal_date,
                meta.size,
                modseq,
                int(meta.journaled),
            ),
        )
        db.execute("UPDATE bodies SET refs = refs + 1 WHERE id = ?", (meta.body_id,))
        pairs.append((meta.uid, uid))
        added.append(MessageMeta(uid, meta.flags, meta.internal_date, meta.size, modseq, meta.body_id, meta.journaled))
    db.execute("UPDATE mailboxes SET uidnext = ? WHERE id = ?", (dst.uidnext, dst.id))
    return pairs, Change(user, dst.name, added=tuple(added))


def _metas(db: sqlite3.Connection, box: _Box, uids: Iterable[int]) -> list[MessageMeta]:
    out = []
    for uid in sorted(set(uids)):
        row = db.execute(f"SELECT {_MAIL_COLS} FROM mail WHERE mailbox_id = ? AND uid = ?", (box.id, uid)).fetchone()
        if row is not None:
            out.append(_meta(row))
    return out


class SQLiteMailboxStore:
    """MailboxStore over the server store's database and writer thread (SQLite or PostgreSQL)."""

    def __init__(self, store: SQLStore, *, journal_reserve: int = 0) -> None:
        self.store = store
        self.journal_reserve = journal_reserve  # free bytes journal copies must leave (the intake's reserve)
        self._watchers: dict[int, list[Watcher]] = {}  # by mailbox id: a watch follows renames
        self._mirror = MailboxMirror()  # watched mailboxes as last seen, for other nodes' changes

    # -- mailboxes ---------------------------------------------------------------------
    async def ensure_user(self, user: str) -> None:
        def run(db: sqlite3.Connection) -> None:
            for name, special_use in DEFAULT_MAILBOXES.items():
                exists = db.execute("SELECT 1 FROM mailboxes WHERE user = ? AND name = ?", (user, name)).fetchone()
                if exists is None:
                    _create(db, user, name, special_use.value if special_use else None, True)

        await self.store.call(run)

    async def list_mailboxes(self, user: str) -> list[MailboxInfo]:
        rows = (
            self._read()
            .execute(
                "SELECT b.name, b.uidvalidity, b.uidnext, b.highestmodseq, count(m.uid),"
                f" {_UNSEEN}, b.special_use, b.subscribed, {_RECENT}"
                " FROM mailboxes b LEFT JOIN mail m ON m.mailbox_id = b.id WHERE b.user = ?"
                " GROUP BY b.id ORDER BY b.name != 'INBOX', b.name",
                (user,),
            )
            .fetchall()
        )
        return [self._info(r) for r in rows]

    @staticmethod
    def _info(r: tuple) -> MailboxInfo:  # type: ignore[type-arg]
        name, uidvalidity, uidnext, hms, messages, unseen, special_use, subscribed, recent = r
        return MailboxInfo(
            name,
            uidvalidity,
            uidnext,
            hms,
            messages,
            unseen,
            SpecialUse(special_use) if special_use else None,
            bool(subscribed),
            recent,
        )

    async def create_mailbox(self, user: str, name: str, special_use: SpecialUse | None = None) -> MailboxInfo:
        name = check_mailbox_name(name)

        def run(db: sqlite3.Connection) -> None:
            _user_exists(db, user)
            if db.execute("SELECT 1 FROM mailboxes WHERE user = ? AND name = ?", (user, name)).fetchone():
                raise MailboxError("exists")
            _create_parents(db, user, name)
            _create(db, user, name, special_use.value if special_use else None, False)

        await self.store.call(run)
        return (await self.snapshot(user, name, with_messages=False)).info

    async def delete_mailbox(self, user: str, name: str) -> None:
        """Delete one mailbox; its children (RFC 9051 §6.3.4) stay where they are."""
        name = check_mailbox_name(name)
        if name == "INBOX":
            raise MailboxError("cannot", "INBOX cannot be deleted")

        def run(db: sqlite3.Connection) -> tuple[int, list[Change]]:
            box = _box(db, user, name)
            uids = [u for (u,) in db.execute("SELECT uid FROM mail WHERE mailbox_id = ?", (box.id,))]
            changes = _remove(db, user, box, uids)
            db.execute("DELETE FROM mailboxes WHERE id = ?", (box.id,))
            return box.id, changes

        box_id, changes = await self.store.call(run)
        self._notify(changes, {name: box_id})
        self._watchers.pop(box_id, None)

    async def rename_mailbox(self, user: str, old: str, new: str) -> None:
        old, new = check_mailbox_name(old), check_mailbox_name(new)

        def run(db: sqlite3.Connection) -> tuple[list[Change], dict[str, int]]:
            box = _box(db, user, old)
            if db.execute("SELECT 1 FROM mailboxes WHERE user = ? AND name = ?", (user, new)).fetchone():
                raise MailboxError("exists")
            if old == "INBOX":
                return self._rename_inbox(db, user, box, new)
            if new.startswith(old + SEPARATOR):
                raise MailboxError("cannot", "cannot rename a mailbox into itself")
            moving = db.execute(
                "SELECT id, name FROM mailboxes WHERE user = ? AND (name = ? OR substr(name, 1, ?) = ?)",
                (user, old, len(old) + 1, old + SEPARATOR),
            ).fetchall()
            targets = [(box_id, new + n[len(old) :]) for box_id, n in moving]
            for _, t in targets:
                check_mailbox_name(t)
                if db.execute("SELECT 1 FROM mailboxes WHERE user = ? AND name = ?", (user, t)).fetchone():
                    raise MailboxError("exists")
            _create_parents(db, user, new)
            for box_id, t in targets:
                db.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (t, box_id))
            return [], {}

        changes, ids = await self.store.call(run)
        self._notify(changes, ids)

    @staticmethod
    def _rename_inbox(db: sqlite3.Connection, user: str, inbox: _Box, new: str) -> tuple[list[Change], dict[str, int]]:
        """RFC 3501 §6.3.5: the messages move to a new mailbox; INBOX stays, empty; children stay."""
        _create_parents(db, user, new)
        _create(db, user, new, None, False)
        target = _box(db, user, new)
        metas = [_meta(r) for r in db.execute(f"SELECT {_MAIL_COLS} FROM mail WHERE mailbox_id = ?", (inbox.id,))]
        _copy_into(db, user, metas, target)  # nobody can watch the new mailbox yet
        return _remove(db, user, inbox, [m.uid for m in metas]), {"INBOX": inbox.id}

    async def set_subscribed(self, user: str, name: str, subscribed: bool) -> None:
        name = check_mailbox_name(name)

        def run(db: sqlite3.Connection) -> None:
            box = _box(db, user, name)
            db.execute("UPDATE mailboxes SET subscribed = ? WHERE id = ?", (int(subscribed), box.id))

        await self.store.call(run)

    async def snapshot(self, user: str, name: str, *, with_messages: bool = True) -> Snapshot:
        name = check_mailbox_name(name)
        db = self._read()
        row = db.execute(
            "SELECT b.name, b.uidvalidity, b.uidnext, b.highestmodseq, count(m.uid),"
            f" {_UNSEEN}, b.special_use, b.subscribed, {_RECENT}, b.id"
            " FROM mailboxes b LEFT JOIN mail m ON m.mailbox_id = b.id WHERE b.user = ? AND b.name = ?"
            " GROUP BY b.id",
            (user, name),
        ).fetchone()
        if row is None:
            raise MailboxError("nonexistent")
        snap = Snapshot(self._info(row[:9]))
        if with_messages:
            rows = db.execute(f"SELECT {_MAIL_COLS} FROM mail WHERE mailbox_id = ? ORDER BY uid", (row[9],))
            snap.messages = [_meta(r) for r in rows]
        return snap

    # -- messages ----------------------------------------------------------------------
    async def append(
        self,
        user: str,
        name: str,
        body: bytes,
        flags: frozenset[str] = frozenset(),
        internal_date: float | None = None,
        *,
        journaled: bool = False,
    ) -> tuple[int, int]:
        name = check_mailbox_name(name)
        flags = check_flags(flags)
        date = time.time() if internal_date is None else internal_date

        def run(db: sqlite3.Connection) -> tuple[int, int, list[Change], dict[str, int]]:
            box = _box(db, user, name)
            body_id = _new_body(db, body)
            uid = box.uidnext
            modseq = _bump(db, box, uids_added=1)
            db.execute(
                "INSERT INTO mail (mailbox_id, uid, body_id, flags, internal_date, size, modseq, journaled)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (box.id, uid, body_id, _flags_text(flags), date, len(body), modseq, int(journaled)),
            )
            meta = MessageMeta(uid, flags, date, len(body), modseq, body_id, journaled)
            return box.uidvalidity, uid, [Change(user, box.name, added=(meta,))], {box.name: box.id}

        uidvalidity, uid, changes, ids = await self.store.call(run)
        self._notify(changes, ids)
        return uidvalidity, uid

    async def store_flags(
        self,
        user: str,
        name: str,
        uids: list[int],
        flags: frozenset[str],
        mode: FlagMode,
        *,
        unchanged_since: int | None = None,
    ) -> list[MessageMeta]:
        name = check_mailbox_name(name)
        flags = check_flags(flags)

        def run(db: sqlite3.Connection) -> tuple[list[MessageMeta], list[Change], dict[str, int]]:
            box = _box(db, user, name)
            wanted = []
            for meta in _metas(db, box, uids):
                if unchanged_since is not None and meta.modseq > unchanged_since:
                    continue
                new = apply_flags(meta.flags, flags, mode)
                if new != meta.flags:
                    wanted.append((meta, new))
            if not wanted:
                return [], [], {}
            modseq = _bump(db, box)
            changed = []
            for meta, new in wanted:
                db.execute(
                    "UPDATE mail SET flags = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?",
                    (_flags_text(new), modseq, box.id, meta.uid),
                )
                changed.append(
                    MessageMeta(meta.uid, new, meta.internal_date, meta.size, modseq, meta.body_id, meta.journaled)
                )
            return changed, [Change(user, box.name, flags=tuple(changed))], {box.name: box.id}

        changed, changes, ids = await self.store.call(run)
        self._notify(changes, ids)
        return changed

    async def expunge(self, user: str, name: str, uids: list[int] | None = None) -> list[int]:
        name = check_mailbox_name(name)

        def run(db: sqlite3.Connection) -> tuple[list[int], list[Change], dict[str, int]]:
            box = _box(db, user, name)
            rows = db.execute(
                "SELECT uid FROM mail WHERE mailbox_id = ? AND instr(' ' || flags || ' ', ' \\Deleted ') > 0"
                " ORDER BY uid",
                (box.id,),
            ).fetchall()
            gone = [u for (u,) in rows if uids is None or u in set(uids)]
            return gone, _remove(db, user, box, gone), {box.name: box.id}

        gone, changes, ids = await self.store.call(run)
        self._notify(changes, ids)
        return gone

    async def copy(self, user: str, source: str, uids: list[int], target: str) -> list[tuple[int, int]]:
        return await self._transfer(user, source, uids, target, move=False)

    async def move(self, user: str, source: str, uids: list[int], target: str) -> list[tuple[int, int]]:
        return await self._transfer(user, source, uids, target, move=True)

    async def _transfer(self, user: str, source: str, uids: list[int], target: str, *, move: bool) -> list:  # type: ignore[type-arg]
        source, target = check_mailbox_name(source), check_mailbox_name(target)

        def run(db: sqlite3.Connection) -> tuple[list, list[Change], dict[str, int]]:  # type: ignore[type-arg]
            src, dst = _box(db, user, source), _box(db, user, target)
            metas = _metas(db, src, uids)
            if not metas:
                return [], [], {}
            pairs, added = _copy_into(db, user, metas, dst)
            changes = [added]
            if move:
                changes += _remove(db, user, src, [m.uid for m in metas])
            return pairs, changes, {src.name: src.id, dst.name: dst.id}

        pairs, changes, ids = await self.store.call(run)
        self._notify(changes, ids)
        return pairs

    async def read_message(self, body_id: int) -> bytes:
        row = self._read().execute("SELECT data FROM bodies WHERE id = ?", (body_id,)).fetchone()
        if row is None:
            raise MailboxError("nonexistent", "no such message body")
        return bytes(row[0])

    async def claim_recent(self, user: str, name: str, up_to: int) -> int:
        """Read first (a session usually finds another already claimed it); claim in the writer."""
        name = check_mailbox_name(name)
        row = (
            self._read()
            .execute("SELECT recent_uid FROM mailboxes WHERE user = ? AND name = ?", (user, name))
            .fetchone()
        )
        if row is None:
            raise MailboxError("nonexistent")
        if up_to <= row[0]:
            return int(row[0])

        def run(db: sqlite3.Connection) -> int:
            box = _box(db, user, name)
            before = db.execute("SELECT recent_uid FROM mailboxes WHERE id = ?", (box.id,)).fetchone()[0]
            db.execute(
                "UPDATE mailboxes SET recent_uid = ? WHERE id = ?", (max(before, min(up_to, box.uidnext - 1)), box.id)
            )
            return int(before)

        return int(await self.store.call(run))

    def watch(self, user: str, name: str, callback: Callable[[Change], None]) -> Callable[[], None]:
        name = check_mailbox_name(name)
        row = self._read().execute("SELECT id FROM mailboxes WHERE user = ? AND name = ?", (user, name)).fetchone()
        if row is None:
            raise MailboxError("nonexistent")
        watchers = self._watchers.setdefault(row[0], [])
        watchers.append(callback)
        if row[0] not in self._mirror.tracked():
            self._mirror.changes(self._read(), user, name, row[0])  # the baseline for other nodes' changes

        def stop() -> None:
            if callback in watchers:
                watchers.remove(callback)
            if not watchers:
                self._mirror.forget(row[0])

        return stop

    def remote_change(self, user: str, name: str) -> None:
        """Another node changed `user`'s mailbox `name` (a hint): read it anew, tell the watchers."""
        row = self._read().execute("SELECT id FROM mailboxes WHERE user = ? AND name = ?", (user, name)).fetchone()
        if row is not None and self._watchers.get(row[0]):
            change = self._mirror.changes(self._read(), user, name, row[0])
            if change is not None:
                self._dispatch([(change, row[0])], announce=False)

    def resync(self) -> None:
        """Hints may have been missed (the listening connection was lost): read every watched mailbox anew."""
        for box_id in self._mirror.tracked():
            row = self._read().execute("SELECT user, name FROM mailboxes WHERE id = ?", (box_id,)).fetchone()
            if row is not None:
                self.remote_change(*row)

    # -- journal (warm standby) ---------------------------------------------------------------
    def journal_copies(
        self, users: list[str], body: bytes, internal_date: float
    ) -> Callable[[sqlite3.Connection], Any]:
        """A writer-thread function filing one journal copy per user in INBOX (creating the user's
        mailboxes if needed); its result is given to `published()` after the commit. Skipped when
        free space is below the reserve: the primary has the message."""
        return self._copies(users, body, internal_date, journaled=True)

    def standby_copies(
        self, users: list[str], body: bytes, internal_date: float
    ) -> Callable[[sqlite3.Connection], Any]:
        """Like `journal_copies`, for mail delivered to the standby during an outage: only we hold
        it, so no reserve applies, and a failure must undo the delivery outcome with it."""
        return self._copies(users, body, internal_date, journaled=False)

    def _copies(
        self, users: list[str], body: bytes, internal_date: float, *, journaled: bool
    ) -> Callable[[sqlite3.Connection], Any]:
        def run(db: sqlite3.Connection) -> list[tuple[Change, int]]:
            pairs: list[tuple[Change, int]] = []
            if journaled and self.store.free_space() - len(body) < self.journal_reserve:
                # The primary has the message; disk space is for mail only we hold.
                log.warning("journal copy skipped for %d user(s): free space below the reserve", len(users))
                return pairs
            body_id = 0
            for user in users:
                if db.execute("SELECT 1 FROM mailboxes WHERE user = ? AND name = 'INBOX'", (user,)).fetchone() is None:
                    for name, special_use in DEFAULT_MAILBOXES.items():
                        if not db.execute(
                            "SELECT 1 FROM mailboxes WHERE user = ? AND name = ?", (user, name)
                        ).fetchone():
                            _create(db, user, name, special_use.value if special_use else None, True)
                box = _box(db, user, "INBOX")
                if body_id:
                    db.execute("UPDATE bodies SET refs = refs + 1 WHERE id = ?", (body_id,))
                else:
                    body_id = _new_body(db, body)
                uid = box.uidnext
                modseq = _bump(db, box, uids_added=1)
                db.execute(
                    "INSERT INTO mail (mailbox_id, uid, body_id, flags, internal_date, size, modseq, journaled)"
                    " VALUES (?, ?, ?, '', ?, ?, ?, ?)",
                    (box.id, uid, body_id, internal_date, len(body), modseq, int(journaled)),
                )
                meta = MessageMeta(uid, frozenset(), internal_date, len(body), modseq, body_id, journaled)
                pairs.append((Change(user, "INBOX", added=(meta,)), box.id))
            return pairs

        return run

    def published(self, result: Any) -> None:
        """Tell watchers about what a `journal_copies` function filed (call after the commit)."""
        self._dispatch(result or [])

    async def prune_journal(self, before: float) -> int:
        """Expunge journal copies filed before `before` (they are on the primary); returns how many."""

        def run(db: sqlite3.Connection) -> tuple[int, list[tuple[Change, int]]]:
            rows = db.execute(
                "SELECT b.id, b.user, b.name, m.uid FROM mail m JOIN mailboxes b ON b.id = m.mailbox_id"
                " WHERE m.journaled = 1 AND m.internal_date < ? ORDER BY b.id, m.uid",
                (before,),
            ).fetchall()
            by_box: dict[int, list[int]] = {}
            for box_id, _, _, uid in rows:
                by_box.setdefault(box_id, []).append(uid)
            names = {b: (u, n) for b, u, n, _ in rows}
            pairs = []
            for box_id, uids in by_box.items():
                box = _box(db, *names[box_id])
                pairs += [(c, box_id) for c in _remove(db, names[box_id][0], box, uids)]
            return len(rows), pairs

        count, pairs = await self.store.call(run)
        self._dispatch(pairs)
        return count

    # -- credentials (auth.CredentialStore) --------------------------------------------------
    async def password_hash(self, user: str) -> str | None:
        row = self._read().execute("SELECT hash FROM credentials WHERE user = ?", (user,)).fetchone()
        return row[0] if row else None

    async def set_password_hash(self, user: str, hashed: str) -> None:
        def run(db: sqlite3.Connection) -> None:
            db.execute(UPSERT_CREDENTIAL, (user, hashed, time.time()))

        await self.store.call(run)

    async def audit(self, actor: str, action: str, outcome: str, *, peer: str = "", detail: str = "") -> None:
        """Append to the audit trail (group-committed with whatever else is being written)."""

        await self.store.call(lambda db: insert_audit(db, actor, action, outcome, peer=peer, detail=detail))

    # -- helpers -----------------------------------------------------------------------------
    def _read(self) -> sqlite3.Connection:
        return self.store.read_connection()

    def _notify(self, changes: list[Change], ids: dict[str, int]) -> None:
        """Changes of one user's mailboxes, with the ids of those mailboxes by name."""
        self._dispatch([(c, ids[c.mailbox]) for c in changes if c.mailbox in ids])

    def _dispatch(self, pairs: list[tuple[Change, int]], *, announce: bool = True) -> None:
        if announce and pairs:
            self.store.announce([change for change, _ in pairs])  # to the other nodes' sessions
        for change, box_id in pairs:
            for callback in list(self._watchers.get(box_id, ())):
                try:
                    callback(change)
                except Exception:
                    log.exception("mailbox watcher failed (user=%s mailbox=%s)", change.user, change.mailbox)
