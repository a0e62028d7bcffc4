"""The queue runner against a scripted fake primary (SMTP and LMTP).

A real SQLiteStore, a real Router over a StaticDirectory and the real
RelayConnection / LMTPConnection; the primary is `fake_primary.FakePrimary`.
RELIABILITY D10 (4xx/421/hang-up/refused keep the mail, 5xx bounces once),
D11 (a lost reply to the dot means at least once: 1 or 2 copies, never 0),
D12 (a restart resumes the queue), P16 (a hostile primary never loses mail
and never stops the worker) and the lifetime / DSN rules of docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

import pytest
from fake_primary import HANGUP, Delay, Endless, FakePrimary, Raw, Received, Step
from smtp_harness import TIMEOUT

from mailstandby.config import PrimarySettings, QueueSettings, StoreSettings
from mailstandby.core.model import Envelope, new_queue_id
from mailstandby.directory.base import User
from mailstandby.directory.static import StaticDirectory
from mailstandby.queue.runner import QueueRunner, backoff
from mailstandby.routing import Router
from mailstandby.smtp.lmtp import LMTPConnection
from mailstandby.smtp.relay import PrimaryConnection, RelayConnection
from mailstandby.store.base import NewMessage, Outcome, RcptState

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.backends import Store, build_store, store_settings

HOSTNAME = "standby.corp.test"
SENDER = "s@example.test"
ALICE, BOB, CAROL = "alice@corp.test", "bob@corp.test", "carol@corp.test"
QUEUE = {"concurrency": 1, "retry_initial": 0.05, "retry_max": 0.2, "max_lifetime": 3600.0}
PRIMARY = {"connect_timeout": 2.0, "command_timeout": 2.0, "data_timeout": 2.0, "tls": "none"}


@dataclass
class Rig:
    """Store + runner + fake primary; `outcomes` is every outcome the runner recorded, in order."""

    data_dir: Path
    fake: FakePrimary
    queue: QueueSettings
    primary: PrimarySettings
    settings: StoreSettings
    store: Store | None = None
    runner: QueueRunner | None = None
    outcomes: list[Outcome] = field(default_factory=list)

    def connect(self) -> PrimaryConnection:
        if self.primary.protocol == "lmtp":
            return LMTPConnection(self.primary, HOSTNAME)
        return RelayConnection(self.primary, HOSTNAME)

    async def start(self) -> QueueRunner:
        """Open the store and start a runner on it (again, after `stop()`: a restart)."""
        store = build_store(self.data_dir, self.settings)
        await store.open()
        real_record = store.record

        async def record(outcomes: list[Outcome], **kw: object) -> object:
            result = await real_record(outcomes, **kw)  # type: ignore[arg-type]
            self.outcomes.extend(outcomes)
            return result

        store.record = record  # type: ignore[method-assign]
        directory = StaticDirectory(domains=["corp.test"], users=[User(ALICE), User(BOB), User(CAROL)])
        self.store = store
        self.runner = QueueRunner(store, Router(directory), self.connect, self.queue, hostname=HOSTNAME)
        await self.runner.start()
        return self.runner

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.stop(grace=0)
            self.runner = None
        if self.store is not None:
            await self.store.close()
            self.store = None

    async def send(
        self, subject: str, rcpts: tuple[str, ...] = (ALICE,), *, sender: str = SENDER, smtputf8: bool = False
    ) -> NewMessage:
        """Accept a message into the store and hand it to the runner, as the intake does."""
        assert self.store is not None and self.runner is not None
        body = f"From: <{sender}>\r\nSubject: {subject}\r\n\r\nline\r\n.leading dot\r\n..two\r\n".encode()
        m = NewMessage(new_queue_id(), Envelope(sender, list(rcpts), smtputf8=smtputf8), body, time.time())
        self.runner.submit(await self.store.accept(m))
        return m

    # -- observation --------------------------------------------------------------------------
    def states(self, m: NewMessage) -> dict[str, tuple[str, int]]:
        assert self.store is not None
        return {d["rcpt"]: (d["state"], d["attempts"]) for d in self.store.deliveries(m.id)}

    def last_reply(self, m: NewMessage, rcpt: str) -> str:
        assert self.store is not None
        (d,) = [d for d in self.store.deliveries(m.id) if d["rcpt"] == rcpt]
        return d["last_reply"]

    def outcomes_for(self, m: NewMessage, rcpt: str | None = None) -> list[Outcome]:
        return [o for o in self.outcomes if o.message_id == m.id and rcpt in (None, o.rcpt)]

    def dsns(self) -> list[tuple[str, str]]:
        """(id, sender) of every DSN the runner queued."""
        assert self.store is not None
        db = self.store.read_connection()
        return [tuple(r) for r in db.execute("SELECT id, sender FROM messages WHERE origin = 'dsn'").fetchall()]

    async def pending_ids(self) -> set[str]:
        assert self.store is not None
        return {m.id for m in await self.store.pending()}

    async def settled(self, *messages: NewMessage) -> None:
        """Wait until none of `messages` has a recipient left in the queue."""
        ids = {m.id for m in messages}
        await until(lambda: self.runner is not None and not ids & set(self.runner.messages))
        assert not ids & await self.pending_ids()

    def copies(self, m: NewMessage) -> list[Received]:
        return self.fake.copies(m.body)


async def until(condition: Callable[[], bool]) -> None:
    """Await a state the runner reaches on its own, bounded by TIMEOUT."""
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.005)


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(tmp_path: Path, request: pytest.FixtureRequest, backend: str) -> AsyncIterator[RigFactory]:
    cluster = request.getfixturevalue("postgres_cluster") if backend == "postgres" else None
    made: list[Rig] = []

    async def make(*, protocol: str = "smtp", start: bool = True, **overrides: Any) -> Rig:
        fake = FakePrimary(lmtp=protocol == "lmtp")
        await fake.start()
        queue = QueueSettings(**{**QUEUE, **{k: v for k, v in overrides.items() if k in QueueSettings.model_fields}})
        primary = PrimarySettings(
            host="127.0.0.1",
            port=fake.port,
            protocol=protocol,
            **{**PRIMARY, **{k: v for k, v in overrides.items() if k in PrimarySettings.model_fields}},
        )
        rig = Rig(tmp_path / f"data{len(made)}", fake, queue, primary, store_settings(backend, cluster))
        made.append(rig)
        if start:
            await rig.start()
        return rig

    yield make
    for rig in made:
        await rig.stop()
        await rig.fake.stop()
    current = asyncio.current_task()
    leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert leftover == [], f"tasks left running: {leftover}"


@pytest.fixture
async def rig(make_rig: RigFactory) -> Rig:
    return await make_rig()


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def status_groups(dsn: EmailMessage) -> list[Message]:
    """The per-recipient field groups of the message/delivery-status part."""
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    (part,) = [p for p in dsn.walk() if p.get_content_type() == "message/delivery-status"]
    groups = part.get_payload()
    assert isinstance(groups, list)
    return list(groups[1:])  # the first group is per-message (Reporting-MTA...)


# -- normal delivery ------------------------------------------------------------------------------


async def test_accepted_mail_is_delivered_and_retired_over_one_reused_connection(rig: Rig) -> None:
    messages = [await rig.send(f"m{n}", (ALICE, BOB) if n == 1 else (ALICE,)) for n in range(3)]
    await rig.settled(*messages)
    await rig.fake.wait_for(lambda: len(rig.fake.messages) == 3)
    for m in messages:
        assert {s for s, _ in rig.states(m).values()} == {"delivered"}
        assert {a for _, a in rig.states(m).values()} == {1}
        (copy,) = rig.copies(m)
        assert copy.body == m.body  # dot-stuffed on the wire, byte-identical at the primary
        assert (copy.sender, copy.rcpts) == (SENDER, m.envelope.recipients)
    assert rig.fake.connections == 1
    assert [c.split(" ")[0] for c in rig.fake.commands].count("RSET") == 2
    assert rig.last_reply(messages[0], ALICE).startswith("250 2.0.0")
    assert rig.dsns() == []
    assert await rig.pending_ids() == set()


async def test_a_slow_reply_within_the_timeout_is_waited_for(rig: Rig) -> None:
    """D11: the reply to the dot may take long; waiting is cheaper than a duplicate."""
    rig.fake.on("dot", Delay(0.3, "250 2.0.0 Ok: queued"), times=1)
    m = await rig.send("slow")
    await rig.settled(m)
    assert rig.states(m) == {ALICE: ("delivered", 1)}
    assert len(rig.copies(m)) == 1


async def test_8bit_utf8_addresses_are_relayed_with_smtputf8(rig: Rig) -> None:
    m = await rig.send("utf8", sender="jöran@example.test", smtputf8=True)
    await rig.settled(m)
    assert rig.states(m) == {ALICE: ("delivered", 1)}
    (copy,) = rig.copies(m)
    assert copy.sender == "jöran@example.test"
    assert any(c.startswith("MAIL FROM:<jöran@example.test>") and "SMTPUTF8" in c for c in rig.fake.commands)


# -- temporary failures: keep, back off, retry (D10) ----------------------------------------------


async def test_4xx_at_rcpt_defers_with_backoff_then_delivers(rig: Rig) -> None:
    rig.fake.on("rcpt", "452 4.2.2 mailbox busy", times=3)
    m = await rig.send("busy")
    await rig.settled(m)

    deferred = rig.outcomes_for(m)[:-1]
    assert [(o.state, o.attempts) for o in deferred] == [(RcptState.QUEUED, n) for n in (1, 2, 3)]
    assert all(o.reply.startswith("452 4.2.2") for o in deferred)
    rcpt_times = [t for t, line in rig.fake.log if line.startswith("RCPT")]
    assert len(rcpt_times) == 4
    for n, o in enumerate(deferred, start=1):
        attempted = o.next_attempt - backoff(rig.queue, n)  # next attempt = attempt time + backoff(n)
        assert rcpt_times[n - 1] <= attempted + 0.01 and attempted - rcpt_times[n - 1] < 2.0
        assert rcpt_times[n] >= o.next_attempt - 0.01  # and no retry came early
    assert rig.states(m) == {ALICE: ("delivered", 4)}
    assert len(rig.copies(m)) == 1
    assert rig.dsns() == []


@pytest.mark.parametrize(
    ("stage", "step", "may_duplicate"),
    [
        ("data", "421 4.3.2 shutting down", False),
        ("dot", HANGUP, True),  # committed, reply lost (D11)
        ("dot", Delay(0.6, "250 2.0.0 Ok: queued"), True),  # committed, reply too late
        ("rcpt", HANGUP, False),
        ("mail", "451 4.3.0 local problem", False),
        ("banner", "421 4.3.2 try later", False),
    ],
    ids=["421-at-DATA", "hangup-after-dot", "timeout-after-dot", "hangup-at-RCPT", "451-at-MAIL", "421-banner"],
)
async def test_temporary_trouble_keeps_the_message_until_the_primary_recovers(
    make_rig: RigFactory, stage: str, step: Step, may_duplicate: bool
) -> None:
    rig = await make_rig(data_timeout=0.3)
    rig.fake.on(stage, step, times=1)
    m = await rig.send("trouble")
    await rig.settled(m)
    first = rig.outcomes_for(m)[0]
    assert (first.state, first.attempts) == (RcptState.QUEUED, 1)
    assert 400 <= int(first.reply[:3]) < 500, first.reply
    assert rig.states(m) == {ALICE: ("delivered", 2)}
    copies = len(rig.copies(m))
    assert 1 <= copies <= (2 if may_duplicate else 1)  # never 0; a duplicate only when the dot got through
    if may_duplicate:
        assert copies == 2
        assert "no reply to the end of data" in first.reply  # the log says where the duplicate came from
    else:
        assert "no reply to the end of data" not in first.reply
    assert rig.dsns() == []


async def test_connection_refused_keeps_the_message_until_the_primary_is_back(rig: Rig) -> None:
    await rig.fake.stop()
    m = await rig.send("refused")
    await until(lambda: len(rig.outcomes_for(m)) >= 1)
    first = rig.outcomes_for(m)[0]
    assert (first.state, first.attempts) == (RcptState.QUEUED, 1)
    assert first.reply.startswith("451 4.4.1")
    assert rig.states(m) == {ALICE: ("queued", 1)}
    assert await rig.pending_ids() == {m.id}

    await rig.fake.start()  # same port
    await rig.settled(m)
    assert rig.states(m)[ALICE][0] == "delivered"
    assert len(rig.copies(m)) == 1


# -- permanent failures: DSN ------------------------------------------------------------------------


async def test_5xx_for_one_recipient_fails_it_alone_and_bounces_once(rig: Rig) -> None:
    rig.fake.on(f"rcpt:{BOB}", f"550 5.1.1 <{BOB}>: Recipient address rejected")
    m = await rig.send("half", (ALICE, BOB))
    await rig.settled(m)
    assert rig.states(m) == {ALICE: ("delivered", 1), BOB: ("failed", 1)}
    assert rig.last_reply(m, BOB).startswith("550 5.1.1")

    ((dsn_id, dsn_sender),) = rig.dsns()
    assert dsn_sender == ""
    await until(lambda: dsn_id not in (rig.runner.messages if rig.runner else {}))
    assert await rig.pending_ids() == set()
    (original,) = rig.copies(m)
    assert original.rcpts == [ALICE]
    (bounce,) = [r for r in rig.fake.messages if r.sender == ""]
    assert bounce.rcpts == [SENDER]
    dsn = parse(bounce.body)
    assert dsn["Auto-Submitted"] == "auto-replied"
    (group,) = status_groups(dsn)
    assert group["Final-Recipient"] == f"rfc822; {BOB}"
    assert group["Action"] == "failed"
    assert group["Status"] == "5.1.1"
    assert ALICE not in bounce.body.decode()


async def test_a_null_sender_message_fails_without_a_dsn(rig: Rig) -> None:
    rig.fake.on("rcpt", "550 5.1.1 no such user")
    m = await rig.send("bounce of a bounce", sender="")
    await rig.settled(m)
    assert rig.states(m) == {ALICE: ("failed", 1)}
    assert rig.dsns() == []
    assert rig.fake.messages == []
    assert rig.runner is not None and rig.runner.messages == {}


async def test_a_message_deferred_past_its_lifetime_fails_with_a_4_4_7_dsn(make_rig: RigFactory) -> None:
    rig = await make_rig(max_lifetime=0.3)
    rig.fake.on(f"rcpt:{ALICE}", "451 4.3.0 try again later")
    m = await rig.send("old")
    await rig.settled(m)
    outcomes = rig.outcomes_for(m)
    assert outcomes[0].state is RcptState.QUEUED and outcomes[-1].state is RcptState.FAILED
    assert [o.state for o in outcomes[:-1]] == [RcptState.QUEUED] * (len(outcomes) - 1)
    state, attempts = rig.states(m)[ALICE]
    assert state == "failed" and attempts == len(outcomes) >= 2
    assert rig.last_reply(m, ALICE).startswith("451 4.3.0")

    assert len(rig.dsns()) == 1
    await rig.fake.wait_for(lambda: any(r.sender == "" for r in rig.fake.messages))
    (bounce,) = [r for r in rig.fake.messages if r.sender == ""]
    (group,) = status_groups(parse(bounce.body))
    assert group["Final-Recipient"] == f"rfc822; {ALICE}"
    assert group["Status"] == "4.4.7"
    assert group["Action"] == "failed"
    assert rig.copies(m) == []


# -- restart (D12) -------------------------------------------------------------------------------


async def test_a_restarted_runner_resumes_the_stored_queue(rig: Rig) -> None:
    rig.fake.on("rcpt", "452 4.2.2 mailbox full")
    m = await rig.send("survives a restart", (ALICE, BOB))
    await until(lambda: len(rig.outcomes_for(m)) >= 2)
    await rig.stop()  # runner and store gone; the mail is only on disk now
    rig.outcomes.clear()
    rig.fake.clear()
    before = len(rig.fake.log)

    runner = await rig.start()  # a new runner on the reopened store: nobody submits anything
    assert m.id in runner.messages
    await rig.settled(m)
    states = rig.states(m)
    assert {s for s, _ in states.values()} == {"delivered"}
    assert all(a >= 2 for _, a in states.values())
    (copy,) = rig.copies(m)
    assert copy.rcpts == [ALICE, BOB]
    assert any(line.startswith("RCPT") for _, line in rig.fake.log[before:])


# -- LMTP: one reply per recipient after the dot ----------------------------------------------------


async def test_lmtp_per_recipient_replies_after_the_dot(make_rig: RigFactory) -> None:
    rig = await make_rig(protocol="lmtp")
    rig.fake.on(f"dot:{ALICE}", "250 2.0.0 Ok")
    rig.fake.on(f"dot:{BOB}", "550 5.1.1 no such mailbox")
    rig.fake.on(f"dot:{CAROL}", "452 4.2.2 mailbox full", times=1)
    m = await rig.send("three", (ALICE, BOB, CAROL))
    await until(lambda: len(rig.outcomes_for(m)) >= 3)
    first = {o.rcpt: (o.state, o.attempts) for o in rig.outcomes[:3]}
    assert first == {ALICE: (RcptState.DELIVERED, 1), BOB: (RcptState.FAILED, 1), CAROL: (RcptState.QUEUED, 1)}

    await rig.settled(m)
    assert rig.states(m) == {ALICE: ("delivered", 1), BOB: ("failed", 1), CAROL: ("delivered", 2)}
    assert [c.rcpts for c in rig.copies(m)] == [[ALICE], [CAROL]]
    ((dsn_id, _),) = rig.dsns()
    await until(lambda: dsn_id not in (rig.runner.messages if rig.runner else {}))
    (bounce,) = [r for r in rig.fake.messages if r.sender == ""]
    (group,) = status_groups(parse(bounce.body))
    assert (group["Final-Recipient"], group["Status"]) == (f"rfc822; {BOB}", "5.1.1")
    assert any(c.startswith("LHLO ") for c in rig.fake.commands)


@pytest.mark.parametrize("cut", [HANGUP, Delay(5.0, "250 2.0.0 too late")], ids=["hangup", "silence"])
async def test_lmtp_session_lost_part_way_through_the_replies_delivers_each_recipient_once(
    make_rig: RigFactory, cut: Step
) -> None:
    """The primary answers 250 for alice, then the session dies before bob's reply: alice's delivery
    stands (retrying it would put a second copy in her mailbox); bob and carol are retried, marked as
    unanswered after DATA: the one window in which the primary may already hold their copies (the
    fake primary counts an unanswered recipient as delivered, as Dovecot's LMTP may have)."""
    rig = await make_rig(protocol="lmtp", data_timeout=1.0, command_timeout=1.0)
    rig.fake.on(f"dot:{ALICE}", "250 2.0.0 Ok", times=1)
    rig.fake.on(f"dot:{BOB}", cut, times=1)
    rig.fake.on(f"dot:{CAROL}", "250 2.0.0 Ok", times=1)
    m = await rig.send("part-way", (ALICE, BOB, CAROL))
    await until(lambda: len(rig.outcomes_for(m)) >= 3)
    first = {o.rcpt: (o.state, o.attempts) for o in rig.outcomes_for(m)[:3]}
    assert first == {ALICE: (RcptState.DELIVERED, 1), BOB: (RcptState.QUEUED, 1), CAROL: (RcptState.QUEUED, 1)}
    for rcpt in (BOB, CAROL):
        assert "no reply to the end of data" in rig.outcomes_for(m, rcpt)[0].reply

    await rig.settled(m)
    assert rig.states(m) == {ALICE: ("delivered", 1), BOB: ("delivered", 2), CAROL: ("delivered", 2)}
    per_rcpt = [r for c in rig.copies(m) for r in c.rcpts]
    assert per_rcpt.count(ALICE) == 1, per_rcpt


# -- P16: a hostile primary -----------------------------------------------------------------------

HOSTILE: list[tuple[str, Step]] = [
    ("banner", Endless(b"220-hello\r\n")),
    ("ehlo", Endless()),
    ("mail", Raw(b"abc this is not a reply\r\n")),
    ("rcpt", Raw(b"\xff\xfe\xfd\x80 8-bit garbage\r\n")),
    ("rcpt", Raw(b"250 2.1.5 Ok\r\n250 2.0.0 and an unsolicited one\r\n")),  # answers DATA before it is sent
    ("data", Raw(b"250 " + b"x" * 100_000 + b"\r\n")),  # an over-long line
    ("dot", Raw(b"354 go on\r\n")),  # a reply that is no answer to the dot
    ("data", "250 2.0.0 Ok"),  # "accepted" before the body was sent
    ("rset", "554 5.5.1 not now"),  # about RSET, not about the recipients
]


@pytest.mark.parametrize("protocol", ["smtp", "lmtp"])
@pytest.mark.parametrize(
    ("stage", "step"),
    HOSTILE,
    ids=[
        "endless-banner",
        "endless-ehlo",
        "non-numeric",
        "8bit-garbage",
        "unsolicited",
        "overlong-line",
        "354-after-dot",
        "250-to-DATA",
        "554-to-RSET",
    ],
)
async def test_a_hostile_reply_keeps_the_message_queued_and_the_worker_alive(
    make_rig: RigFactory, protocol: str, stage: str, step: Step
) -> None:
    rig = await make_rig(protocol=protocol, command_timeout=1.0)
    assert rig.runner is not None
    if stage == "rset":  # RSET only comes with the second message on a connection
        warmup = await rig.send("warm-up")
        await rig.settled(warmup)
    rig.fake.on(stage, step, times=1)
    m = await rig.send("victim")
    await until(lambda: len(rig.outcomes_for(m)) >= 1)
    first = rig.outcomes_for(m)[0]
    assert (first.state, first.attempts) == (RcptState.QUEUED, 1), first
    assert 400 <= int(first.reply[:3]) < 500, first.reply  # unclear means temporary: no bounce, no loss

    later = await rig.send("later")  # the worker keeps working
    await rig.settled(m, later)
    assert rig.states(m)[ALICE][0] == "delivered"
    assert rig.states(later) == {ALICE: ("delivered", 1)}
    assert len(rig.copies(m)) == 1 and len(rig.copies(later)) == 1
    assert rig.dsns() == []
    assert all(not w.done() for w in rig.runner.workers)


async def test_8bit_text_in_a_250_reply_is_recorded_and_not_delivered_again(rig: Rig) -> None:
    rig.fake.on("dot", Raw(b"250 2.0.0 Ok \xe9t\xe9 \xff\r\n"), times=1)
    m = await rig.send("latin-1 reply")
    await until(lambda: len(rig.outcomes_for(m)) >= 1 or len(rig.copies(m)) > 1)
    later = await rig.send("later")
    await rig.settled(later)
    assert rig.states(m) == {ALICE: ("delivered", 1)}
    assert rig.last_reply(m, ALICE).startswith("250 2.0.0 Ok")


# -- backoff ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "delay"),
    [
        *[(0, 60), (1, 60), (2, 120), (3, 240), (4, 480), (5, 960), (6, 1920), (7, 3600), (8, 3600), (50, 3600)],
        *[(1100, 3600), (10**6, 3600)],  # a long outage (many attempts) must not overflow a float
    ],
)
def test_backoff_is_exponential_and_capped(attempts: int, delay: float) -> None:
    settings = QueueSettings(retry_initial=60, retry_max=3600)
    assert backoff(settings, attempts) == delay


def test_backoff_schedule_with_test_settings() -> None:
    settings = QueueSettings(**QUEUE)
    assert [backoff(settings, n) for n in range(1, 7)] == [0.05, 0.1, 0.2, 0.2, 0.2, 0.2]


async def test_an_unexpected_error_while_settling_never_resends_what_the_primary_took(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_settle(*args: object, **kw: object) -> None:
        raise RuntimeError("bug while settling")

    monkeypatch.setattr(rig.runner, "_settle", broken_settle)
    m = await rig.send("settle-bug")
    await rig.fake.wait_for(lambda: len(rig.fake.messages) >= 1)
    async with asyncio.timeout(10):
        while rig.runner.messages.get(m.id) is not None:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)  # ten retry intervals (retry_initial 0.05 s): nothing may be sent again
    assert len(rig.fake.messages) == 1
    assert rig.states(m) == {ALICE: ("delivered", 1)}  # and the store knows it
