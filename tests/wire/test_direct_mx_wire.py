"""Mail to other domains during an outage, in the running standby, resolved by a real BIND 9.

No smarthost is configured. Before the failover, a bounce to an outside
sender goes through the primary as always. After an administrator's
failover, the users' outage notices for their alternate addresses at
ext.test reach ext.test's MX host (a sink on an ephemeral port, `mx_port`)
while the primary sees none of it; a notice for an alternate at a null-MX
domain fails at once with 556 5.1.10 instead of waiting for the primary.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.component.fake_primary import FakePrimary
from tests.support.dns import Bind
from tests.support.standby import Standby

ADMIN_PW = "correct horse battery staple"
EXT_ZONE = """\
@       IN MX 10 mx
mx      IN A  127.0.0.1
null    IN MX 0 .
"""


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[Bind]:
    with Bind(tmp_path / "bind", extra_zones={"ext.test": EXT_ZONE}) as b:
        yield b


@pytest.fixture
async def sinks() -> AsyncIterator[tuple[FakePrimary, FakePrimary]]:
    """(the primary, ext.test's MX host)."""
    primary, mx = FakePrimary(), FakePrimary()
    await primary.start()
    await mx.start()
    yield primary, mx
    await primary.stop()
    await mx.stop()


def send(port: int, sender: str, rcpt: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.sendmail(sender, [rcpt], f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n\r\nhello\r\n")


async def test_outage_notices_reach_other_domains_by_mx_without_a_smarthost(
    tmp_path: Path, bind: Bind, sinks: tuple[FakePrimary, FakePrimary]
) -> None:
    primary, mx = sinks
    standby = Standby(
        tmp_path / "standby",
        primary_port=primary.port,
        outbound={"resolver": f"127.0.0.1:{bind.port}", "mx_port": mx.port, "connect_timeout": 5.0},
        notify={"setup_url": "https://standby.corp.test", "organization": "Corp"},
    )
    config = standby.config_path.read_text()
    alternates = {"alice": "alice@ext.test", "bob": "bob@null.ext.test"}
    for user, alternate in alternates.items():
        config = config.replace(
            f'address = "{user}@corp.test"\n', f'address = "{user}@corp.test"\nalternates = ["{alternate}"]\n'
        )
    standby.config_path.write_text(config)
    primary.on("rcpt:carol@corp.test", "550 5.1.1 no such mailbox")
    await asyncio.to_thread(standby.start)
    try:
        # NORMAL: the bounce for carol goes to the outside sender through the primary.
        await asyncio.to_thread(send, standby.port, "partner@ext.test", "carol@corp.test", "before")
        await primary.wait_for(lambda: any(m.rcpts == ["partner@ext.test"] for m in primary.messages), timeout=60)
        (bounce,) = [m for m in primary.messages if m.rcpts == ["partner@ext.test"]]
        assert bounce.sender == "" and b"5.1.1" in bounce.body
        assert mx.connections == 0

        await asyncio.to_thread(standby.add_admin, "admin", ADMIN_PW)
        done = await asyncio.to_thread(standby.cli, "failover", "--reason", "primary down", password=ADMIN_PW)
        assert done.returncode == 0, done.stderr
        await mx.wait_for(lambda: any(m.rcpts == ["alice@ext.test"] for m in mx.messages), timeout=60)
        assert [m.rcpts for m in mx.messages] == [["alice@ext.test"]]

        def failed_at_once() -> bool:
            rows = [d for d in standby.deliveries() if d["rcpt"] == "bob@null.ext.test"]
            return bool(rows) and rows[0]["state"] == "failed"

        await asyncio.to_thread(standby.wait_until, failed_at_once, 60, "bob's notice refused by the null MX")
        (row,) = [d for d in standby.deliveries() if d["rcpt"] == "bob@null.ext.test"]
        assert row["last_reply"].startswith("556 5.1.10") and row["attempts"] == 1
        # The DSN of bob's notice goes to our own notify sender, an address of our domain only the
        # primary can know: to the primary, never out by MX.
        await primary.wait_for(lambda: len(primary.messages) == 2, timeout=60)
        assert [m.rcpts for m in primary.messages] == [["partner@ext.test"], ["mailstandby@corp.test"]]
    finally:
        await asyncio.to_thread(standby.stop)
