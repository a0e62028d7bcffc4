"""Mailbox changes across two nodes on one PostgreSQL store (store/changefeed.py).

Node A and node B are two PostgresStores (own node ids) with a SQLiteMailboxStore each, as two
mailstandby processes have; B listens. What A commits reaches B's watchers as the same Change
objects B's own IMAP sessions consume (IDLE, NOOP), and a notice lost while B's listening
connection was down is made good by the resync on reconnect.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psycopg
import pytest
from smtp_harness import TIMEOUT
from tests.support.postgres import PostgresCluster

from mailstandby.config import StoreSettings
from mailstandby.store.changefeed import ChangeListener
from mailstandby.store.mailbox import Change, FlagMode
from mailstandby.store.postgres import PostgresStore
from mailstandby.store.sqlite_mailbox import SQLiteMailboxStore

USER = "alice@corp.test"


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.01)


class Nodes:
    def __init__(self, url: str, base: Path) -> None:
        self.url = url
        self.stores = [PostgresStore(base / n, StoreSettings(url=url), node_id=n) for n in ("node-a", "node-b")]
        self.a, self.b = (SQLiteMailboxStore(s) for s in self.stores)
        self.listener = ChangeListener(url, "node-b", self.b.remote_change, self.b.resync)
        self.task: asyncio.Task[None] | None = None

    async def listen(self) -> None:
        """B starts listening (in the test's own event loop)."""
        self.task = asyncio.create_task(self.listener.run())
        async with asyncio.timeout(TIMEOUT):
            await self.listener.listening.wait()


@pytest.fixture
async def nodes(tmp_path: Path, postgres_cluster: PostgresCluster) -> AsyncIterator[Nodes]:
    n = Nodes(postgres_cluster.fresh_database(), tmp_path)
    for s in n.stores:
        await s.open()
    yield n
    if n.task is not None:
        n.task.cancel()
        await asyncio.gather(n.task, return_exceptions=True)
    for s in n.stores:
        await s.close()


def message(subject: str) -> bytes:
    return f"Subject: {subject}\r\n\r\nbody\r\n".encode()


async def test_mail_flags_and_expunges_on_node_a_reach_watchers_on_node_b(nodes: Nodes) -> None:
    await nodes.listen()
    await nodes.a.ensure_user(USER)
    seen: list[Change] = []
    nodes.b.watch(USER, "INBOX", seen.append)
    _, uid = await nodes.a.append(USER, "INBOX", message("one"), frozenset(), time.time())
    await until(lambda: any(c.added for c in seen))
    assert [m.uid for c in seen for m in c.added] == [uid]
    await nodes.a.store_flags(USER, "INBOX", [uid], frozenset({"\\Seen", "\\Deleted"}), FlagMode.ADD)
    await until(lambda: any(c.flags for c in seen))
    assert [m.flags for c in seen for m in c.flags] == [frozenset({"\\Seen", "\\Deleted"})]
    await nodes.a.expunge(USER, "INBOX", [uid])
    await until(lambda: any(c.expunged for c in seen))
    assert [u for c in seen for u in c.expunged] == [uid]


async def test_a_notice_missed_while_the_listener_reconnects_is_made_good(nodes: Nodes) -> None:
    await nodes.listen()
    await nodes.a.ensure_user(USER)
    seen: list[Change] = []
    nodes.b.watch(USER, "INBOX", seen.append)
    with psycopg.connect(nodes.url, autocommit=True) as db:
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE '%-listen'")
    await until(lambda: not nodes.listener.listening.is_set())
    _, uid = await nodes.a.append(USER, "INBOX", message("while B was not listening"), frozenset(), time.time())
    await until(lambda: any(c.added for c in seen))
    assert [m.uid for c in seen for m in c.added] == [uid]
