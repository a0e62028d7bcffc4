"""Leader election and fencing on a real PostgreSQL server (the session's private cluster).

Two nodes' leaderships share one database: at no instant do both believe they lead, also while the
leader's lock connection is cut and the other takes over; the term only grows. A write carrying a
term that is no longer the current one is refused and changes nothing; the coordinator that made it
steps down. A follower's coordinator routes as the leader recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from smtp_harness import TIMEOUT
from tests.support.postgres import PostgresCluster

from mailstandby.config import ClusterSettings, StoreSettings
from mailstandby.core.leadership import NotLeading
from mailstandby.core.model import Mode
from mailstandby.directory.base import User
from mailstandby.directory.static import StaticDirectory
from mailstandby.failover.coordinator import Coordinator, Effects
from mailstandby.failover.machine import State
from mailstandby.monitor.verdict import Verdict, Why
from mailstandby.routing import Router
from mailstandby.store.postgres import PostgresStore
from mailstandby.store.postgres_leader import LOCK_KEY, PostgresLeadership
from mailstandby.store.sqlite_failover import SQLiteFailoverStore

FAST = ClusterSettings(lease=1.2, renew_interval=0.25, follow_interval=0.1)
DOWN = Verdict(True, None, Why.PRIMARY_DOWN)
DIRECTORY = StaticDirectory(["corp.test"], [User("alice@corp.test")])


async def _no_notice(*_: object) -> None:
    """These tests look at routing and fencing; notices are the notify suite's."""


ROUTING_ONLY = Effects(reroute=lambda: None, announce=_no_notice, sync=None, dns=None)


@pytest.fixture
def url(postgres_cluster: PostgresCluster) -> str:
    return postgres_cluster.fresh_database()


@pytest.fixture
async def store(tmp_path: Path, url: str) -> AsyncIterator[PostgresStore]:
    s = PostgresStore(tmp_path / "data", StoreSettings(url=url))
    await s.open()  # the schema (cluster_leader) is there before any node elects
    yield s
    await s.close()


class Stale:
    """A node that believes it still leads in a term that is over (paused, cut off, its clock wrong)."""

    node = "stale"

    def __init__(self, term: int) -> None:
        self._term = term
        self.stepped_down: list[int] = []

    @property
    def term(self) -> int:
        return self._term

    async def wait_leading(self) -> int:
        return self._term

    async def wait_lost(self, term: int) -> None:
        await asyncio.Event().wait()

    def step_down(self, term: int) -> None:
        self.stepped_down.append(term)


async def lock_holders(url: str) -> list[int]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as db:
        cur = await db.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objid = %s AND granted",
            LOCK_KEY,
        )
        return [r[0] for r in await cur.fetchall()]


async def cut_lock_connection(url: str) -> None:
    """The leader's lock session ends (a network cut, a database restart of that backend)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as db:
        for pid in await lock_holders(url):
            await db.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def test_two_nodes_never_lead_together_and_the_term_grows(store: PostgresStore, url: str) -> None:
    a, b = PostgresLeadership(url, FAST, "node-a"), PostgresLeadership(url, FAST, "node-b")
    both: list[tuple[int, int]] = []

    async def watch() -> None:  # every loop turn: never two leaders
        while True:
            if a.term and b.term:
                both.append((a.term, b.term))
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    await a.start()
    await b.start()
    try:
        async with asyncio.timeout(TIMEOUT):
            first = await asyncio.wait(
                [asyncio.create_task(a.wait_leading()), asyncio.create_task(b.wait_leading())],
                return_when=asyncio.FIRST_COMPLETED,
            )
        leader, other = (a, b) if a.term else (b, a)
        term = leader.term
        assert first and term > 1  # the migration's row says 1; taking the lead increments it
        await cut_lock_connection(url)
        async with asyncio.timeout(TIMEOUT):
            new_term = await other.wait_leading()
        assert new_term > term and leader.term == 0
        await leader.stop()  # stopping a follower leaves the leader be
        assert other.term == new_term
        await other.stop()  # a leader that stops ends its lease: the next one need not wait it out
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as db:
            cur = await db.execute("SELECT term, node, lease_until FROM cluster_leader")
            assert await cur.fetchone() == (new_term, other.node, 0)
    finally:
        watcher.cancel()
        await a.stop()
        await b.stop()
    assert both == []


async def test_a_write_of_an_old_term_is_refused_and_its_coordinator_steps_down(store: PostgresStore, url: str) -> None:
    failover = SQLiteFailoverStore(store)
    leader = PostgresLeadership(url, FAST, "node-a")
    await leader.start()
    try:
        async with asyncio.timeout(TIMEOUT):
            old = await leader.wait_leading()
        await failover.save(State(), State(Mode.FAILED_OVER, None, 1, 1.0), term=old, actor="t", reason="ok")
        await cut_lock_connection(url)  # and another node takes over: here the same one, in a new term
        async with asyncio.timeout(TIMEOUT):
            while leader.term in (0, old):
                await asyncio.sleep(0.01)
        with pytest.raises(NotLeading):
            await failover.save(State(), State(Mode.NORMAL, None, 1, 2.0), term=old, actor="t", reason="stale")
        with pytest.raises(NotLeading):
            await failover.leader_action(old, "node-a", "dns-switch")
        assert (await failover.load()).mode is Mode.FAILED_OVER  # nothing of the stale write is there
        assert [t["reason"] for t in await failover.transitions()] == ["ok"]

        stale = Stale(old)
        coordinator = Coordinator(
            failover, Router(DIRECTORY), stale, ROUTING_ONLY, follow_interval=FAST.follow_interval
        )
        await coordinator.start()  # it read the state as it stood before its term ended
        try:
            assert await coordinator.observe(Verdict(False, None, Why.HEALTHY)) is None
        finally:
            await coordinator.stop()
        assert stale.stepped_down == [old]
        assert (await failover.load()).mode is Mode.FAILED_OVER
    finally:
        await leader.stop()


async def test_a_follower_routes_as_the_leader_recorded(store: PostgresStore, url: str) -> None:
    a, b = PostgresLeadership(url, FAST, "node-a"), PostgresLeadership(url, FAST, "node-b")
    await a.start()
    async with asyncio.timeout(TIMEOUT):
        await a.wait_leading()
    await b.start()
    failover = SQLiteFailoverStore(store)
    routers = Router(DIRECTORY), Router(DIRECTORY)
    leading = Coordinator(failover, routers[0], a, ROUTING_ONLY, follow_interval=FAST.follow_interval)
    following = Coordinator(failover, routers[1], b, ROUTING_ONLY, follow_interval=FAST.follow_interval)
    await leading.start()
    await following.start()
    try:
        assert leading.snapshot()["leader"] and not following.snapshot()["leader"]
        assert await following.observe(DOWN) is None  # a follower's verdict is not acted on
        assert (await failover.load()).mode is Mode.NORMAL
        assert await leading.observe(DOWN) is not None
        async with asyncio.timeout(TIMEOUT):
            await following.wait_for(Mode.FAILED_OVER)
        assert routers[1].mode is Mode.FAILED_OVER
        (t,) = await failover.transitions()
        assert t["actor"] == "monitor"
    finally:
        for c in (leading, following):
            await c.stop()
        await a.stop()
        await b.stop()
