"""The primary answering 421, 4xx or 5xx at each stage, hanging up, or hanging mid-DATA and after
the dot, for SMTP and LMTP (RELIABILITY D10, D11; issue 14 item 4). A scripted fake primary
(tests/component/fake_primary.py) fails the first attempt at one stage; the queue runner, with the
look-up of deliveries in doubt answered from what the fake recorded, must end with the message
delivered exactly once, or (a 5xx to the transaction) failed with one DSN to the sender: never
lost, never doubled. Each case prints its counts."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.component.fake_primary import HANGUP, Delay, FakePrimary, Step

from mailstandby.config import PrimarySettings, QueueSettings, StoreSettings
from mailstandby.core.model import Envelope, new_queue_id
from mailstandby.directory.base import User
from mailstandby.directory.static import StaticDirectory
from mailstandby.queue.inflight import InDoubt
from mailstandby.queue.runner import QueueRunner
from mailstandby.routing import Router
from mailstandby.smtp.lmtp import LMTPConnection
from mailstandby.smtp.relay import PrimaryConnection, RelayConnection
from mailstandby.store.base import NewMessage
from mailstandby.store.sqlite import SQLiteStore

ALICE = "alice@corp.test"
HOSTNAME = "standby.corp.test"
STEPS: dict[str, Step] = {
    "421": "421 4.3.2 closing",
    "451": "451 4.3.0 try later",
    "554": "554 5.3.0 refused",
    "hangup": HANGUP,
    "hang": Delay(5.0, "250 2.0.0 late"),
}
STAGES = ["banner", "ehlo", "mail", "rcpt", "data", "dot"]
PERMANENT_AT = {"mail", "rcpt", "data", "dot"}  # a 5xx there refuses the message (before: the session)


class FakeLookup:
    """The primary mailbox, as the fake recorded it: a message is there when the fake committed it."""

    def __init__(self, fake: FakePrimary) -> None:
        self.fake = fake

    async def delivered(self, user: str, queue_id: str) -> bool:
        return any(queue_id.encode() in m.body and user in m.rcpts for m in self.fake.messages)


@pytest.fixture
async def fake_smtp() -> AsyncIterator[FakePrimary]:
    fake = FakePrimary()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def fake_lmtp() -> AsyncIterator[FakePrimary]:
    fake = FakePrimary(lmtp=True)
    await fake.start()
    yield fake
    await fake.stop()


def dsns(data_dir: Path) -> int:
    db = sqlite3.connect(data_dir / "mailstandby.db")
    try:
        return db.execute("SELECT count(*) FROM messages WHERE origin = 'dsn'").fetchone()[0]
    finally:
        db.close()


@pytest.mark.parametrize("protocol", ["smtp", "lmtp"])
@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("what", list(STEPS))
async def test_the_primary_failing_at_each_stage_loses_and_doubles_nothing(
    tmp_path: Path, fake_smtp: FakePrimary, fake_lmtp: FakePrimary, protocol: str, stage: str, what: str
) -> None:
    fake = fake_lmtp if protocol == "lmtp" else fake_smtp
    fake.on(stage, STEPS[what], times=1)
    primary = PrimarySettings(
        host="127.0.0.1", port=fake.port, protocol=protocol, tls="none", connect_timeout=2.0, command_timeout=0.5
    )
    primary = primary.model_copy(update={"data_timeout": 0.5})
    queue = QueueSettings(concurrency=1, retry_initial=0.05, retry_max=0.2)

    def connect() -> PrimaryConnection:
        return LMTPConnection(primary, HOSTNAME) if protocol == "lmtp" else RelayConnection(primary, HOSTNAME)

    store = SQLiteStore(tmp_path, StoreSettings())
    await store.open()
    router = Router(StaticDirectory(domains=["corp.test"], users=[User(ALICE)]))
    in_doubt = InDoubt(store, FakeLookup(fake), router.user_of, time.time)
    runner = QueueRunner(store, router, connect, queue, hostname=HOSTNAME, in_doubt=in_doubt)
    await runner.start()
    try:
        qid = new_queue_id()
        body = (
            f"Received: from client ([192.0.2.1])\r\n\tby {HOSTNAME} (mailstandby) with ESMTP id {qid};\r\n"
            f"\tMon, 7 Dec 2026 10:00:00 +0000\r\nSubject: {stage}-{what}\r\n\r\nbody\r\n"
        ).encode()
        runner.submit(await store.accept(NewMessage(qid, Envelope("s@ext.test", [ALICE]), body, time.time())))
        async with asyncio.timeout(20):
            while qid in runner.messages:
                await asyncio.sleep(0.01)
        copies = len([m for m in fake.messages if qid.encode() in m.body and ALICE in m.rcpts])  # not the DSN
        (state,) = [d["state"] for d in store.deliveries(qid)]
        bounced = dsns(tmp_path)
        lost = int(copies == 0 and not (state == "failed" and bounced == 1))
        dup = max(0, copies - 1)
        print(f"faults primary {protocol} {stage} {what}: acked=1 lost={lost} dup={dup} state={state} dsn={bounced}")
        assert lost == 0 and dup == 0
        refused = what == "554" and stage in PERMANENT_AT
        assert (state, copies, bounced) == (("failed", 0, 1) if refused else ("delivered", 1, 0))
    finally:
        await runner.stop(grace=0)
        await store.close()
