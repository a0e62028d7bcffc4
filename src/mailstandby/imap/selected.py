"""IMAP commands of the selected state (RFC 3501 §6.3.1-2, §6.4), and IDLE (RFC 2177).

SELECT/EXAMINE open a `MailboxView` (imap/view.py: the session's sequence
numbers, queued updates, announced keywords and \\Recent) and watch the
mailbox; FETCH, STORE, SEARCH, COPY, MOVE (RFC 6851), EXPUNGE, UID EXPUNGE
(RFC 4315), CLOSE and UNSELECT (RFC 3691) work through it, and every FETCH
response showing FLAGS goes through the view so its keywords are announced
first. A read-only (EXAMINE) view never changes
the mailbox: no \\Seen from FETCH, STORE and EXPUNGE refused.

Sequence sets: a number past the last message is BAD; an empty mailbox or a
UID set naming nothing is an empty, successful result (RFC 3501 §6.4.8).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from mailstandby.imap import responses as r
from mailstandby.imap.fetch import FetchItem
from mailstandby.imap.fetching import fetch_items, needs_body
from mailstandby.imap.io import SessionIO
from mailstandby.imap.mailboxes import Done, Reply, mailbox_error, valid_name
from mailstandby.imap.mime import Message
from mailstandby.imap.parser import Command, Copy, Expunge, Fetch, Search, Select, Store, is_done
from mailstandby.imap.search import And, ModSeq, Not, Or, SearchKey, Seq
from mailstandby.imap.searching import Candidate, Matcher, needs_message
from mailstandby.imap.syntax import SequenceSet
from mailstandby.imap.view import MailboxView, keywords
from mailstandby.store.mailbox import SYSTEM_FLAGS, Change, FlagMode, MailboxError
from mailstandby.transport import LineTooLong

if TYPE_CHECKING:
    from mailstandby.config import IMAPSettings
    from mailstandby.imap.fetching import StructureCache
    from mailstandby.store.mailbox import MailboxStore

log = logging.getLogger(__name__)
SEEN = "\\Seen"
DONE_LINE = 1024
SEARCH_ON_LOOP_SIZE = 256 * 1024  # larger messages are parsed for SEARCH in a worker thread (~1 s per 27 MiB)


class SelectedCommands:
    """Mixed into `Session`: the selected state's handlers."""

    store: MailboxStore
    user: str
    settings: IMAPSettings
    io: SessionIO
    log: logging.LoggerAdapter[logging.Logger]
    structures: StructureCache

    def __init__(self) -> None:
        self.selected: MailboxView | None = None
        self.condstore = False

    def enable_condstore(self) -> None:
        """RFC 7162 §3.1: from now on FETCH responses about flags carry MODSEQ."""
        self.condstore = True
        if self.selected is not None:
            self.selected.condstore = True

    def send(self, data: bytes) -> None:  # pragma: no cover - provided by Session
        raise NotImplementedError

    def _set_selected(self, selected: bool) -> None:  # pragma: no cover - provided by Session
        raise NotImplementedError

    async def pace(self) -> None:  # pragma: no cover - provided by Session
        raise NotImplementedError

    # -- SELECT / EXAMINE, CLOSE, UNSELECT ------------------------------------------------
    def deselect(self) -> None:
        if self.selected is not None:
            self.selected.stop()
            self.selected = None
        self._set_selected(False)

    async def select(self, cmd: Command) -> Done | None:
        """RFC 3501 §6.3.1: FLAGS, EXISTS, RECENT, UNSEEN, PERMANENTFLAGS, UIDVALIDITY, UIDNEXT."""
        args = cmd.args
        assert isinstance(args, Select)
        if self.selected is not None:
            self.deselect()
            self.send(r.status_line("OK", "Previous mailbox closed.", r.CLOSED))
        name = valid_name(args.mailbox)
        view = await self._open(name, readonly=cmd.name == "EXAMINE")
        if args.condstore:
            self.condstore = True
        view.condstore = self.condstore
        view.announced = {k for m in view.meta.values() for k in keywords(m.flags)}
        self.send(view.flags_response())
        self.send(r.untagged(view.exists, "EXISTS"))
        self.send(r.untagged(len(view.recent), "RECENT"))
        unseen = view.first_unseen()
        if unseen is not None:
            self.send(r.status_line("OK", "First unseen.", r.unseen(unseen)))
        self.send(r.status_line("OK", "UIDs valid", r.uidvalidity(view.uidvalidity)))
        self.send(r.status_line("OK", "Predicted next UID", r.uidnext(view.uidnext)))
        self.send(r.status_line("OK", "Highest", r.highestmodseq(view.highestmodseq)))  # RFC 7162 §3.1.2.1
        self.selected = view
        self._set_selected(True)
        return Done("Select completed.", r.READ_ONLY if view.readonly else r.READ_WRITE)

    async def _open(self, name: str, *, readonly: bool) -> MailboxView:
        early: list[Change] = []  # changes that arrive while the snapshot is being taken
        target: list[Callable[[Change], None]] = [early.append]
        try:
            stop = self.store.watch(self.user, name, lambda change: target[0](change))
        except MailboxError as e:
            raise mailbox_error(e) from None
        try:
            snapshot = await self.store.snapshot(self.user, name)
        except BaseException as e:
            stop()
            if isinstance(e, MailboxError):
                raise mailbox_error(e) from None
            raise
        view = MailboxView(name, snapshot, readonly=readonly, claim=self._recent_claimer(name))
        view.stop = stop
        view.queue(early)  # the view skips what the snapshot already holds
        target[0] = view.on_change
        try:
            await view.open()
        except BaseException as e:
            stop()
            if isinstance(e, MailboxError):
                raise mailbox_error(e) from None
            raise
        return view

    def _recent_claimer(self, name: str) -> Callable[[int], Awaitable[int]]:
        """RFC 3501 §2.3.2: the store hands each message's \\Recent to exactly one session."""

        async def claim(up_to: int) -> int:
            return await self.store.claim_recent(self.user, name, up_to)

        return claim

    async def sync_after(self, cmd: Command) -> None:
        """The updates owed after a command; RFC 3501 §7.4.1: no EXPUNGE during FETCH, STORE or
        SEARCH by sequence number."""
        if self.selected is not None:
            self.send(await self.selected.updates(expunges=cmd.uid or cmd.name not in ("FETCH", "STORE", "SEARCH")))

    def view(self) -> MailboxView:
        assert self.selected is not None
        return self.selected

    async def check(self, cmd: Command) -> Done | None:
        return None

    async def close(self, cmd: Command) -> Done | None:
        """RFC 3501 §6.4.2: expunge silently when read-write, then back to authenticated."""
        view = self.view()
        if not view.readonly:
            with contextlib.suppress(MailboxError):
                await self.store.expunge(self.user, view.name)
        self.deselect()
        return None

    async def unselect(self, cmd: Command) -> Done | None:
        self.deselect()
        return None

    # -- EXPUNGE ---------------------------------------------------------------------------
    def _writable(self) -> MailboxView:
        view = self.view()
        if view.readonly:
            raise Reply("NO", "Mailbox is read-only.", r.READ_ONLY)
        return view

    def _resolve(self, seqset: SequenceSet, *, uid: bool) -> list[int]:
        try:
            return self.view().resolve(seqset, uid=uid)
        except ValueError:
            raise Reply("BAD", "Error in IMAP command: Invalid messageset") from None

    async def expunge(self, cmd: Command) -> Done | None:
        view = self._writable()
        uids = None
        if cmd.uid:
            assert isinstance(cmd.args, Expunge)
            uids = self._resolve(cmd.args.sequence, uid=True)
            if not uids:
                return None
        try:
            removed = await self.store.expunge(self.user, view.name, uids)
        except MailboxError as e:
            raise mailbox_error(e) from None
        self.send(view.expunged(removed))
        return None

    # -- FETCH -----------------------------------------------------------------------------
    async def fetch(self, cmd: Command) -> Done | None:
        """RFC 3501 §6.4.5: non-peek body items set \\Seen on a read-write mailbox, and say so."""
        args = cmd.args
        assert isinstance(args, Fetch)
        view = self.view()
        uids = self._resolve(args.sequence, uid=cmd.uid)
        items = args.items
        if args.changed_since is not None or any(i.name == "MODSEQ" for i in items):
            self.enable_condstore()  # RFC 7162 §3.1
        if args.changed_since is not None:  # RFC 7162 §3.1.4.1: implies MODSEQ
            uids = [u for u in uids if u in view.meta and view.meta[u].modseq > args.changed_since]
            items = items if any(i.name == "MODSEQ" for i in items) else (*items, FetchItem("MODSEQ"))
        seen_now = await self._mark_seen(view, uids, args)
        body = needs_body(items)
        missing = False
        shows_flags = uids and (bool(seen_now) or any(i.name == "FLAGS" for i in items))
        for uid in uids:
            if uid not in view.meta:
                continue
            meta = view.shown(uid)
            msg = None
            if body and not self.structures.covers(meta.body_id, items):
                try:
                    msg = Message(await self.store.read_message(meta.body_id))
                except MailboxError:
                    missing = True  # expunged by another session meanwhile
                    continue
            data = fetch_items(items, meta, msg, uid=cmd.uid, flags_changed=uid in seen_now, structures=self.structures)
            if shows_flags:
                self.send(view.announce(meta.flags))  # RFC 3501 §7.2.6
            self.send(r.fetch(view.seq_of(uid), data))
            await self.pace()
        if missing:
            return Done("Some messages were expunged.", r.EXPUNGEISSUED)
        return None

    async def _mark_seen(self, view: MailboxView, uids: list[int], args: Fetch) -> set[int]:
        if view.readonly or not any(i.sets_seen for i in args.items):
            return set()
        unseen = [u for u in uids if u in view.meta and SEEN not in view.meta[u].flags]
        if not unseen:
            return set()
        changed = await self.store.store_flags(self.user, view.name, unseen, frozenset({SEEN}), FlagMode.ADD)
        for meta in changed:
            view.set_meta(meta)
        return {m.uid for m in changed}

    # -- STORE -----------------------------------------------------------------------------
    async def store_(self, cmd: Command) -> Done | None:
        """RFC 3501 §6.4.6: the new FLAGS of each message, unless .SILENT; RFC 7162 §3.1.3 UNCHANGEDSINCE."""
        args = cmd.args
        assert isinstance(args, Store)
        view = self._writable()
        uids = self._resolve(args.sequence, uid=cmd.uid)
        modified: list[int] = []
        if args.unchanged_since is not None:
            self.enable_condstore()
            self.send(await view.updates(expunges=False))  # know the latest MODSEQs before comparing
            modified = [u for u in uids if view.meta[u].modseq > args.unchanged_since]
            uids = [u for u in uids if u not in modified]
        if uids:
            try:
                changed = await self.store.store_flags(
                    self.user,
                    view.name,
                    uids,
                    view.spelled(args.flags),
                    args.mode,
                    unchanged_since=args.unchanged_since,
                )
            except MailboxError as e:
                raise mailbox_error(e) from None
            for meta in changed:
                view.set_meta(meta)
            self._store_responses(view, uids, {m.uid for m in changed}, cmd.uid, silent=args.silent)
        if modified:
            numbers = modified if cmd.uid else [view.seq_of(u) for u in modified]
            return Done("Conditional STORE failed.", r.modified(numbers))
        return None

    def _store_responses(
        self, view: MailboxView, uids: list[int], changed: set[int], uid: bool, *, silent: bool
    ) -> None:
        for u in uids:
            meta = view.meta.get(u)
            if meta is None:
                continue
            if not silent:
                self.send(view.flag_line(u, uid_item=uid))
            elif self.condstore and u in changed:  # RFC 7162 §3.1.3: MODSEQ even when silent
                items = [("MODSEQ", b"(%d)" % meta.modseq)]
                if uid:
                    items.insert(0, ("UID", str(u).encode("ascii")))
                self.send(r.fetch(view.seq_of(u), items))

    # -- SEARCH ----------------------------------------------------------------------------
    async def search(self, cmd: Command) -> Done | None:
        args = cmd.args
        assert isinstance(args, Search)
        view = self.view()
        sets: dict[int, frozenset[int]] = {}  # id(Seq key) -> the numbers it names, resolved once
        matcher = Matcher(lambda key, c: self._in_set(view, key, c, sets))
        read = needs_message(args.key)
        found = []
        for seq, uid in enumerate(list(view.uids), 1):
            candidate = Candidate(view.shown(uid), seq)
            if read:
                try:
                    candidate.raw = await self.store.read_message(candidate.meta.body_id)
                except MailboxError:
                    continue
            if len(candidate.raw or b"") > SEARCH_ON_LOOP_SIZE:  # MIME parsing of a big message: off the loop
                hit = await asyncio.to_thread(matcher.matches, args.key, candidate)
            else:
                hit = matcher.matches(args.key, candidate)
            if hit:
                found.append(uid if cmd.uid else seq)
        modseq = None
        if _uses_modseq(args.key):  # RFC 7162 §3.1.5: the highest MODSEQ of what matched
            self.enable_condstore()
            if found:
                modseq = max(view.meta[u if cmd.uid else view.uids[u - 1]].modseq for u in found)
        self.send(r.search(found, modseq=modseq))
        return None

    def _in_set(self, view: MailboxView, key: Seq, c: Candidate, sets: dict[int, frozenset[int]]) -> bool:
        members = sets.get(id(key))
        if members is None:
            values = view.uids if key.uid else range(1, view.exists + 1)
            members = sets[id(key)] = frozenset(key.set.members(values))
        return (c.meta.uid if key.uid else c.seq) in members

    # -- COPY / MOVE -----------------------------------------------------------------------
    async def copy(self, cmd: Command) -> Done | None:
        """RFC 3501 §6.4.7 with RFC 4315 COPYUID; MOVE (RFC 6851) adds the EXPUNGEs."""
        args = cmd.args
        assert isinstance(args, Copy)
        move = cmd.name == "MOVE"
        view = self._writable() if move else self.view()
        uids = self._resolve(args.sequence, uid=cmd.uid)
        target = valid_name(args.mailbox)
        if not uids:
            return Done("No messages found.")
        try:
            op = self.store.move if move else self.store.copy
            pairs = await op(self.user, view.name, uids, target)
            infos = await self.store.list_mailboxes(self.user) if pairs else []
        except MailboxError as e:
            raise mailbox_error(e, trycreate=True) from None
        uidvalidity = next((i.uidvalidity for i in infos if i.name == target), 0)
        code = r.copyuid(uidvalidity, pairs) if pairs else None
        if not move:
            return Done("Copy completed.", code)
        if code:
            self.send(r.status_line("OK", "Moved UIDs.", code))
        self.send(view.expunged([s for s, _ in pairs]))
        return Done("Move completed.")

    # -- IDLE ------------------------------------------------------------------------------
    async def idle(self, cmd: Command) -> Done | None:
        """RFC 2177: `+ idling`, push updates as they come, end on DONE."""
        self.send(r.continuation("idling"))
        io = self.io
        read = asyncio.ensure_future(io.read_line(DONE_LINE, self.settings.idle_timeout))
        try:
            await self._idle_until(read)
        finally:
            if not read.done():
                read.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await read
        try:
            line = read.result()
        except LineTooLong:
            raise Reply("BAD", "Expected DONE.") from None
        if not is_done(line):
            raise Reply("BAD", "Expected DONE.")
        return Done("Idle completed.")

    async def _idle_until(self, read: asyncio.Future[bytes]) -> None:
        """Write updates as they arrive until the client sends a line."""
        while not read.done():
            if self.selected is not None:
                self.send(await self.selected.updates(expunges=True))
            await self.io.flush()
            changed: asyncio.Future[object] = asyncio.ensure_future(
                self.selected.changed.wait() if self.selected is not None else asyncio.Event().wait()
            )
            try:
                await asyncio.wait({read, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()


def _uses_modseq(key: SearchKey) -> bool:
    if isinstance(key, ModSeq):
        return True
    if isinstance(key, Not):
        return _uses_modseq(key.key)
    if isinstance(key, Or):
        return _uses_modseq(key.left) or _uses_modseq(key.right)
    if isinstance(key, And):
        return any(_uses_modseq(k) for k in key.keys)
    return False


__all__ = ["SYSTEM_FLAGS", "SelectedCommands"]
