"""Two nodes, one PostgreSQL store: per-recipient claims (store/claims.py, queue/runner.py).

Each node is a PostgresStore with its own node id and a QueueRunner on it, as two mailstandby
processes would have; the primary is the scripted SMTP sink `fake_primary.FakePrimary`. Every
recipient reaches the sink exactly once, whichever node accepted it and whichever node retried it;
a node that dies mid-delivery leaves its claims to the other after the lease, which looks the
delivery up in the primary mailbox (queue/inflight.py) instead of sending it again.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fake_primary import Delay, FakePrimary
from smtp_harness import TIMEOUT
from tests.support.postgres import PostgresCluster

from mailstandby.config import PrimarySettings, QueueSettings, StoreSettings
from mailstandby.core.model import Envelope, new_queue_id
from mailstandby.directory.base import User
from mailstandby.directory.static import StaticDirectory
from mailstandby.queue.inflight import InDoubt
from mailstandby.queue.runner import QueueRunner
from mailstandby.routing import Router
from mailstandby.smtp.relay import PrimaryConnection, RelayConnection
from mailstandby.store.base import NewMessage, RcptState
from mailstandby.store.postgres import PostgresStore

HOSTNAME = "standby.corp.test"
ALICE, BOB = "alice@corp.test", "bob@corp.test"
QUEUE = QueueSettings(concurrency=2, retry_initial=0.05, retry_max=0.2, lease=1.5, claim_interval=0.1)
PRIMARY = {"connect_timeout": 2.0, "command_timeout": 2.0, "data_timeout": 2.0, "tls": "none"}


class SinkLookup:
    """The in-doubt look-up (sync/lookup.py's role) against what the sink took: our queue id in a body."""

    def __init__(self, fake: FakePrimary) -> None:
        self.fake = fake
        self.asked: list[str] = []

    async def delivered(self, user: str, queue_id: str) -> bool:
        self.asked.append(queue_id)
        return any(f" id {queue_id};".encode() in m.body.split(b"\r\n\r\n")[0] for m in self.fake.messages)


@dataclass
class Node:
    store: PostgresStore
    runner: QueueRunner | None = None


@dataclass
class Cluster:
    url: str
    base: Path
    fake: FakePrimary
    lookup: SinkLookup
    nodes: list[Node] = field(default_factory=list)

    def connect(self) -> PrimaryConnection:
        return RelayConnection(PrimarySettings(port=self.fake.port, **PRIMARY), HOSTNAME)  # type: ignore[arg-type]

    async def node(self, name: str) -> Node:
        store = PostgresStore(self.base / name, StoreSettings(url=self.url), node_id=name, lease=QUEUE.lease)
        await store.open()
        node = Node(store)
        self.nodes.append(node)
        return node

    async def run(self, node: Node) -> QueueRunner:
        directory = StaticDirectory(domains=["corp.test"], users=[User(ALICE), User(BOB)])
        in_doubt = InDoubt(node.store, self.lookup, lambda rcpt: rcpt, time.time)
        router = Router(directory)
        node.runner = QueueRunner(node.store, router, self.connect, QUEUE, hostname=HOSTNAME, in_doubt=in_doubt)
        await node.runner.start()
        return node.runner

    async def die(self, node: Node) -> None:
        """The node stops in the middle of what it was doing: nothing more is recorded, its claims stay."""
        if node.runner is not None:
            for task in [*node.runner.workers, node.runner.claimer]:
                if task is not None:
                    task.cancel()
            await asyncio.gather(*node.runner.workers, return_exceptions=True)
            node.runner = None
        await node.store.close()
        self.nodes.remove(node)

    def states(self) -> dict[tuple[str, str], str]:
        rows = self.nodes[0].store.read_connection().execute("SELECT message_id, rcpt, state FROM deliveries")
        return {(m, r): s for m, r, s in rows}


def message(subject: str) -> NewMessage:
    qid = new_queue_id()
    body = (
        f"Received: from client.example.test by {HOSTNAME} (mailstandby) with ESMTP id {qid};"
        f" Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: {subject}\r\n\r\nbody\r\n"
    ).encode()
    return NewMessage(qid, Envelope("s@example.test", [ALICE, BOB]), body, time.time())


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
async def cluster(tmp_path: Path, postgres_cluster: PostgresCluster) -> AsyncIterator[Cluster]:
    fake = FakePrimary()
    await fake.start()
    c = Cluster(postgres_cluster.fresh_database(), tmp_path, fake, SinkLookup(fake))
    yield c
    for node in list(c.nodes):
        if node.runner is not None:
            await node.runner.stop(grace=0)
        await node.store.close()
    await fake.stop()


def delivered_copies(fake: FakePrimary) -> Counter[tuple[bytes, str]]:
    """(Subject line, recipient) of every copy the sink took."""
    copies: Counter[tuple[bytes, str]] = Counter()
    for m in fake.messages:
        subject = next(line for line in m.body.split(b"\r\n") if line.startswith(b"Subject:"))
        copies.update((subject, r) for r in m.rcpts)
    return copies


async def test_two_nodes_deliver_every_recipient_exactly_once(cluster: Cluster) -> None:
    a, b = await cluster.node("node-a"), await cluster.node("node-b")
    cluster.fake.on("rcpt", "452 4.2.2 try again later", times=6)  # due retries, taken by either node
    accepted = [await (a if i % 2 else b).store.accept(message(f"m{i}")) for i in range(20)]
    runners = {"node-a": await cluster.run(a), "node-b": await cluster.run(b)}
    for i in range(20, 40):  # accepted while both run: the accepting node delivers it
        node = a if i % 2 else b
        queued = await node.store.accept(message(f"m{i}"))
        accepted.append(queued)
        runners[node.store.node_id].submit(queued)
    await until(lambda: set(cluster.states().values()) == {RcptState.DELIVERED.value})
    copies = delivered_copies(cluster.fake)
    assert len(copies) == 80
    assert set(copies.values()) == {1}, [k for k, n in copies.items() if n > 1]


async def test_a_dead_nodes_claims_are_taken_over_and_looked_up_not_sent_again(cluster: Cluster) -> None:
    a, b = await cluster.node("node-a"), await cluster.node("node-b")
    await cluster.run(b)
    runner_a = await cluster.run(a)
    cluster.fake.on("dot", Delay(TIMEOUT * 3, "250 2.0.0 ok"), times=1)  # the sink has it; A never hears so
    m = message("in flight when A died")
    runner_a.submit(await a.store.accept(m))
    await until(lambda: len(cluster.fake.messages) == 1)
    await cluster.die(a)
    # B takes the claim once A's lease ran out, finds the copy in the mailbox, sends nothing
    await until(lambda: set(cluster.states().values()) == {RcptState.DELIVERED.value})
    assert m.id in cluster.lookup.asked
    assert set(delivered_copies(cluster.fake).values()) == {1}
    assert len(cluster.fake.messages) == 1
