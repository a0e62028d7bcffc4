"""Direct MX delivery: mail to other domains during an outage, resolved by a real BIND 9.

The queue runner (real SQLiteStore, Router, MXConnection) asks a private
`named` serving `ext.test` for MX records; the MX host is a FakePrimary on
an ephemeral port (`mx_port`), the primary another one. While FAILED_OVER,
mail for other domains goes to their MX hosts, one transaction per domain;
a null MX or a domain that does not exist bounces at once (a DSN, itself
delivered by MX to the outside sender); in NORMAL mode the primary still
takes it all.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fake_primary import FakePrimary
from smtp_harness import TIMEOUT

from mailstandby.config import OutboundSettings, PrimarySettings, QueueSettings, StoreSettings
from mailstandby.core.model import Envelope, Mode, new_queue_id
from mailstandby.directory.base import User
from mailstandby.directory.static import StaticDirectory
from mailstandby.queue.runner import QueueRunner
from mailstandby.routing import Router
from mailstandby.smtp.mx import MXConnection, MXResolver
from mailstandby.smtp.relay import PrimaryConnection, RelayConnection
from mailstandby.store.base import NewMessage, Outcome, RcptState
from mailstandby.store.sqlite import SQLiteStore

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.dns import Bind

HOSTNAME = "standby.corp.test"
ALICE = "alice@corp.test"
OUTSIDER = "partner@ext.test"
TIMEOUTS = {"connect_timeout": 2.0, "command_timeout": 2.0, "data_timeout": 2.0}

# ext.test and its neighbours, as the Internet would publish them. 127.0.0.2 is on the
# loopback but nothing listens there: connections to it are refused at once.
EXT_ZONE = """\
@           IN MX 10 mx
mx          IN A  127.0.0.1
null        IN MX 0 .
implicit    IN A  127.0.0.1
backup      IN MX 10 down
backup      IN MX 20 mx
down        IN A  127.0.0.2
dead        IN MX 10 down
"""


@pytest.fixture(scope="module")
def bind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bind]:
    with Bind(tmp_path_factory.mktemp("bind"), extra_zones={"ext.test": EXT_ZONE}) as b:
        yield b


@dataclass
class Rig:
    store: SQLiteStore
    runner: QueueRunner
    router: Router
    primary: FakePrimary
    mx: FakePrimary
    outcomes: list[Outcome] = field(default_factory=list)

    async def send(self, subject: str, rcpts: tuple[str, ...], *, sender: str = ALICE) -> NewMessage:
        body = f"From: <{sender}>\r\nSubject: {subject}\r\n\r\nThe mail system is down.\r\n".encode()
        m = NewMessage(new_queue_id(), Envelope(sender, list(rcpts)), body, time.time())
        self.runner.submit(await self.store.accept(m))
        return m

    def first_outcome(self, m: NewMessage, rcpt: str) -> Outcome | None:
        return next((o for o in self.outcomes if o.message_id == m.id and o.rcpt == rcpt), None)


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.fixture
async def rig(tmp_path: Path, bind: Bind) -> AsyncIterator[Rig]:
    primary, mx = FakePrimary(), FakePrimary()
    await primary.start()
    await mx.start()
    primary_settings = PrimarySettings(host="127.0.0.1", port=primary.port, tls="none", **TIMEOUTS)
    outbound = OutboundSettings(resolver=f"127.0.0.1:{bind.port}", mx_port=mx.port, **TIMEOUTS)
    resolver = MXResolver(outbound)

    def connect() -> PrimaryConnection:
        return RelayConnection(primary_settings, HOSTNAME)

    def connect_direct(domain: str) -> PrimaryConnection:
        return MXConnection(domain, outbound, HOSTNAME, resolver)

    store = SQLiteStore(tmp_path / "data", StoreSettings())
    await store.open()
    router = Router(StaticDirectory(domains=["corp.test"], users=[User(ALICE)]), direct_mx=True)
    queue = QueueSettings(concurrency=1, retry_initial=0.05, retry_max=0.2, max_lifetime=3600.0)
    runner = QueueRunner(store, router, connect, queue, hostname=HOSTNAME, connect_direct=connect_direct)
    rig = Rig(store, runner, router, primary, mx)
    real_record = store.record

    async def record(outcomes: list[Outcome], **kw: object) -> object:
        result = await real_record(outcomes, **kw)  # type: ignore[arg-type]
        rig.outcomes.extend(outcomes)
        return result

    store.record = record  # type: ignore[method-assign]
    await runner.start()
    yield rig
    await runner.stop(grace=0)
    await store.close()
    await primary.stop()
    await mx.stop()
    current = asyncio.current_task()
    leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert leftover == [], f"tasks left running: {leftover}"


async def test_failed_over_mail_to_another_domain_goes_to_its_mx(rig: Rig) -> None:
    rig.router.apply(Mode.FAILED_OVER, None)
    m = await rig.send("outage notice", ("alt.alice@ext.test", "boss@ext.test"))
    await rig.mx.wait_for(lambda: len(rig.mx.messages) == 1)
    (got,) = rig.mx.messages
    assert (got.sender, got.rcpts) == (ALICE, ["alt.alice@ext.test", "boss@ext.test"])  # one transaction
    assert b"Subject: outage notice" in got.body
    await until(lambda: m.id not in rig.runner.messages)
    assert {(o.rcpt, o.state, o.route) for o in rig.outcomes} == {
        ("alt.alice@ext.test", RcptState.DELIVERED, "direct"),
        ("boss@ext.test", RcptState.DELIVERED, "direct"),
    }
    assert rig.primary.messages == [] and rig.primary.connections == 0


async def test_normal_mode_still_hands_other_domains_to_the_primary(rig: Rig) -> None:
    m = await rig.send("reply", ("boss@ext.test",))
    await rig.primary.wait_for(lambda: len(rig.primary.messages) == 1)
    await until(lambda: m.id not in rig.runner.messages)
    assert rig.primary.messages[0].rcpts == ["boss@ext.test"]
    assert rig.mx.messages == [] and rig.mx.connections == 0


async def test_one_transaction_per_domain_implicit_mx_and_backup_mx(rig: Rig) -> None:
    rig.router.apply(Mode.FAILING_BACK, None)
    rcpts = ("a@ext.test", "b@implicit.ext.test", "c@backup.ext.test", "d@EXT.test")
    m = await rig.send("spread", rcpts)
    await rig.mx.wait_for(lambda: len(rig.mx.messages) == 3)
    await until(lambda: m.id not in rig.runner.messages)
    assert sorted(got.rcpts for got in rig.mx.messages) == [
        ["a@ext.test", "d@EXT.test"],
        ["b@implicit.ext.test"],
        ["c@backup.ext.test"],
    ]
    assert all(o.state is RcptState.DELIVERED for o in rig.outcomes)


@pytest.mark.parametrize(
    "rcpt,reply",
    [
        ("someone@null.ext.test", "556 5.1.10"),  # RFC 7505 null MX
        ("someone@nowhere.ext.test", "550 5.1.2"),  # NXDOMAIN
    ],
)
async def test_a_domain_that_takes_no_mail_bounces_at_once(rig: Rig, rcpt: str, reply: str) -> None:
    rig.router.apply(Mode.FAILED_OVER, None)
    m = await rig.send("forwarded", (rcpt,), sender=OUTSIDER)
    # The DSN goes to the outside sender, by MX as well: nobody waits for the primary.
    await rig.mx.wait_for(lambda: len(rig.mx.messages) == 1)
    (dsn,) = rig.mx.messages
    assert (dsn.sender, dsn.rcpts) == ("", [OUTSIDER])
    report = email.message_from_bytes(dsn.body, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    assert f"Status: {reply.split()[1]}" in report.as_string()
    outcome = rig.first_outcome(m, rcpt)
    assert outcome is not None and outcome.state is RcptState.FAILED and outcome.attempts == 1
    assert outcome.reply.startswith(reply)
    assert rig.primary.connections == 0


@pytest.mark.parametrize(
    "rcpt,reply",
    [
        ("someone@dead.ext.test", "451 4.4.1"),  # its only MX host refuses connections
        ("someone@elsewhere.test", "451 4.4.3"),  # the DNS server refuses to answer (not its zone)
    ],
)
async def test_trouble_reaching_a_domain_keeps_the_mail_queued(rig: Rig, rcpt: str, reply: str) -> None:
    rig.router.apply(Mode.FAILED_OVER, None)
    m = await rig.send("retry me", (rcpt,), sender=OUTSIDER)
    await until(lambda: rig.first_outcome(m, rcpt) is not None)
    outcome = rig.first_outcome(m, rcpt)
    assert outcome is not None and outcome.state is RcptState.QUEUED
    assert outcome.reply.startswith(reply)
    assert m.id in rig.runner.messages
    assert rig.mx.messages == [] and rig.primary.connections == 0
