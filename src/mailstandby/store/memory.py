"""Standby mailboxes in memory: the reference behaviour of the `MailboxStore` contract.

Used by the IMAP and POP3 tests, and as the executable specification the
SQLite implementation is checked against (tests/component/mailbox_contract.py
runs the same suite over both). Nothing here survives the process.

Invariants (RFC 3501 §2.3.1.1, RFC 9051 §2.3.1.1, RFC 7162 §3):
- UIDVALIDITY comes from one counter seeded with the clock, so a mailbox that
  is deleted and created again (or a new mailbox made by renaming INBOX)
  never reuses an earlier value under the same name;
- UIDNEXT never goes back, not even when the highest UIDs are expunged;
- every operation that changes a mailbox (append, a flag change, an expunge,
  copy or move into it) raises its HIGHESTMODSEQ by one and stamps the
  messages it touched with the new value;
- each operation is atomic: there is no `await` between its first check and
  its last write, so no other task can observe it half-done;
- a user's mailboxes live in that user's own table: no call for one user can
  reach another user's mailbox. Body ids are global (the `read_message`
  contract names no user), so they are only ever handed out in the snapshot
  of the mailbox that holds them;
- a watch follows the mailbox it started on (through a rename) and ends when
  that mailbox is deleted; callbacks run after the change is complete, and an
  exception in one is logged, never raised into the operation.

Names are validated with `check_mailbox_name()`; a user never set up with
`ensure_user()` has no mailboxes, and every named operation on it reports
"nonexistent". Flags starting with a backslash must be system flags
(`\\Recent` is a session flag and is never stored); keywords are stored as given.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

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

log = logging.getLogger(__name__)

Watcher = Callable[[Change], None]


@dataclass(eq=False, slots=True)
class _Mailbox:
    name: str
    uidvalidity: int
    special_use: SpecialUse | None = None
    subscribed: bool = False
    uidnext: int = 1
    highestmodseq: int = 1
    recent_uid: int = 0  # the highest UID a session has claimed as \\Recent
    messages: dict[int, MessageMeta] = field(default_factory=dict)  # by UID, in UID order
    watchers: list[Watcher] = field(default_factory=list)

    def info(self) -> MailboxInfo:
        unseen = sum(1 for m in self.messages.values() if "\\Seen" not in m.flags)
        return MailboxInfo(
            name=self.name,
            uidvalidity=self.uidvalidity,
            uidnext=self.uidnext,
            highestmodseq=self.highestmodseq,
            messages=len(self.messages),
            unseen=unseen,
            special_use=self.special_use,
            subscribed=self.subscribed,
            recent=sum(1 for uid in self.messages if uid > self.recent_uid),
        )

    def bump(self) -> int:
        self.highestmodseq += 1
        return self.highestmodseq

    def notify(self, change: Change) -> None:
        for callback in list(self.watchers):
            try:
                callback(change)
            except Exception:
                log.exception("mailbox watcher failed (user=%s mailbox=%s)", change.user, change.mailbox)


def _is_under(name: str, parent: str) -> bool:
    return name.startswith(parent + SEPARATOR)


class MemoryMailboxStore:
    """The whole MailboxStore protocol over dicts; optional size and quota limits for tests."""

    def __init__(self, *, max_message_size: int | None = None, quota: int | None = None) -> None:
        self.max_message_size = max_message_size  # larger appends: MailboxError("too-big")
        self.quota = quota  # bytes per user; beyond it: MailboxError("over-quota")
        self._users: dict[str, dict[str, _Mailbox]] = {}
        self._bodies: dict[int, bytes] = {}
        self._refs: dict[int, int] = {}  # body id -> number of messages referring to it
        self._body_ids = itertools.count(1)
        self._uidvalidity = itertools.count(max(1, int(time.time())) & 0xFFFFFFFF)

    # -- mailboxes -------------------------------------------------------------------
    async def ensure_user(self, user: str) -> None:
        boxes = self._users.setdefault(user, {})
        for name, special_use in DEFAULT_MAILBOXES.items():
            if name not in boxes:
                boxes[name] = self._new_mailbox(name, special_use, subscribed=True)

    async def list_mailboxes(self, user: str) -> list[MailboxInfo]:
        boxes = self._users.get(user, {})
        order = sorted(boxes, key=lambda n: (n != "INBOX", n))
        return [boxes[n].info() for n in order]

    async def create_mailbox(self, user: str, name: str, special_use: SpecialUse | None = None) -> MailboxInfo:
        name = check_mailbox_name(name)
        boxes = self._boxes(user)
        if name in boxes:
            raise MailboxError("exists")
        self._create_parents(boxes, name)
        box = boxes[name] = self._new_mailbox(name, special_use)
        return box.info()

    async def delete_mailbox(self, user: str, name: str) -> None:
        """Delete one mailbox; its children (RFC 9051 §6.3.4) stay where they are."""
        name = check_mailbox_name(name)
        if name == "INBOX":
            raise MailboxError("cannot", "INBOX cannot be deleted")
        boxes = self._boxes(user)
        box = self._box(user, name)
        del boxes[name]
        expunged = tuple(box.messages)
        for meta in box.messages.values():
            self._unref(meta.body_id)
        box.messages.clear()
        if expunged:
            box.notify(Change(user, name, expunged=expunged))
        box.watchers.clear()

    async def rename_mailbox(self, user: str, old: str, new: str) -> None:
        old, new = check_mailbox_name(old), check_mailbox_name(new)
        boxes = self._boxes(user)
        box = self._box(user, old)
        if new in boxes:
            raise MailboxError("exists")
        if old == "INBOX":
            self._rename_inbox(user, boxes, box, new)
            return
        if _is_under(new, old):
            raise MailboxError("cannot", "cannot rename a mailbox into itself")
        moving = [n for n in boxes if n == old or _is_under(n, old)]
        targets = {n: new + n[len(old) :] for n in moving}
        if any(t in boxes for t in targets.values()):
            raise MailboxError("exists")
        for t in targets.values():
            check_mailbox_name(t)  # a child may get too long or too deep
        self._create_parents(boxes, new)
        for n, t in targets.items():
            moved = boxes.pop(n)
            moved.name = t
            boxes[t] = moved

    def _rename_inbox(self, user: str, boxes: dict[str, _Mailbox], inbox: _Mailbox, new: str) -> None:
        """RFC 3501 §6.3.5: the messages move to a new mailbox; INBOX stays, empty; children stay."""
        self._create_parents(boxes, new)
        target = boxes[new] = self._new_mailbox(new, None)
        uids = list(inbox.messages)
        modseq = target.bump()
        for uid in uids:
            meta = inbox.messages.pop(uid)
            target.messages[target.uidnext] = replace(meta, uid=target.uidnext, modseq=modseq)
            target.uidnext += 1
        if uids:
            inbox.bump()
            inbox.notify(Change(user, "INBOX", expunged=tuple(uids)))

    async def set_subscribed(self, user: str, name: str, subscribed: bool) -> None:
        self._box(user, check_mailbox_name(name)).subscribed = subscribed

    async def snapshot(self, user: str, name: str) -> Snapshot:
        box = self._box(user, check_mailbox_name(name))
        return Snapshot(box.info(), list(box.messages.values()))

    # -- messages ------------------------------------------------------------------------
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
        box = self._box(user, check_mailbox_name(name))
        flags = check_flags(flags)
        if self.max_message_size is not None and len(body) > self.max_message_size:
            raise MailboxError("too-big")
        self._check_quota(user, len(body))
        body_id = next(self._body_ids)
        self._bodies[body_id] = bytes(body)
        self._refs[body_id] = 1
        meta = MessageMeta(
            uid=box.uidnext,
            flags=flags,
            internal_date=time.time() if internal_date is None else internal_date,
            size=len(body),
            modseq=box.bump(),
            body_id=body_id,
            journaled=journaled,
        )
        box.messages[meta.uid] = meta
        box.uidnext += 1
        box.notify(Change(user, box.name, added=(meta,)))
        return box.uidvalidity, meta.uid

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
        """UIDs that do not exist are ignored; a message whose MODSEQ is above
        `unchanged_since` is left alone (RFC 7162 §3.1.3); returns what changed."""
        box = self._box(user, check_mailbox_name(name))
        flags = check_flags(flags)
        wanted: list[tuple[int, frozenset[str]]] = []
        for uid in sorted(set(uids)):
            meta = box.messages.get(uid)
            if meta is None or (unchanged_since is not None and meta.modseq > unchanged_since):
                continue
            new = apply_flags(meta.flags, flags, mode)
            if new != meta.flags:
                wanted.append((uid, new))
        if not wanted:
            return []
        modseq = box.bump()
        changed = []
        for uid, new in wanted:
            meta = box.messages[uid] = replace(box.messages[uid], flags=new, modseq=modseq)
            changed.append(meta)
        box.notify(Change(user, box.name, flags=tuple(changed)))
        return changed

    async def expunge(self, user: str, name: str, uids: list[int] | None = None) -> list[int]:
        box = self._box(user, check_mailbox_name(name))
        candidates = box.messages if uids is None else [u for u in sorted(set(uids)) if u in box.messages]
        gone = [u for u in candidates if "\\Deleted" in box.messages[u].flags]
        self._remove(user, box, gone)
        return gone

    def _remove(self, user: str, box: _Mailbox, uids: list[int]) -> None:
        if not uids:
            return
        for uid in uids:
            self._unref(box.messages.pop(uid).body_id)
        box.bump()
        box.notify(Change(user, box.name, expunged=tuple(uids)))

    async def copy(self, user: str, source: str, uids: list[int], target: str) -> list[tuple[int, int]]:
        return self._copy(user, source, uids, target, count_quota=True)

    async def move(self, user: str, source: str, uids: list[int], target: str) -> list[tuple[int, int]]:
        pairs = self._copy(user, source, uids, target, count_quota=False)  # a move adds no bytes
        self._remove(user, self._box(user, check_mailbox_name(source)), [old for old, _ in pairs])
        return pairs

    def _copy(
        self, user: str, source: str, uids: list[int], target: str, *, count_quota: bool
    ) -> list[tuple[int, int]]:
        src = self._box(user, check_mailbox_name(source))
        dst = self._box(user, check_mailbox_name(target))
        metas = [src.messages[u] for u in sorted(set(uids)) if u in src.messages]
        if not metas:
            return []
        if count_quota:
            self._check_quota(user, sum(m.size for m in metas))
        modseq = dst.bump()
        pairs, added = [], []
        for meta in metas:
            new = replace(meta, uid=dst.uidnext, modseq=modseq)
            dst.messages[new.uid] = new
            dst.uidnext += 1
            self._refs[meta.body_id] += 1
            pairs.append((meta.uid, new.uid))
            added.append(new)
        dst.notify(Change(user, dst.name, added=tuple(added)))
        return pairs

    async def read_message(self, body_id: int) -> bytes:
        try:
            return self._bodies[body_id]
        except KeyError:
            raise MailboxError("nonexistent", "no such message body") from None

    async def claim_recent(self, user: str, name: str, up_to: int) -> int:
        box = self._box(user, check_mailbox_name(name))
        before = box.recent_uid
        box.recent_uid = max(before, min(up_to, box.uidnext - 1))
        return before

    def watch(self, user: str, name: str, callback: Callable[[Change], None]) -> Callable[[], None]:
        box = self._box(user, check_mailbox_name(name))
        box.watchers.append(callback)

        def stop() -> None:
            if callback in box.watchers:
                box.watchers.remove(callback)

        return stop

    # -- helpers -------------------------------------------------------------------------
    def _boxes(self, user: str) -> dict[str, _Mailbox]:
        boxes = self._users.get(user)
        if boxes is None:
            raise MailboxError("nonexistent", "no such user")
        return boxes

    def _box(self, user: str, name: str) -> _Mailbox:
        box = self._boxes(user).get(name)
        if box is None:
            raise MailboxError("nonexistent")
        return box

    def _new_mailbox(self, name: str, special_use: SpecialUse | None, *, subscribed: bool = False) -> _Mailbox:
        return _Mailbox(name, next(self._uidvalidity) & 0xFFFFFFFF or 1, special_use, subscribed)

    def _create_parents(self, boxes: dict[str, _Mailbox], name: str) -> None:
        """RFC 3501 §6.3.3/§6.3.5: superior names needed for `name` are created too."""
        parts = name.split(SEPARATOR)
        for depth in range(1, len(parts)):
            parent = SEPARATOR.join(parts[:depth])
            if parent not in boxes:
                boxes[parent] = self._new_mailbox(parent, None)

    def _unref(self, body_id: int) -> None:
        self._refs[body_id] -= 1
        if self._refs[body_id] == 0:
            del self._refs[body_id]
            del self._bodies[body_id]

    def _check_quota(self, user: str, extra: int) -> None:
        if self.quota is None:
            return
        used = sum(m.size for box in self._users.get(user, {}).values() for m in box.messages.values())
        if used + extra > self.quota:
            raise MailboxError("over-quota")
