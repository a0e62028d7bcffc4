"""What MemoryMailboxStore adds to the shared contract (which runs in tests/component/test_mailbox_contract.py).

Limits for tests of TOOBIG/OVERQUOTA replies, UIDVALIDITY from the clock, and
watches that follow their mailbox.
"""

from __future__ import annotations

import time

import pytest

from mailstandby.store.mailbox import Change, FlagMode, MailboxError
from mailstandby.store.memory import MemoryMailboxStore

U = "alice@corp.test"


async def test_uidvalidity_is_seeded_by_the_clock_and_fits_32_bits() -> None:
    before = int(time.time())
    store = MemoryMailboxStore()
    await store.ensure_user(U)
    values = [b.uidvalidity for b in await store.list_mailboxes(U)]
    assert all(before <= v < 2**32 for v in values)
    assert len(set(values)) == len(values)  # one counter: never the same value twice


async def test_max_message_size() -> None:
    store = MemoryMailboxStore(max_message_size=10)
    await store.ensure_user(U)
    await store.append(U, "INBOX", b"x" * 10)
    with pytest.raises(MailboxError) as e:
        await store.append(U, "INBOX", b"x" * 11)
    assert e.value.reason == "too-big"


async def test_quota_counts_appends_and_copies_but_not_moves() -> None:
    store = MemoryMailboxStore(quota=25)
    await store.ensure_user(U)
    await store.append(U, "INBOX", b"x" * 10)
    await store.append(U, "INBOX", b"y" * 10)
    with pytest.raises(MailboxError) as e:
        await store.copy(U, "INBOX", [1], "Trash")
    assert e.value.reason == "over-quota"
    assert await store.move(U, "INBOX", [1], "Trash") == [(1, 1)]
    with pytest.raises(MailboxError) as e:
        await store.append(U, "INBOX", b"z" * 6)
    assert e.value.reason == "over-quota"
    await store.append(U, "INBOX", b"z" * 5)


async def test_a_watch_follows_a_rename_and_ends_with_a_delete() -> None:
    store = MemoryMailboxStore()
    await store.ensure_user(U)
    await store.create_mailbox(U, "Box")
    seen: list[Change] = []
    store.watch(U, "Box", seen.append)
    await store.rename_mailbox(U, "Box", "Renamed")
    await store.append(U, "Renamed", b"m1")
    assert [(c.mailbox, len(c.added)) for c in seen] == [("Renamed", 1)]
    await store.delete_mailbox(U, "Renamed")
    assert seen[-1].expunged == (1,)
    await store.create_mailbox(U, "Renamed")
    await store.append(U, "Renamed", b"m2")
    assert len(seen) == 2  # the new mailbox of that name is another mailbox


async def test_bodies_are_freed_with_their_last_reference() -> None:
    store = MemoryMailboxStore()
    await store.ensure_user(U)
    await store.append(U, "INBOX", b"m", frozenset({"\\Deleted"}))
    await store.copy(U, "INBOX", [1], "Trash")
    await store.expunge(U, "INBOX")
    assert len(store._bodies) == 1
    await store.store_flags(U, "Trash", [1], frozenset({"\\Deleted"}), FlagMode.ADD)
    await store.expunge(U, "Trash")
    assert store._bodies == {} and store._refs == {}
