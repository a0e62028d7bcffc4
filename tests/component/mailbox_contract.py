"""The MailboxStore contract as a reusable test suite (store/mailbox.py, RFC 3501/9051, RFC 7162).

Every implementation runs the same tests: subclass `MailboxContract` in a test
module that provides a `store` fixture (see test_mailbox_contract.py, where the
factories are listed). The tests use only the Protocol, never an
implementation's internals, and wait for watch callbacks with a deadline
rather than assuming they run before the call returns.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from mailstandby.store.mailbox import (
    Change,
    FlagMode,
    MailboxError,
    MailboxInfo,
    MailboxStore,
    SpecialUse,
)

ALICE = "alice@corp.test"
BOB = "bob@corp.test"
TIMEOUT = 10.0
SEEN = frozenset({"\\Seen"})
DELETED = frozenset({"\\Deleted"})


def msg(n: int = 0) -> bytes:
    return f"From: a@b.test\r\nSubject: m{n}\r\n\r\nbody {n}\r\n".encode()


async def eventually(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.001)


async def reason(awaitable: object) -> str:
    """The MailboxError reason the call raises (the test fails if it does not raise)."""
    with pytest.raises(MailboxError) as e:
        await awaitable  # type: ignore[misc]
    return e.value.reason


async def info(store: MailboxStore, user: str, name: str) -> MailboxInfo:
    return (await store.snapshot(user, name)).info


async def uids(store: MailboxStore, user: str, name: str) -> list[int]:
    return [m.uid for m in (await store.snapshot(user, name)).messages]


class MailboxContract:
    """Tests every MailboxStore must pass; the subclass supplies the `store` fixture."""

    # -- users and default mailboxes ------------------------------------------------
    async def test_ensure_user_creates_the_default_mailboxes(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        boxes = {b.name: b for b in await store.list_mailboxes(ALICE)}
        assert set(boxes) == {"INBOX", "Sent", "Drafts", "Trash"}
        assert boxes["INBOX"].special_use is None
        assert boxes["Sent"].special_use is SpecialUse.SENT
        assert boxes["Drafts"].special_use is SpecialUse.DRAFTS
        assert boxes["Trash"].special_use is SpecialUse.TRASH
        for b in boxes.values():
            assert b.messages == 0 and b.unseen == 0 and b.uidnext == 1
            assert 0 < b.uidvalidity < 2**32  # RFC 3501 nz-number, 32 bits

    async def test_ensure_user_is_idempotent(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        await store.append(ALICE, "INBOX", msg())
        before = await store.list_mailboxes(ALICE)
        await store.ensure_user(ALICE)
        assert await store.list_mailboxes(ALICE) == before

    async def test_ensure_user_recreates_a_missing_default(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        await store.delete_mailbox(ALICE, "Trash")
        await store.ensure_user(ALICE)
        assert "Trash" in {b.name for b in await store.list_mailboxes(ALICE)}

    async def test_a_user_never_set_up_has_nothing(self, store: MailboxStore) -> None:
        assert await store.list_mailboxes("nobody@corp.test") == []
        assert await reason(store.snapshot("nobody@corp.test", "INBOX")) == "nonexistent"
        assert await reason(store.append("nobody@corp.test", "INBOX", msg())) == "nonexistent"

    # -- append, snapshot, read -----------------------------------------------------------
    async def test_append_assigns_ascending_uids_and_keeps_exact_bytes(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        uidvalidity = (await info(store, ALICE, "INBOX")).uidvalidity
        bodies = [msg(i) for i in range(3)] + [b"no final newline", b"bare\nLF\rCR\r\n.\r\n"]
        results = [await store.append(ALICE, "INBOX", b) for b in bodies]
        assert results == [(uidvalidity, i) for i in range(1, 6)]
        snap = await store.snapshot(ALICE, "INBOX")
        assert [m.uid for m in snap.messages] == [1, 2, 3, 4, 5]
        assert [m.size for m in snap.messages] == [len(b) for b in bodies]
        assert [await store.read_message(m.body_id) for m in snap.messages] == bodies
        assert snap.info.messages == 5 and snap.info.uidnext == 6 and snap.info.unseen == 5

    async def test_append_keeps_flags_date_and_journaled(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        _, uid = await store.append(
            ALICE, "Sent", msg(), frozenset({"\\Seen", "$Forwarded"}), 1_700_000_000.5, journaled=True
        )
        (meta,) = (await store.snapshot(ALICE, "Sent")).messages
        assert meta.uid == uid
        assert meta.flags == {"\\Seen", "$Forwarded"}
        assert meta.internal_date == 1_700_000_000.5
        assert meta.journaled is True
        await store.append(ALICE, "Sent", msg())
        meta2 = (await store.snapshot(ALICE, "Sent")).messages[1]
        assert meta2.journaled is False and meta2.flags == frozenset()
        assert meta2.internal_date > 1_700_000_000  # defaults to now
        assert (await info(store, ALICE, "Sent")).unseen == 1

    async def test_append_to_a_missing_mailbox(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        assert await reason(store.append(ALICE, "Nope", msg())) == "nonexistent"
        assert await reason(store.append(ALICE, "a/../b", msg())) == "invalid-name"

    @pytest.mark.parametrize("flag", ["\\Recent", "\\Bogus", "", "two words"])
    async def test_flags_that_cannot_be_stored(self, store: MailboxStore, flag: str) -> None:
        await store.ensure_user(ALICE)
        assert await reason(store.append(ALICE, "INBOX", msg(), frozenset({flag}))) == "cannot"
        await store.append(ALICE, "INBOX", msg())
        assert await reason(store.store_flags(ALICE, "INBOX", [1], frozenset({flag}), FlagMode.ADD)) == "cannot"

    async def test_a_snapshot_does_not_change_afterwards(self, store: MailboxStore) -> None:
        # POP3 relies on this: the maildrop is the INBOX as it was at login (RFC 1939 §8)
        await store.ensure_user(ALICE)
        await store.append(ALICE, "INBOX", msg(1))
        snap = await store.snapshot(ALICE, "INBOX")
        await store.append(ALICE, "INBOX", msg(2))
        await store.store_flags(ALICE, "INBOX", [1], SEEN, FlagMode.ADD)
        assert [m.uid for m in snap.messages] == [1] and snap.messages[0].flags == frozenset()
        assert snap.info.messages == 1 and snap.info.uidnext == 2

    async def test_read_message_of_an_unknown_body(self, store: MailboxStore) -> None:
        assert await reason(store.read_message(987_654_321)) == "nonexistent"

    async def test_concurrent_appends_get_distinct_uids(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        results = await asyncio.gather(*(store.append(ALICE, "INBOX", msg(i)) for i in range(50)))
        assert sorted(uid for _, uid in results) == list(range(1, 51))
        snap = await store.snapshot(ALICE, "INBOX")
        bodies = {m.uid: await store.read_message(m.body_id) for m in snap.messages}
        assert {bodies[uid] for _, uid in results} == {msg(i) for i in range(50)}

    # -- UIDNEXT and MODSEQ -------------------------------------------------------------
    async def test_uidnext_never_goes_back(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        for i in range(3):
            await store.append(ALICE, "INBOX", msg(i))
        await store.store_flags(ALICE, "INBOX", [2, 3], DELETED, FlagMode.ADD)
        assert await store.expunge(ALICE, "INBOX") == [2, 3]
        assert (await info(store, ALICE, "INBOX")).uidnext == 4
        assert (await store.append(ALICE, "INBOX", msg()))[1] == 4  # never reuses 2 or 3

    async def test_every_change_raises_highestmodseq(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        seen = [(await info(store, ALICE, "INBOX")).highestmodseq]
        await store.append(ALICE, "INBOX", msg(1))
        seen.append((await info(store, ALICE, "INBOX")).highestmodseq)
        await store.append(ALICE, "INBOX", msg(2))
        seen.append((await info(store, ALICE, "INBOX")).highestmodseq)
        changed = await store.store_flags(ALICE, "INBOX", [1], DELETED, FlagMode.ADD)
        seen.append((await info(store, ALICE, "INBOX")).highestmodseq)
        assert [m.modseq for m in changed] == [seen[-1]]
        await store.expunge(ALICE, "INBOX")
        seen.append((await info(store, ALICE, "INBOX")).highestmodseq)  # RFC 7162 §3.2.10 (VANISHED)
        assert seen == sorted(set(seen)), seen
        (meta,) = (await store.snapshot(ALICE, "INBOX")).messages
        assert meta.modseq <= seen[-1]

    async def test_a_flag_store_that_changes_nothing_changes_no_modseq(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        await store.append(ALICE, "INBOX", msg(), SEEN)
        before = await info(store, ALICE, "INBOX")
        assert await store.store_flags(ALICE, "INBOX", [1], SEEN, FlagMode.ADD) == []
        assert await store.store_flags(ALICE, "INBOX", [1], DELETED, FlagMode.REMOVE) == []
        assert await store.store_flags(ALICE, "INBOX", [99], SEEN, FlagMode.ADD) == []
        assert await info(store, ALICE, "INBOX") == before

    # -- flags ---------------------------------------------------------------------------
    async def test_store_flags_modes(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        for i in range(3):
            await store.append(ALICE, "INBOX", msg(i), frozenset({"\\Flagged"}))
        changed = await store.store_flags(ALICE, "INBOX", [1, 2, 42], SEEN, FlagMode.ADD)
        assert [(m.uid, m.flags) for m in changed] == [(1, {"\\Flagged", "\\Seen"}), (2, {"\\Flagged", "\\Seen"})]
        changed = await store.store_flags(ALICE, "INBOX", [2, 3], frozenset({"\\Flagged"}), FlagMode.REMOVE)
        assert [(m.uid, m.flags) for m in changed] == [(2, {"\\Seen"}), (3, frozenset())]
        changed = await store.store_flags(ALICE, "INBOX", [1, 3], frozenset({"$Label1"}), FlagMode.SET)
        assert [(m.uid, m.flags) for m in changed] == [(1, {"$Label1"}), (3, {"$Label1"})]
        snap = await store.snapshot(ALICE, "INBOX")
        assert [m.flags for m in snap.messages] == [{"$Label1"}, {"\\Seen"}, {"$Label1"}]
        assert snap.info.unseen == 2

    async def test_unchanged_since_leaves_newer_messages_alone(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        await store.append(ALICE, "INBOX", msg(1))
        await store.append(ALICE, "INBOX", msg(2))
        snap = await store.snapshot(ALICE, "INBOX")
        old = snap.messages[0].modseq
        await store.store_flags(ALICE, "INBOX", [2], frozenset({"$x"}), FlagMode.ADD)  # 2 is now newer
        changed = await store.store_flags(ALICE, "INBOX", [1, 2], SEEN, FlagMode.ADD, unchanged_since=old)
        assert [m.uid for m in changed] == [1]
        flags = {m.uid: m.flags for m in (await store.snapshot(ALICE, "INBOX")).messages}
        assert flags == {1: SEEN, 2: {"$x"}}

    # -- expunge, copy, move -------------------------------------------------------------
    async def test_expunge_removes_only_deleted_messages(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        for i in range(4):
            await store.append(ALICE, "INBOX", msg(i))
        await store.store_flags(ALICE, "INBOX", [1, 2, 4], DELETED, FlagMode.ADD)
        assert await store.expunge(ALICE, "INBOX", [2, 3, 4, 77]) == [2, 4]  # restricted to the given UIDs
        assert await uids(store, ALICE, "INBOX") == [1, 3]
        assert await store.expunge(ALICE, "INBOX") == [1]
        assert await uids(store, ALICE, "INBOX") == [3]
        assert await store.expunge(ALICE, "INBOX") == []

    async def test_expunged_bodies_are_gone(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        await store.append(ALICE, "INBOX", msg(1))
        (meta,) = (await store.snapshot(ALICE, "INBOX")).messages
        await store.store_flags(ALICE, "INBOX", [1], DELETED, FlagMode.ADD)
        await store.expunge(ALICE, "INBOX")
        assert await reason(store.read_message(meta.body_id)) == "nonexistent"

    async def test_copy_keeps_flags_and_date(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        await store.append(ALICE, "Trash", msg(0))  # target UIDs do not follow the source's
        await store.append(ALICE, "INBOX", msg(1), frozenset({"\\Flagged"}), 1_600_000_000.0)
        await store.append(ALICE, "INBOX", msg(2), SEEN, 1_600_000_001.0)
        assert await store.copy(ALICE, "INBOX", [2, 1, 9], "Trash") == [(1, 2), (2, 3)]
        src = (await store.snapshot(ALICE, "INBOX")).messages
        dst = (await store.snapshot(ALICE, "Trash")).messages[1:]
        assert [(m.flags, m.internal_date, m.size) for m in dst] == [(m.flags, m.internal_date, m.size) for m in src]
        assert [await store.read_message(m.body_id) for m in dst] == [msg(1), msg(2)]
        assert await uids(store, ALICE, "INBOX") == [1, 2]

    async def test_a_copy_survives_the_expunge_of_its_original(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        await store.append(ALICE, "INBOX", msg(1), DELETED)
        await store.copy(ALICE, "INBOX", [1], "Trash")
        await store.expunge(ALICE, "INBOX")
        (meta,) = (await store.snapshot(ALICE, "Trash")).messages
        assert await store.read_message(meta.body_id) == msg(1)

    async def test_move(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        for i in range(3):
            await store.append(ALICE, "INBOX", msg(i), SEEN if i == 1 else frozenset())
        assert await store.move(ALICE, "INBOX", [2, 3], "Trash") == [(2, 1), (3, 2)]
        assert await uids(store, ALICE, "INBOX") == [1]
        moved = (await store.snapshot(ALICE, "Trash")).messages
        assert [m.flags for m in moved] == [SEEN, frozenset()]
        assert [await store.read_message(m.body_id) for m in moved] == [msg(1), msg(2)]
        assert (await info(store, ALICE, "INBOX")).uidnext == 4

    async def test_copy_and_move_need_both_mailboxes(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        await store.append(ALICE, "INBOX", msg())
        assert await reason(store.copy(ALICE, "INBOX", [1], "Nope")) == "nonexistent"
        assert await reason(store.move(ALICE, "Nope", [1], "Trash")) == "nonexistent"
        assert await uids(store, ALICE, "INBOX") == [1]

    # -- create, delete, rename, subscribe ---------------------------------------------
    async def test_create_mailbox(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        created = await store.create_mailbox(ALICE, "Archive", SpecialUse.ARCHIVE)
        assert created.name == "Archive" and created.special_use is SpecialUse.ARCHIVE
        assert created.messages == 0 and created.uidnext == 1
        assert await reason(store.create_mailbox(ALICE, "Archive")) == "exists"
        assert await reason(store.create_mailbox(ALICE, "inbox")) == "exists"  # INBOX is case-insensitive
        assert await reason(store.create_mailbox(ALICE, "a//b")) == "invalid-name"
        assert await reason(store.create_mailbox(ALICE, "../bob")) == "invalid-name"
        await store.create_mailbox(ALICE, "archive")  # other names are case-sensitive
        assert {"Archive", "archive"} <= {b.name for b in await store.list_mailboxes(ALICE)}

    async def test_create_makes_the_superior_names(self, store: MailboxStore) -> None:
        # RFC 3501 §6.3.3: "SHOULD create any superior hierarchical names"
        await store.ensure_user(ALICE)
        await store.create_mailbox(ALICE, "a/b/c")
        names = {b.name for b in await store.list_mailboxes(ALICE)}
        assert {"a", "a/b", "a/b/c"} <= names
        await store.append(ALICE, "a/b", msg())

    async def test_list_starts_with_inbox(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        await store.create_mailbox(ALICE, "AAA")
        assert (await store.list_mailboxes(ALICE))[0].name == "INBOX"

    async def test_delete_mailbox(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        await store.create_mailbox(ALICE, "Old/child")
        await store.append(ALICE, "Old", msg())
        first = (await info(store, ALICE, "Old")).uidvalidity
        await store.delete_mailbox(ALICE, "Old")
        names = {b.name for b in await store.list_mailboxes(ALICE)}
        assert "Old" not in names and "Old/child" in names  # the children stay (RFC 9051 §6.3.4)
        assert await reason(store.snapshot(ALICE, "Old")) == "nonexistent"
        assert await reason(store.delete_mailbox(ALICE, "Old")) == "nonexistent"
        assert await reason(store.delete_mailbox(ALICE, "INBOX")) == "cannot"
        assert await reason(store.delete_mailbox(ALICE, "inbox")) == "cannot"
        again = await store.create_mailbox(ALICE, "Old")
        # RFC 3501 §2.3.1.1: a new mailbox under an old name gets a new UIDVALIDITY
        assert again.uidvalidity != first and again.messages == 0

    async def test_rename_mailbox_with_children(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        await store.create_mailbox(ALICE, "Work/2024")
        await store.append(ALICE, "Work/2024", msg(1), SEEN)
        before = await info(store, ALICE, "Work/2024")
        await store.rename_mailbox(ALICE, "Work", "Jobs/Old")
        names = {b.name for b in await store.list_mailboxes(ALICE)}
        assert {"Jobs", "Jobs/Old", "Jobs/Old/2024"} <= names
        assert not {"Work", "Work/2024"} & names
        after = await store.snapshot(ALICE, "Jobs/Old/2024")
        assert after.info.uidvalidity == before.uidvalidity and after.info.uidnext == before.uidnext
        assert [(m.uid, m.flags) for m in after.messages] == [(1, SEEN)]
        assert await store.read_message(after.messages[0].body_id) == msg(1)

    async def test_rename_errors(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        await store.create_mailbox(ALICE, "A")
        await store.create_mailbox(ALICE, "B")
        assert await reason(store.rename_mailbox(ALICE, "Nope", "C")) == "nonexistent"
        assert await reason(store.rename_mailbox(ALICE, "A", "B")) == "exists"
        assert await reason(store.rename_mailbox(ALICE, "A", "inbox")) == "exists"
        assert await reason(store.rename_mailbox(ALICE, "A", "A/inner")) == "cannot"
        assert await reason(store.rename_mailbox(ALICE, "A", "x/../y")) == "invalid-name"
        assert {"A", "B"} <= {b.name for b in await store.list_mailboxes(ALICE)}

    async def test_rename_inbox_moves_its_messages(self, store: MailboxStore) -> None:
        # RFC 3501 §6.3.5: INBOX stays, empty; its children are not affected
        await store.ensure_user(ALICE)
        await store.create_mailbox(ALICE, "INBOX/kept")
        for i in range(3):
            await store.append(ALICE, "INBOX", msg(i), SEEN if i == 0 else frozenset(), 1_600_000_000.0 + i)
        await store.store_flags(ALICE, "INBOX", [2], DELETED, FlagMode.ADD)
        await store.expunge(ALICE, "INBOX")
        before = await info(store, ALICE, "INBOX")
        await store.rename_mailbox(ALICE, "inbox", "Old Inbox")
        inbox = await info(store, ALICE, "INBOX")
        assert inbox.messages == 0
        assert inbox.uidvalidity == before.uidvalidity and inbox.uidnext == before.uidnext
        moved = await store.snapshot(ALICE, "Old Inbox")
        assert [(m.flags, m.internal_date) for m in moved.messages] == [
            (SEEN, 1_600_000_000.0),
            (frozenset(), 1_600_000_002.0),
        ]
        assert [await store.read_message(m.body_id) for m in moved.messages] == [msg(0), msg(2)]
        assert "INBOX/kept" in {b.name for b in await store.list_mailboxes(ALICE)}
        assert (await store.append(ALICE, "INBOX", msg()))[1] == before.uidnext  # UIDs still not reused

    async def test_subscriptions(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        await store.create_mailbox(ALICE, "News")
        assert not (await info(store, ALICE, "News")).subscribed
        await store.set_subscribed(ALICE, "News", True)
        assert {b.name: b.subscribed for b in await store.list_mailboxes(ALICE)}["News"] is True
        await store.set_subscribed(ALICE, "News", False)
        assert not (await info(store, ALICE, "News")).subscribed
        assert await reason(store.set_subscribed(ALICE, "Nope", True)) == "nonexistent"

    # -- watching ------------------------------------------------------------------------
    async def test_watch_reports_appends_flags_and_expunges(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        changes: list[Change] = []
        stop = store.watch(ALICE, "INBOX", changes.append)
        _, uid = await store.append(ALICE, "INBOX", msg())
        await eventually(lambda: len(changes) == 1)
        assert changes[0].user == ALICE and changes[0].mailbox == "INBOX"
        assert [m.uid for m in changes[0].added] == [uid] and not changes[0].flags and not changes[0].expunged
        await store.store_flags(ALICE, "INBOX", [uid], DELETED, FlagMode.ADD)
        await eventually(lambda: len(changes) == 2)
        assert [(m.uid, m.flags) for m in changes[1].flags] == [(uid, DELETED)]
        await store.expunge(ALICE, "INBOX")
        await eventually(lambda: len(changes) == 3)
        assert changes[2].expunged == (uid,)
        stop()
        stop()  # stopping twice is harmless
        await store.append(ALICE, "INBOX", msg())
        await asyncio.sleep(0.01)
        assert len(changes) == 3

    async def test_watch_sees_copies_and_moves_into_the_mailbox(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        await store.append(ALICE, "INBOX", msg(1))
        await store.append(ALICE, "INBOX", msg(2))
        inbox: list[Change] = []
        trash: list[Change] = []
        store.watch(ALICE, "INBOX", inbox.append)
        store.watch(ALICE, "Trash", trash.append)
        await store.copy(ALICE, "INBOX", [1], "Trash")
        await store.move(ALICE, "INBOX", [2], "Trash")
        await eventually(lambda: sum(len(c.added) for c in trash) == 2 and any(c.expunged for c in inbox))
        assert [c.expunged for c in inbox if c.expunged] == [(2,)]
        assert not any(c.added for c in inbox)

    async def test_watch_is_per_mailbox_and_per_user(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        await store.ensure_user(BOB)
        seen: list[Change] = []
        store.watch(ALICE, "INBOX", seen.append)
        await store.append(ALICE, "Sent", msg())
        await store.append(BOB, "INBOX", msg())
        await store.append(ALICE, "INBOX", msg())
        await eventually(lambda: len(seen) >= 1)
        await asyncio.sleep(0.01)
        assert [(c.user, c.mailbox) for c in seen] == [(ALICE, "INBOX")]

    async def test_a_failing_watcher_does_not_break_the_store(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        good: list[Change] = []

        def bad(change: Change) -> None:
            raise RuntimeError("watcher bug")

        store.watch(ALICE, "INBOX", bad)
        store.watch(ALICE, "INBOX", good.append)
        await store.append(ALICE, "INBOX", msg())
        await eventually(lambda: len(good) == 1)
        assert await uids(store, ALICE, "INBOX") == [1]

    async def test_watch_needs_an_existing_mailbox(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        with pytest.raises(MailboxError) as e:
            store.watch(ALICE, "Nope", lambda c: None)
        assert e.value.reason == "nonexistent"

    # -- isolation (RELIABILITY A7) ------------------------------------------------------
    @pytest.mark.parametrize("other", ["bob@corp.test", "Alice@corp.test", "alice@corp.tes", "alice@corp.test.evil"])
    async def test_one_user_never_reaches_another_users_mail(self, store: MailboxStore, other: str) -> None:
        await store.ensure_user(ALICE)
        await store.ensure_user(other)
        await store.create_mailbox(ALICE, "Secret")
        await store.append(ALICE, "INBOX", msg(1))
        await store.append(ALICE, "Secret", msg(2))
        assert {b.name for b in await store.list_mailboxes(other)} == {"INBOX", "Sent", "Drafts", "Trash"}
        assert (await info(store, other, "INBOX")).messages == 0
        assert await reason(store.snapshot(other, "Secret")) == "nonexistent"
        assert await reason(store.append(other, "Secret", msg())) == "nonexistent"
        assert await store.copy(other, "INBOX", [1], "Trash") == []
        await store.store_flags(other, "INBOX", [1], DELETED, FlagMode.ADD)
        assert await store.expunge(other, "INBOX") == []
        assert await reason(store.rename_mailbox(other, "Secret", "Mine")) == "nonexistent"
        assert await reason(store.delete_mailbox(other, "Secret")) == "nonexistent"
        await store.rename_mailbox(other, "INBOX", "Taken")
        assert (await info(store, other, "Taken")).messages == 0
        alice = await store.snapshot(ALICE, "INBOX")
        assert [(m.uid, m.flags) for m in alice.messages] == [(1, frozenset())]
        assert (await info(store, ALICE, "Secret")).messages == 1

    @pytest.mark.parametrize("name", ["../bob@corp.test/INBOX", "~bob/INBOX", "/INBOX", "INBOX/../../x"])
    async def test_path_tricks_are_invalid_names(self, store: MailboxStore, name: str) -> None:
        await store.ensure_user(ALICE)
        assert await reason(store.snapshot(ALICE, name)) in {"invalid-name", "nonexistent"}
        assert await reason(store.create_mailbox(ALICE, name)) == "invalid-name"

    # -- invariants under a random workload (RELIABILITY I4) -----------------------------
    @pytest.mark.parametrize("seed", range(3))
    async def test_uids_are_never_reused_under_one_uidvalidity(self, store: MailboxStore, seed: int) -> None:
        rng = random.Random(seed)
        await store.ensure_user(ALICE)
        given: dict[tuple[str, int], set[int]] = {}
        last: dict[str, tuple[int, int, int]] = {}  # name -> (uidvalidity, uidnext, highestmodseq)
        for step in range(200):
            name = rng.choice(["INBOX", "Trash"])
            live = await uids(store, ALICE, name)
            op = rng.random()
            if op < 0.4 or not live:
                uidvalidity, uid = await store.append(ALICE, name, msg(step))
                assert uid not in given.setdefault((name, uidvalidity), set())
                given[(name, uidvalidity)].add(uid)
            elif op < 0.7:
                await store.store_flags(ALICE, name, rng.sample(live, 1), DELETED, FlagMode.ADD)
            elif op < 0.85:
                await store.expunge(ALICE, name)
            else:
                other = "Trash" if name == "INBOX" else "INBOX"
                for _, new in await store.move(ALICE, name, rng.sample(live, 1), other):
                    uidvalidity = (await info(store, ALICE, other)).uidvalidity
                    assert new not in given.setdefault((other, uidvalidity), set())
                    given[(other, uidvalidity)].add(new)
            for box in await store.list_mailboxes(ALICE):
                now = (box.uidvalidity, box.uidnext, box.highestmodseq)
                prev = last.get(box.name, now)
                assert now[0] == prev[0] and now[1] >= prev[1] and now[2] >= prev[2], (box.name, prev, now)
                last[box.name] = now

    # -- \Recent: one claim per message (RFC 3501 §2.3.2) --------------------------------------------
    async def test_claim_recent_hands_each_message_to_one_caller(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        for n in range(3):
            await store.append(ALICE, "INBOX", msg(n))
        assert (await info(store, ALICE, "INBOX")).recent == 3
        assert await store.claim_recent(ALICE, "INBOX", 0) == 0  # 0 only reads (EXAMINE)
        results = await asyncio.gather(*(store.claim_recent(ALICE, "INBOX", 3) for _ in range(4)))
        assert sorted(results) == [0, 3, 3, 3]  # one caller got UIDs 1-3, the others nothing
        assert (await info(store, ALICE, "INBOX")).recent == 0
        await store.append(ALICE, "INBOX", msg(4))
        assert [i.recent for i in await store.list_mailboxes(ALICE) if i.name == "INBOX"] == [1]
        assert await store.claim_recent(ALICE, "INBOX", 99) == 3  # never past what exists
        assert await store.claim_recent(ALICE, "INBOX", 99) == 4
        assert await store.claim_recent(ALICE, "INBOX", 2) == 4  # never goes back

    async def test_copied_messages_are_unclaimed_and_claims_follow_a_rename(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        await store.append(ALICE, "INBOX", msg(1))
        await store.claim_recent(ALICE, "INBOX", 1)
        await store.copy(ALICE, "INBOX", [1], "Trash")
        assert (await info(store, ALICE, "Trash")).recent == 1
        await store.create_mailbox(ALICE, "Box")
        await store.copy(ALICE, "INBOX", [1], "Box")
        await store.claim_recent(ALICE, "Box", 1)
        await store.rename_mailbox(ALICE, "Box", "Renamed")
        assert (await info(store, ALICE, "Renamed")).recent == 0
        assert await reason(store.claim_recent(ALICE, "Nope", 1)) == "nonexistent"

    async def test_nil_is_not_a_keyword(self, store: MailboxStore) -> None:
        await store.ensure_user(ALICE)
        assert await reason(store.append(ALICE, "INBOX", msg(1), frozenset({"NIL"}))) == "cannot"
        await store.append(ALICE, "INBOX", msg(1))
        assert await reason(store.store_flags(ALICE, "INBOX", [1], frozenset({"nil"}), FlagMode.ADD)) == "cannot"
