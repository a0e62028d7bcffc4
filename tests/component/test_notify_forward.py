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

from mailstandby.config import StoreSettings
from mailstandby.directory.base import Forwarding, NoticeKind, Preferences, User
from mailstandby.notify.forward import ForwardReason

MESSAGE = (
    b"From: Sender <sender@ext.test>\r\nTo: erin@corp.test\r\nSubject: Quarterly figures\r\n"
    b"Message-ID: <q1@ext.test>\r\n\r\nHi Erin,\r\nthe figures are attached. Regards, S.\r\n"
)


@pytest.fixture
async def rig(tmp_path: Path, store_settings: StoreSettings) -> AsyncIterator[Rig]:
    smarthost, http = FakePrimary(), HTTPSink()
    await smarthost.start()
    await http.start()
    ann = User("ann@corp.test", alternates=("ben@corp.test",), preferences=Preferences(forward=Forwarding.FULL))
    ben = User("ben@corp.test", alternates=("ann@corp.test",), preferences=Preferences(forward=Forwarding.FULL))
    r = Rig(
        tmp_path / "data",
        smarthost,
        http,
        settings(),
        users(http.port, ann=ann, ben=ben),
        store_settings=store_settings,
    )
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


async def test_a_hostile_message_cannot_inject_headers_into_what_we_send(rig: Rig) -> None:
    """RELIABILITY P8, through the whole path: summary forward and a notice whose subject template
    shows a hostile display name; the sink's copies carry our headers only."""
    assert rig.forwarder is not None and rig.notifier is not None
    hostile = (
        b"From: =?UTF-8?Q?Eve=0D=0ABcc:_evil@example.test?= <eve@ext.test>\r\n"
        b"Subject: A=?UTF-8?Q?=0A?=Bcc: evil@example.test\r\n\r\nhello\r\n"
    )
    mallory = User(
        "mallory@corp.test",
        display_name="M=?UTF-8?Q?=0A?=Bcc: evil@example.test\r\nBcc: evil2@example.test",
        alternates=("mallory@home.test",),
        devices=rig.people["fred"].devices,
        preferences=Preferences(forward=Forwarding.SUMMARY),
    )
    rig.people["mallory"] = mallory
    await rig.stop()
    override = rig.data_dir.parent / "templates"
    override.mkdir()
    (override / "failover.subject").write_text("Hello {{ user.display_name }}")
    rig.settings = settings(templates=override)
    notifier = await rig.start()
    await rig.forwarder.forward(mallory, hostile, "eve@ext.test", message_id="H1")
    await notifier.announce(NoticeKind.FAILOVER, [mallory], "failover-40")
    await rig.settled()
    assert len(rig.smarthost.messages) == 4  # summary + notice, each to the address and the SMS gateway
    for m in rig.smarthost.messages:
        msg = parse(m.body)
        assert msg["Bcc"] is None and len(msg.get_all("Subject")) == 1
        assert m.rcpts in (["mallory@home.test"], ["15550006@sms.test"])
        ours = {"received", "from", "to", "subject", "date", "message-id", "auto-submitted", "x-mailstandby-notice"}
        assert {k.lower() for k in msg} - ours <= {"content-type", "content-transfer-encoding", "mime-version"}


async def test_summaries_are_rate_limited_per_user(tmp_path: Path) -> None:
    smarthost, http = FakePrimary(), HTTPSink()
    await smarthost.start()
    await http.start()
    r = Rig(tmp_path / "data", smarthost, http, settings(forward_summaries_per_hour=3), users(http.port))
    try:
        await r.start()
        assert r.forwarder is not None
        fred = r.people["fred"]
        reasons = [
            (await r.forwarder.forward(fred, MESSAGE, "s@ext.test", message_id=f"F{n}")).reason for n in range(5)
        ]
        assert reasons == [ForwardReason.SUMMARY] * 3 + [ForwardReason.RATE_LIMITED] * 2
        again = await r.forwarder.forward(fred, MESSAGE, "s@ext.test", message_id="F1")  # a repeat is not a new one
        assert again.reason is ForwardReason.SUMMARY
        await r.settled()
        assert len(http.to("/fred")) == 3 and len(r.mail_to("15550006@sms.test")) == 3
    finally:
        await r.stop()
        await http.stop()
        await smarthost.stop()
