"""Several mailstandby processes on one PostgreSQL store, a real primary (Postfix + Dovecot) behind them.

One node leads (docs/cluster.md); the leader is killed with SIGKILL in the middle of a failover and again
in the middle of the failback sync, and another node leads within 15 s each time. Every message a node
acknowledged ends in the primary exactly once, each user got each notice once, the sync ran to the end
once. A leader paused past its lease (SIGSTOP) and resumed (SIGCONT) acts no more: no second notice, no
second sync, no transition or DNS record of its old term after the takeover. A phone in IMAP IDLE
on one node hears of mail another node filed in the standby mailbox (LISTEN/NOTIFY).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator, Sequence
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from tests.component.fake_primary import Delay, FakePrimary
from tests.support.database import query_dicts
from tests.support.postgres import PostgresCluster
from tests.support.primary import Primary
from tests.support.standby import Standby
from tests.wire.test_failover import FAST, SLACK, send, subjects_at_primary

TAKEOVER = 15.0  # seconds: the requirement (issue 13), from the leader's death to another node leading
CLUSTER = {"lease": 6.0, "renew_interval": 1.5, "follow_interval": 0.5}
# a dead node's queue claims (a notice it queued and claimed the instant before SIGKILL, say) are taken over
# after the queue lease: 60 s by default, shortened like the leader's lease so the tests wait for it
QUEUE = {"lease": 6.0, "claim_interval": 1.0}


@pytest.fixture
async def sink() -> AsyncIterator[FakePrimary]:
    """Where the notices to users' alternate addresses go ([outbound])."""
    fake = FakePrimary()
    await fake.start()
    yield fake
    await fake.stop()


def nodes(
    tmp_path: Path, primary: Primary, sink: FakePrimary, url: str, count: int, **extra: dict[str, Any]
) -> list[Standby]:
    secret = tmp_path / "master.pw"
    secret.write_text(primary.master_password + "\n")
    out = []
    for n in range(1, count + 1):
        node = Standby(
            tmp_path / f"n{n}",
            primary_port=primary.smtp_port,
            store={"url": url},
            node={"id": f"n{n}"},
            cluster=dict(CLUSTER),
            queue=dict(QUEUE),
            failover={"control": "automatic"},
            monitor=dict(FAST),
            outbound={"host": "127.0.0.1", "port": sink.port, "tls": "none", "connect_timeout": 5.0},
            sync={
                "imap_host": primary.host,
                "imap_port": primary.imap_port,
                "imap_tls": "none",
                "master_user": primary.master_user,
                "password_file": str(secret),
            },
            **extra,
        )
        config = node.config_path.read_text().replace(
            'address = "alice@corp.test"\n', 'address = "alice@corp.test"\nalternates = ["alice@home.test"]\n'
        )
        node.config_path.write_text(config)
        out.append(node)
    return out


def leader_row(node: Standby) -> dict[str, Any]:
    (row,) = query_dicts(node.data_dir, "SELECT term, node FROM cluster_leader", url=node.store_url)
    return row


async def leader(alive: list[Standby], *, after: int = 0, timeout: float = SLACK) -> tuple[Standby, int]:
    """The node that leads in a term newer than `after` (waited for up to `timeout`)."""
    by_name = {n.root.name: n for n in alive}

    def found() -> bool:
        row = leader_row(alive[0])
        return row["term"] > after and row["node"] in by_name

    await asyncio.to_thread(alive[0].wait_until, found, timeout, f"a node leading after term {after}")
    row = leader_row(alive[0])
    return by_name[row["node"]], row["term"]


def notices(
    sink: FakePrimary, cluster: Sequence[Standby] = (), killed: Sequence[Standby] = ()
) -> list[tuple[str, str]]:
    """(recipient, kind) of every notice the sink received.

    A second copy is counted once only as the documented window (docs/cluster.md, "Mail a dead node was
    sending"): same Message-ID, and the delivery was taken over from a node that was killed holding its
    claim (the sink had said 250 to it; it died before recording that)."""
    out = []
    seen: set[tuple[str, str]] = set()
    for m in sink.messages:
        msgid = str(message_from_bytes(m.body, policy=policy.default)["Message-ID"])  # <notify-N.KIND@host>
        kind = msgid.split("@")[0].split(".")[-1]
        qid = msgid.strip("<").split(".")[0]
        for r in m.rcpts:
            taken = [f"queue.taken-over: id={qid} to=<{r}> from={k.root.name}" for k in killed]
            if (msgid, r) in seen and any(t in line for n in cluster for line in n.log_lines() for t in taken):
                continue
            seen.add((msgid, r))
            out.append((r, kind))
    return out


def notice_recorded(node: Standby) -> bool:
    return any(d["message_id"].startswith("notify-") and d["state"] == "delivered" for d in node.deliveries())


def leader_log(node: Standby) -> list[dict[str, Any]]:
    return query_dicts(node.data_dir, "SELECT term, node, action FROM leader_log ORDER BY id", url=node.store_url)


async def until(node: Standby, predicate: Any, what: str, timeout: float = 2 * SLACK) -> None:
    await asyncio.to_thread(node.wait_until, predicate, timeout, what)


async def test_three_nodes_the_leader_killed_during_the_failover_and_during_the_sync(
    tmp_path: Path, primary: Primary, sink: FakePrimary, postgres_cluster: PostgresCluster
) -> None:
    cluster = nodes(tmp_path, primary, sink, postgres_cluster.fresh_database(), 3)
    for node in cluster:
        await asyncio.to_thread(node.start)
    alive = list(cluster)
    try:
        first, term = await leader(alive)
        sent: list[str] = []
        for n, node in enumerate(alive * 2):  # mail streamed through every node
            sent.append(f"before {n}")
            await asyncio.to_thread(send, node, ["alice@corp.test"], sent[-1])
        await asyncio.to_thread(primary.wait_for_messages, "alice@corp.test", len(sent), SLACK)

        # The leader dies in the middle of the failover: the transition is recorded, the rest is not done.
        await asyncio.to_thread(primary.stop_smtp)
        await until(first, lambda: first.failover_state()["mode"] == "failed-over", "the failover")
        first.kill()
        alive.remove(first)
        second, term = await leader(alive, after=term, timeout=TAKEOVER)
        for n, node in enumerate(alive * 5):
            sent.append(f"outage {n}")
            await asyncio.to_thread(send, node, ["alice@corp.test"], sent[-1])

        # The next leader dies in the middle of the failback sync.
        await asyncio.to_thread(primary.start_smtp)
        await until(second, lambda: any(e["term"] == term for e in leader_log(second)), "the sync's start")
        second.kill()
        alive.remove(second)
        third, term = await leader(alive, after=term, timeout=TAKEOVER)
        await until(third, lambda: third.failover_state()["mode"] == "normal", "the failback")

        at_primary = await asyncio.to_thread(subjects_at_primary, primary, "alice@corp.test")
        assert sorted(at_primary) == sorted(sent)  # every acknowledged message, exactly once
        expected = [("alice@home.test", "failback"), ("alice@home.test", "failover")]
        await sink.wait_for(lambda: len(set(notices(sink))) >= 2, timeout=2 * SLACK)
        await asyncio.sleep(2 * QUEUE["claim_interval"])  # a second copy would come now
        assert sorted(notices(sink, cluster, killed=[first, second])) == expected
        status = await asyncio.to_thread(third.cli, "sync", "status", "--json")
        assert '"pending": 0' in status.stdout and '"failed": 0' in status.stdout, status.stdout
    finally:
        for node in cluster:
            node.kill()


async def test_a_paused_leader_acts_no_more_when_it_resumes(
    tmp_path: Path, primary: Primary, sink: FakePrimary, postgres_cluster: PostgresCluster
) -> None:
    cluster = nodes(tmp_path, primary, sink, postgres_cluster.fresh_database(), 2)
    for node in cluster:
        await asyncio.to_thread(node.start)
    try:
        paused, term = await leader(cluster)
        other = next(n for n in cluster if n is not paused)
        await asyncio.to_thread(primary.stop_smtp)
        await until(paused, lambda: paused.failover_state()["mode"] == "failed-over", "the failover")
        await sink.wait_for(lambda: len(sink.messages) >= 1, timeout=2 * SLACK)
        # paused once the notice's delivery is recorded, not in the instant between the 250 and its record
        # (the documented window, docs/cluster.md: that one is covered by the three-node test's kills)
        await until(paused, lambda: notice_recorded(paused), "the notice's delivery recorded")
        assert paused.proc is not None
        os.killpg(paused.proc.pid, signal.SIGSTOP)
        try:
            _, new_term = await leader([other], after=term, timeout=TAKEOVER + CLUSTER["lease"])
            await asyncio.to_thread(send, other, ["alice@corp.test"], "while the leader is paused")
            await asyncio.to_thread(primary.start_smtp)
            await until(other, lambda: other.failover_state()["mode"] == "normal", "the failback")
        finally:
            os.killpg(paused.proc.pid, signal.SIGCONT)
        await until(paused, lambda: "stops leading (term" in paused.log(), "the resumed node stepping down")
        await sink.wait_for(lambda: len(sink.messages) >= 2, timeout=2 * SLACK)
        assert sorted(notices(sink)) == [("alice@home.test", "failback"), ("alice@home.test", "failover")]
        old = [t["to_mode"] for t in paused.transitions() if t["term"] != new_term]
        assert old == ["failed-over"]  # the old term recorded nothing after the failover it made
        actions = leader_log(other)
        assert [e["action"] for e in actions] == ["sync-run"] and actions[0]["term"] == new_term
        assert leader_row(other)["term"] == new_term  # the resumed node did not take the lead back
    finally:
        for node in cluster:
            node.kill()


async def test_a_notice_the_dead_leader_was_sending_reaches_the_user_once_from_another_node(
    tmp_path: Path, primary: Primary, sink: FakePrimary, postgres_cluster: PostgresCluster
) -> None:
    # the leader queues the failover notice and its runner claims it, then the alternate address's server
    # stalls after MAIL FROM (nothing committed there) and the leader is killed: the notice's row says
    # "sent" (it is in the queue), the queue holds it under the dead node's claim
    sink.on("mail", Delay(10 * SLACK, "250 2.1.0 Ok"), times=1)
    cluster = nodes(tmp_path, primary, sink, postgres_cluster.fresh_database(), 2)
    for node in cluster:
        await asyncio.to_thread(node.start)
    try:
        first, term = await leader(cluster)
        await asyncio.to_thread(primary.stop_smtp)
        await sink.wait_for(lambda: sink.connections >= 1, timeout=2 * SLACK)
        async with asyncio.timeout(SLACK):
            while not any(c.upper().startswith("MAIL FROM") for c in sink.commands):
                await asyncio.sleep(0.05)
        first.kill()
        second = next(n for n in cluster if n is not first)
        await leader([second], after=term, timeout=TAKEOVER)
        # the other node takes the dead node's claim over once its lease ran out, and delivers the notice
        await sink.wait_for(lambda: len(sink.messages) >= 1, timeout=2 * SLACK + QUEUE["lease"])
        assert notices(sink) == [("alice@home.test", "failover")]
        await until(second, lambda: "queue.taken-over: id=notify-" in second.log(), "the takeover logged")
        await asyncio.sleep(2 * QUEUE["claim_interval"])  # nothing more comes
        assert notices(sink) == [("alice@home.test", "failover")]
    finally:
        await asyncio.to_thread(primary.start_smtp)
        for node in cluster:
            node.kill()


def _idle_until_exists(port: int, password: str, ready: asyncio.Event, loop: asyncio.AbstractEventLoop) -> bytes:
    """Log in to one node's IMAP, IDLE on INBOX, and return the first untagged EXISTS it pushes."""
    with socket.create_connection(("127.0.0.1", port), timeout=2 * SLACK) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b'a LOGIN alice@corp.test "%s"\r\nb SELECT INBOX\r\n' % password.encode())
        while not reader.readline().startswith(b"b "):
            pass
        sock.sendall(b"c IDLE\r\n")
        assert reader.readline().startswith(b"+ ")
        loop.call_soon_threadsafe(ready.set)
        while not (line := reader.readline()).endswith(b" EXISTS\r\n"):
            assert line, "the connection closed before any EXISTS"
        sock.sendall(b"DONE\r\nd LOGOUT\r\n")
        return line


async def test_idle_on_one_node_hears_of_mail_another_node_filed(
    tmp_path: Path, primary: Primary, sink: FakePrimary, postgres_cluster: PostgresCluster
) -> None:
    imap = {"listen": ["127.0.0.1:0"], "allow_plaintext_auth_on_loopback": True}
    cluster = nodes(tmp_path, primary, sink, postgres_cluster.fresh_database(), 2, imap=imap)
    for node in cluster:
        await asyncio.to_thread(node.start)
    password = "idle-across-nodes-7"
    try:
        await leader(cluster)  # one of them leads: the failover will happen
        await asyncio.to_thread(cluster[0].set_password, "alice@corp.test", password)  # one store: every node
        await asyncio.to_thread(primary.stop_smtp)  # the outage: mail now goes to the standby mailboxes
        for node in cluster:
            await until(node, lambda n=node: n.failover_state()["mode"] == "failed-over", "the failover")
        ready = asyncio.Event()
        idle = asyncio.create_task(
            asyncio.to_thread(
                _idle_until_exists, cluster[1].listeners["imap"], password, ready, asyncio.get_running_loop()
            )
        )
        async with asyncio.timeout(SLACK):
            await ready.wait()
        await asyncio.to_thread(send, cluster[0], ["alice@corp.test"], "filed on node one")
        async with asyncio.timeout(2 * SLACK):
            pushed = await idle
        assert pushed == b"* 1 EXISTS\r\n"
    finally:
        await asyncio.to_thread(primary.start_smtp)
        for node in cluster:
            node.kill()
