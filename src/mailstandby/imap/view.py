"""A selected mailbox as one session sees it: its own sequence numbers and pending updates.

RFC 3501 §2.3.1.2 and §7.4.1: a session's message sequence numbers change only
when it is told so. `MailboxView` keeps the UID list the client knows, applies
changes pushed by `MailboxStore.watch` (other sessions, deliveries, our own
commands) and turns them into untagged responses only when asked (`updates`):

- new messages become one `* n EXISTS`;
- flag changes with a newer MODSEQ than we know become `* n FETCH (FLAGS ...)`;
- expunges become `* n EXPUNGE`, each numbered at the moment it is sent, and
  only when the caller says the command in flight allows it (not during FETCH,
  STORE or SEARCH by sequence number); until then the message keeps its number.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable

from mailstandby.imap import responses as r
from mailstandby.imap.syntax import SequenceSet
from mailstandby.store.mailbox import Change, MessageMeta, Snapshot


class MailboxView:
    def __init__(self, name: str, snapshot: Snapshot, *, readonly: bool) -> None:
        self.name = name
        self.readonly = readonly
        self.uidvalidity = snapshot.info.uidvalidity
        self.uids: list[int] = [m.uid for m in snapshot.messages]
        self.meta: dict[int, MessageMeta] = {m.uid: m for m in snapshot.messages}
        self.pending: list[Change] = []
        self.gone: set[int] = set()  # expunged elsewhere, not yet reported
        self.changed = asyncio.Event()
        self.stop: Callable[[], None] = lambda: None
        self.highestmodseq = snapshot.info.highestmodseq
        self.condstore = False  # RFC 7162 §3.2: unsolicited FETCH carries MODSEQ once enabled
        self._dirty: set[int] = set()
        self._reported_flags: dict[int, frozenset[str]] = {m.uid: m.flags for m in snapshot.messages}

    def on_change(self, change: Change) -> None:
        """The store's watch callback: queue, never write (the session writes between commands)."""
        self.pending.append(change)
        self.changed.set()

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

    # -- local changes (our own commands) ------------------------------------------
    def set_meta(self, meta: MessageMeta) -> None:
        self.highestmodseq = max(self.highestmodseq, meta.modseq)
        if meta.uid in self.meta and meta.modseq >= self.meta[meta.uid].modseq:
            self.meta[meta.uid] = meta
            self._reported_flags[meta.uid] = meta.flags

    def expunged(self, uids: list[int]) -> bytes:
        """Remove `uids` now and return their `* n EXPUNGE` lines (RFC 3501 §7.4.1)."""
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
        self.gone.discard(uid)

    # -- pushed changes ---------------------------------------------------------------
    def updates(self, *, expunges: bool) -> bytes:
        """Apply pending changes; the untagged responses the client must now see."""
        pending, self.pending = self.pending, []
        self.changed.clear()
        grew = False
        for change in pending:
            for meta in change.added:
                if meta.uid not in self.meta and (not self.uids or meta.uid > self.uids[-1]):
                    self.uids.append(meta.uid)
                    self.meta[meta.uid] = meta
                    self._reported_flags[meta.uid] = meta.flags
                    grew = True
            for meta in change.flags:
                self.highestmodseq = max(self.highestmodseq, meta.modseq)
                if meta.uid in self.meta and meta.modseq >= self.meta[meta.uid].modseq:
                    self.meta[meta.uid] = meta
                    self._dirty.add(meta.uid)
            self.gone.update(u for u in change.expunged if u in self.meta)
        out = [self.expunged(sorted(self.gone)) if expunges and self.gone else b""]
        if grew:
            out.append(r.untagged(len(self.uids), "EXISTS"))
        out.extend(self._flag_updates())
        return b"".join(out)

    def _flag_updates(self) -> list[bytes]:
        out = []
        dirty, self._dirty = self._dirty, set()
        for uid in sorted(dirty):
            meta = self.meta.get(uid)
            if meta is not None and self._reported_flags.get(uid) != meta.flags:
                self._reported_flags[uid] = meta.flags
                out.append(r.fetch(self.seq_of(uid), flag_items(meta, uid=False, modseq=self.condstore)))
        return out


def flag_items(meta: MessageMeta, *, uid: bool, modseq: bool) -> list[tuple[str, bytes]]:
    """`UID n FLAGS (...) MODSEQ (m)` for STORE results and unsolicited flag changes."""
    items = [("FLAGS", r.flag_list(meta.flags))]
    if uid:
        items.insert(0, ("UID", str(meta.uid).encode("ascii")))
    if modseq:
        items.append(("MODSEQ", b"(%d)" % meta.modseq))
    return items
