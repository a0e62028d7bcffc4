"""A selected mailbox as one session sees it: its sequence numbers, what it was told, what it is owed.

One `MailboxView` per session and selected mailbox. It alone owns the
session's sequence-number map (RFC 3501 §2.3.1.2: numbers change only when the
client is told), the ordered queue of changes pushed by `MailboxStore.watch`
(other sessions, deliveries, our own commands), the keywords the client has
been told about, and the messages that are `\\Recent` in this session. The
session asks it for the untagged responses it owes (`updates`) between
commands and writes them; it never imports the session.

Rules kept here (each checked by the model-based stress test, tests/support/imapstress.py):
- the queue is applied in order; `* n EXISTS` (with `* n RECENT`) comes
  before any response that names a new message's number;
- a message added and expunged before the client was told about it is never
  announced: its expunge is dropped, not sent (a `* n EXPUNGE` above the
  client's count is a protocol error);
- expunges are sent only when the command in flight allows it (RFC 3501
  §7.4.1: not during FETCH, STORE or SEARCH by sequence number); until then
  the message keeps its number, and each `* n EXPUNGE` is numbered at the
  moment it is sent;
- a keyword appears in `FETCH (FLAGS …)` only after an untagged `FLAGS` (and,
  read-write, `PERMANENTFLAGS`) listed it (RFC 3501 §7.2.6); the announced set
  only grows;
- `\\Recent` (RFC 3501 §2.3.2): a read-write view claims new messages through
  the store (`claim_recent`), so exactly one session gets each; a read-only
  view sees the unclaimed ones as recent and claims nothing;
- flag changes older than what the view holds (MODSEQ) are ignored, so a
  message's MODSEQ never goes back in what the client sees (RFC 7162 §3.1.2).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace

from mailstandby.imap import responses as r
from mailstandby.imap.syntax import SequenceSet
from mailstandby.store.mailbox import Change, MessageMeta, Snapshot

RECENT = "\\Recent"
SYSTEM = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
Claim = Callable[[int], Awaitable[int]]  # claim_recent(up to uid) -> the highest UID claimed before


def keywords(flags: Iterable[str]) -> set[str]:
    return {f for f in flags if not f.startswith("\\")}


class MailboxView:
    def __init__(self, name: str, snapshot: Snapshot, *, readonly: bool, claim: Claim) -> None:
        self.name = name
        self.readonly = readonly
        self.uidvalidity = snapshot.info.uidvalidity
        self.uidnext = snapshot.info.uidnext
        self.uids: list[int] = [m.uid for m in snapshot.messages]
        self.meta: dict[int, MessageMeta] = {m.uid: m for m in snapshot.messages}
        self.highestmodseq = snapshot.info.highestmodseq
        self.condstore = False  # RFC 7162 §3.2: unsolicited FETCH carries MODSEQ once enabled
        self.changed = asyncio.Event()
        self.stop: Callable[[], None] = lambda: None
        self.recent: set[int] = set()
        self.recent_told = 0  # the last `* n RECENT` count sent
        self.announced: set[str] = set()  # keywords the client was told about in FLAGS
        self._claim = claim  # read-only views pass up to 0: they read, never claim
        self._pending: list[Change] = []
        self._gone: set[int] = set()  # expunged elsewhere, not yet reported
        self._dirty: set[int] = set()
        self._reported_flags: dict[int, frozenset[str]] = {m.uid: m.flags for m in snapshot.messages}

    async def open(self) -> None:
        """SELECT/EXAMINE: which messages of the snapshot are recent here (RFC 3501 §6.3.1)."""
        last = self.uids[-1] if self.uids else 0
        before = await self._claim(0 if self.readonly else last)
        self.recent = {u for u in self.uids if u > before}
        self.recent_told = len(self.recent)

    def on_change(self, change: Change) -> None:
        """The store's watch callback: queue, never write (the session writes between commands)."""
        self._pending.append(change)
        self.changed.set()

    def queue(self, changes: Iterable[Change]) -> None:
        self._pending.extend(changes)

    # -- lookups ---------------------------------------------------------------------
    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int:
        return bisect.bisect_left(self.uids, uid) + 1

    def resolve(self, seqset: SequenceSet, *, uid: bool) -> list[int]:
        """The UIDs a sequence set names, ascending.

        A message number past the last one is a ValueError (BAD) unless its range
        ends in "*" (`5:*` is `3:5` with 3 messages, RFC 3501 §6.4.8; `1:*` on an
        empty mailbox names nothing).
        """
        if seqset.saved:
            raise ValueError("SEARCHRES is not supported")
        if uid:
            return seqset.members(self.uids)
        n = len(self.uids)
        if any(None not in rng and max(rng) > n for rng in seqset.ranges):  # type: ignore[type-var]
            raise ValueError("message sequence number out of range")
        return [self.uids[s - 1] for s in seqset.members(range(1, n + 1))]

    def first_unseen(self) -> int | None:
        for i, uid in enumerate(self.uids, 1):
            if "\\Seen" not in self.meta[uid].flags:
                return i
        return None

    def shown(self, uid: int) -> MessageMeta:
        """The message as this session shows it: `\\Recent` among its flags when it is recent here."""
        meta = self.meta[uid]
        return replace(meta, flags=meta.flags | {RECENT}) if uid in self.recent else meta

    # -- keywords (RFC 3501 §7.2.6) ----------------------------------------------------------
    def spelled(self, flags: Iterable[str]) -> frozenset[str]:
        """`flags` with each keyword spelled as the mailbox already has it: keywords compare without
        case, and the first spelling a mailbox saw stays (Dovecot's mailbox keyword list)."""
        known = {k.casefold(): k for k in self.announced}
        return frozenset(f if f.startswith("\\") else known.get(f.casefold(), f) for f in flags)

    def flags_response(self) -> bytes:
        """`* FLAGS (...)` and, read-write, `* OK [PERMANENTFLAGS (... \\*)]` for what is announced."""
        flags = [*SYSTEM, *sorted(self.announced)]
        out = r.untagged("FLAGS", r.flag_list(flags))
        permanent = [] if self.readonly else flags
        code = r.permanentflags(permanent, new_keywords=not self.readonly)
        return out + r.status_line("OK", "Flags permitted." if not self.readonly else "Read-only mailbox.", code)

    def announce(self, flags: Iterable[str]) -> bytes:
        """The FLAGS responses to send before a FETCH showing `flags`, or b"" when all are known."""
        new = keywords(flags) - self.announced
        if not new:
            return b""
        self.announced |= new
        return self.flags_response()

    def flag_line(self, uid: int, *, uid_item: bool) -> bytes:
        """`* n FETCH (UID u FLAGS (...) MODSEQ (m))`, its keywords announced first."""
        meta = self.shown(uid)
        self._reported_flags[uid] = self.meta[uid].flags
        return self.announce(meta.flags) + r.fetch(
            self.seq_of(uid), flag_items(meta, uid=uid_item, modseq=self.condstore)
        )

    # -- local changes (our own commands) ------------------------------------------
    def set_meta(self, meta: MessageMeta) -> None:
        self.highestmodseq = max(self.highestmodseq, meta.modseq)
        if meta.uid in self.meta and meta.modseq >= self.meta[meta.uid].modseq:
            self.meta[meta.uid] = meta
            self._reported_flags[meta.uid] = meta.flags  # the command's own response shows them

    def expunged(self, uids: Iterable[int]) -> bytes:
        """Remove `uids` now and return their `* n EXPUNGE` lines (RFC 3501 §7.4.1); UIDs the
        client was never told about are skipped (their queued arrival is dropped by `updates`)."""
        out = []
        for uid in sorted(uids, reverse=True):
            if uid in self.meta:
                out.append(r.untagged(self.seq_of(uid), "EXPUNGE"))
                self._remove(uid)
        return b"".join(out)

    def _remove(self, uid: int) -> None:
        del self.uids[self.seq_of(uid) - 1]
        del self.meta[uid]
        self._reported_flags.pop(uid, None)
        self._gone.discard(uid)
        self._dirty.discard(uid)
        self.recent.discard(uid)

    # -- pushed changes ---------------------------------------------------------------
    async def updates(self, *, expunges: bool) -> bytes:
        """Apply the queued changes in order; the untagged responses the client must now see."""
        pending, self._pending = self._pending, []
        self.changed.clear()
        doomed = {u for change in pending for u in change.expunged}
        new: list[int] = []
        for change in pending:
            new += self._absorb(change, doomed)
        out = [self.expunged(sorted(self._gone)) if expunges and self._gone else b""]
        if new:
            before = await self._claim(0 if self.readonly else new[-1])
            self.recent.update(u for u in new if u > before and u in self.meta)
            out.append(r.untagged(len(self.uids), "EXISTS"))
            if len(self.recent) != self.recent_told:  # as Dovecot: RECENT with EXISTS when it changed
                self.recent_told = len(self.recent)
                out.append(r.untagged(self.recent_told, "RECENT"))
        out.extend(self._flag_updates())
        return b"".join(out)

    def _absorb(self, change: Change, doomed: set[int]) -> list[int]:
        """One queued change into the view's state; returns the UIDs it added."""
        new = []
        for meta in change.added:
            self.uidnext = max(self.uidnext, meta.uid + 1)
            if meta.uid in doomed or meta.uid in self.meta or (self.uids and meta.uid < self.uids[-1]):
                continue  # never announced: its expunge is dropped too
            self.uids.append(meta.uid)
            self.meta[meta.uid] = meta
            self._reported_flags[meta.uid] = meta.flags
            new.append(meta.uid)
        for meta in change.flags:
            self.highestmodseq = max(self.highestmodseq, meta.modseq)
            if meta.uid in self.meta and meta.modseq >= self.meta[meta.uid].modseq:
                self.meta[meta.uid] = meta
                self._dirty.add(meta.uid)
        self._gone.update(u for u in change.expunged if u in self.meta)
        return new

    def _flag_updates(self) -> list[bytes]:
        out = []
        dirty, self._dirty = self._dirty, set()
        for uid in sorted(dirty):
            meta = self.meta.get(uid)
            if meta is not None and self._reported_flags.get(uid) != meta.flags:
                out.append(self.flag_line(uid, uid_item=False))
        return out


def flag_items(meta: MessageMeta, *, uid: bool, modseq: bool) -> list[tuple[str, bytes]]:
    """`UID n FLAGS (...) MODSEQ (m)` for STORE results and unsolicited flag changes."""
    items = [("FLAGS", r.flag_list(meta.flags))]
    if uid:
        items.insert(0, ("UID", str(meta.uid).encode("ascii")))
    if modseq:
        items.append(("MODSEQ", b"(%d)" % meta.modseq))
    return items
