"""Forwarding during an outage, through the real queue: whole messages to alternate addresses,
summaries to every mode, never bounces or automatic mail, and loops stopped by the hop limit.

The queue runner will call `Forwarder.forward()` when it files an outage message in a
standby mailbox; here the test plays that part, feeding each message the fake
primary receives for a standby user back into the forwarder as the runner would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fake_primary import FakePrimary
from http_sink import HTTPSink
from notify_rig import Rig, parse, settings, users

from mailstandby.directory.base import Forwarding, Preferences, User
from mailstandby.notify.forward import ForwardReason

MESSAGE = (
    b"From: Sender <sender@ext.test>\r\nTo: erin@corp.test\r\nSubject: Quarterly figures\r\n"
    b"Message-ID: <q1@ext.test>\r\n\r\nHi Erin,\r\nthe figures are attached. Regards, S.\r\n"
)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    smarthost, http = FakePrimary(), HTTPSink()
    await smarthost.start()
    await http.start()
    ann = User("ann@corp.test", alternates=("ben@corp.test",), preferences=Preferences(forward=Forwarding.FULL))
    ben = User("ben@corp.test", alternates=("ann@corp.test",), preferences=Preferences(forward=Forwarding.FULL))
    r = Rig(tmp_path / "data", smarthost, http, settings(), users(http.port, ann=ann, ben=ben))
    try:
        await r.start()
        yield r
    finally:
        await r.stop()
        await http.stop()
        await smarthost.stop()


async def test_full_forwarding_resends_the_message_from_our_bounce_address(rig: Rig) -> None:
    assert rig.forwarder is not None
    erin = rig.people["erin"]
    p = await rig.forwarder.forward(erin, MESSAGE, "sender@ext.test", message_id="Q1")
    assert p.reason is ForwardReason.FULL and p.full_to == ("erin@home.test",)
    await rig.forwarder.forward(erin, MESSAGE, "sender@ext.test", message_id="Q1")  # again (after a crash)
    await rig.settled()
    [copy] = rig.smarthost.messages
    assert copy.rcpts == ["erin@home.test"] and copy.sender == "mailstandby@corp.test"
    assert copy.body.endswith(MESSAGE)  # the message itself, unchanged
    msg = parse(copy.body)
    assert msg["Subject"] == "Quarterly figures" and msg["From"] == "Sender <sender@ext.test>"
    assert msg["Resent-To"] == "erin@home.test" and msg["Resent-From"] == "mailstandby@corp.test"
    assert msg["X-Mailstandby-Forwarded"].startswith("for erin@corp.test by standby.corp.test")


async def test_summary_forwarding_reaches_every_mode_in_a_short_form(rig: Rig) -> None:
    assert rig.forwarder is not None
    fred = rig.people["fred"]
    p = await rig.forwarder.forward(fred, MESSAGE, "sender@ext.test", message_id="Q2")
    assert p.reason is ForwardReason.SUMMARY
    await rig.settled()
    [push] = rig.http.to("/fred")
    text = push.json["message"]
    assert text.startswith("Mail from Sender <sender@ext.test>: Quarterly figures | Hi")
    assert len(text) <= 60  # fred's summary_length
    [sms] = rig.mail_to("15550006@sms.test")
    body = parse(sms.body).get_content().strip()
    assert body.startswith("Mail from Sender") and len(body) <= 60
    assert parse(sms.body)["Auto-Submitted"] == "auto-generated"


@pytest.mark.parametrize(
    ("sender", "headers", "reason"),
    [
        ("", b"", ForwardReason.NULL_SENDER),
        ("mailer-daemon@ext.test", b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n",
         ForwardReason.DELIVERY_REPORT),
        ("sender@ext.test", b"Auto-Submitted: auto-replied\r\n", ForwardReason.AUTO_SUBMITTED),
        ("sender@ext.test", b"X-Autoreply: yes\r\n", ForwardReason.AUTO_SUBMITTED),
        ("sender@ext.test", b"Precedence: bulk\r\n", ForwardReason.BULK),
        ("list-bounces@ext.test", b"List-Id: <team.ext.test>\r\n", ForwardReason.MAILING_LIST),
    ],
)  # fmt: skip
async def test_bounces_and_automatic_mail_are_not_forwarded(
    rig: Rig, sender: str, headers: bytes, reason: ForwardReason
) -> None:
    assert rig.forwarder is not None
    for name in ("erin", "fred"):
        p = await rig.forwarder.forward(rig.people[name], headers + MESSAGE, sender, message_id=f"B-{name}")
        assert p.reason is reason and not p.sends
    await rig.settled()
    assert rig.smarthost.messages == [] and rig.http.delivered == [] and await rig.notifier.status() == []  # type: ignore[union-attr]


async def test_two_users_forwarding_to_each_other_stop_at_the_hop_limit(rig: Rig) -> None:
    """ann forwards to ben@corp.test, ben to ann@corp.test: a loop inside the standby."""
    assert rig.forwarder is not None
    user, body, sender = rig.people["ann"], MESSAGE, "sender@ext.test"
    reasons = []
    for hop in range(10):
        p = await rig.forwarder.forward(user, body, sender, message_id=f"L{hop}")
        reasons.append(p.reason)
        if not p.sends:
            break
        await rig.smarthost.wait_for(lambda n=hop: len(rig.smarthost.messages) == n + 1)
        arrived = rig.smarthost.messages[-1]  # delivered to the other user: the runner would call us again
        [rcpt] = arrived.rcpts
        user, body, sender = rig.people[rcpt.partition("@")[0]], arrived.body, arrived.sender
    limit = rig.settings.forward_hop_limit
    assert reasons == [ForwardReason.FULL] * limit + [ForwardReason.HOP_LIMIT]
    assert len(rig.smarthost.messages) == limit
