"""Notifications through the real queue to a fake smarthost, and through Apprise to an HTTP sink.

announce() sends exactly one notification per user and destination, with the
right content in each mode, idempotently, and a notifier cancelled mid-way and
replaced by a new one on the same store sends what was left, nothing twice.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fake_primary import FakePrimary
from http_sink import HTTPSink
from notify_rig import Rig, parse, settings, users

from mailstandby.config import StoreSettings
from mailstandby.core.model import Envelope
from mailstandby.directory.base import NoticeKind, Preferences, User
from mailstandby.notify.notifier import queue_id
from mailstandby.store.base import NewMessage


@pytest.fixture
async def rig(tmp_path: Path, store_settings: StoreSettings) -> AsyncIterator[Rig]:
    smarthost, http = FakePrimary(), HTTPSink()
    await smarthost.start()
    await http.start()
    r = Rig(tmp_path / "data", smarthost, http, settings(), users(http.port), store_settings=store_settings)
    try:
        yield r
    finally:
        await r.stop()
        await http.stop()
        await smarthost.stop()


async def test_failover_reaches_every_mode_of_every_user_once(rig: Rig) -> None:
    notifier = await rig.start()
    people = list(rig.people.values())
    added = await notifier.announce(NoticeKind.FAILOVER, people, "failover-17")
    # alice: email + SMS gateway + URL; bob: email; carol: URL; erin: email; fred: SMS gateway + URL; dave: nothing
    assert added == 8
    status = await rig.settled()
    assert {s["state"] for s in status} == {"sent"}
    assert sorted(r for m in rig.smarthost.messages for r in m.rcpts) == sorted(
        ["alice@home.test", "15550001@sms.test", "bob@home.test", "erin@home.test", "15550006@sms.test"]
    )
    assert sorted(p.path for p in rig.http.delivered) == ["/alice", "/carol", "/fred"]
    assert {s["queue_state"] for s in status if s["mode"] != "apprise"} == {"delivered"}

    [full] = rig.mail_to("alice@home.test")
    assert full.sender == "mailstandby@corp.test"  # our own bounce address: SPF holds for our domain
    msg = parse(full.body)
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["To"] == "alice@home.test"
    assert msg["Subject"] == "Corp mail: use the standby service now"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for part in (text, html):
        assert "Alice Liddell" in part and "mail.corp.test" in part and "993" in part and "587" in part
        assert "alice@corp.test" in part
    link = re.search(r"https://standby\.corp\.test/setup/[\w-]+", text)
    assert link is not None and link.group(0) in html
    assert "You have no standby password yet" in text

    [sms] = rig.mail_to("15550001@sms.test")
    short = parse(sms.body)
    assert short.get_content_type() == "text/plain"
    body = short.get_content().strip()
    assert "mail.corp.test" in body and "IMAP 993" in body and len(body) < 300

    [push] = rig.http.to("/alice")
    assert "mail.corp.test" in push.json["message"] and push.json["title"] == msg["Subject"]

    ready = await notifier.readiness()
    assert ready["unreachable"] == 1 and ready["users"][3]["address"] == "dave@corp.test"
    assert ready["users"][3]["gaps"] == ["no-alternate-contact", "no-device", "no-standby-password"]
    # the same occurrence again (the controller repeating itself, or after its own restart): nothing new
    assert await notifier.announce(NoticeKind.FAILOVER, people, "failover-17") == 0
    await rig.settled()
    assert len(rig.smarthost.messages) == 5 and len(rig.http.delivered) == 3


async def test_failback_notice_respects_preferences(rig: Rig) -> None:
    notifier = await rig.start()
    people = [rig.people[n] for n in ("alice", "bob", "carol", "dave")]
    assert await notifier.announce(NoticeKind.FAILBACK, people, "failback-17") == 4
    await rig.settled()
    assert sorted(r for m in rig.smarthost.messages for r in m.rcpts) == [
        "15550001@sms.test",
        "alice@home.test",
        "bob@home.test",
    ]
    assert [p.path for p in rig.http.delivered] == ["/alice"]  # carol does not want the failback notice
    msg = parse(rig.mail_to("bob@home.test")[0].body)
    assert msg["Subject"] == "Corp mail is back"
    assert "working again" in msg.get_body(("plain",)).get_content()
    assert "setup" not in msg.get_body(("plain",)).get_content()  # no link on failback
    assert "Corp mail is back" in rig.http.delivered[0].json["message"]


async def test_a_new_notifier_after_a_cancelled_one_sends_the_rest_and_nothing_twice(rig: Rig) -> None:
    notifier = await rig.start(concurrency=1)
    rig.http.plan = ["stall"]  # alice's push provider hangs: the notifier is stuck there
    people = [rig.people[n] for n in ("alice", "bob", "carol")]
    await notifier.announce(NoticeKind.FAILOVER, people, "failover-18")
    await rig.http.wait_for(lambda: len(rig.http.refused) == 1)
    before = {s["destination"]: s["state"] for s in await notifier.status()}
    assert before["bob@home.test"] == "pending" and before["alice@home.test"] == "sent"
    await rig.stop()  # cancelled mid-delivery ("crash"); the hung request is never answered
    rig.http.release.set()

    notifier = await rig.start()
    status = await rig.settled()
    assert {s["state"] for s in status} == {"sent"}
    assert sorted(r for m in rig.smarthost.messages for r in m.rcpts) == [
        "15550001@sms.test",
        "alice@home.test",
        "bob@home.test",
    ]
    assert sorted(p.path for p in rig.http.delivered) == ["/alice", "/carol"]
    assert [s["attempts"] for s in status if s["destination"].startswith("url:")] == [1, 1]


async def test_a_failing_provider_is_retried_and_its_error_recorded(rig: Rig) -> None:
    notifier = await rig.start()
    rig.http.plan = [503, 503]
    await notifier.announce(NoticeKind.FAILOVER, [rig.people["carol"]], "failover-19")
    [row] = await rig.settled()
    assert row["state"] == "sent" and row["attempts"] == 3
    assert len(rig.http.refused) == 2 and len(rig.http.delivered) == 1
    assert "url:" in row["destination"] and "json" not in row["destination"]  # URLs (secrets) are not stored


async def test_a_provider_failing_for_good_ends_failed_with_the_error(tmp_path: Path) -> None:
    smarthost, http = FakePrimary(), HTTPSink()
    await smarthost.start()
    await http.start()
    r = Rig(tmp_path / "data", smarthost, http, settings(max_attempts=2), users(http.port))
    try:
        notifier = await r.start()
        http.plan = [500, 500, 500]
        await notifier.announce(NoticeKind.FAILOVER, [r.people["carol"]], "failover-20")
        [row] = await r.settled()
        assert row["state"] == "failed" and row["attempts"] == 2 and row["last_error"]
    finally:
        await r.stop()
        await http.stop()
        await smarthost.stop()


async def test_quiet_hours_hold_sms_and_push_but_not_email(rig: Rig) -> None:
    alice = rig.people["alice"]
    rig.people["alice"] = User(
        alice.address,
        alternates=alice.alternates,
        notify_urls=alice.notify_urls,
        devices=alice.devices,
        preferences=Preferences(quiet_hours=_all_day()),
    )
    notifier = await rig.start()
    await notifier.announce(NoticeKind.FAILOVER, [rig.people["alice"]], "failover-21")
    await rig.smarthost.wait_for(lambda: len(rig.smarthost.messages) == 1)
    rows = await rig.wait_status(lambda rows: all(r["attempts"] or r["last_error"] for r in rows))
    status = {s["mode"]: s for s in rows}
    assert status["email"]["state"] == "sent"
    assert status["apprise"]["state"] == "pending" and status["apprise"]["last_error"] == "quiet hours"
    assert status["sms-email"]["next_attempt"] > 0 and rig.http.delivered == []


def _all_day() -> tuple[int, int]:
    """Quiet hours covering the current hour (from this hour to the one after next)."""
    hour = time.localtime().tm_hour
    return hour, (hour + 2) % 24


async def test_a_crash_between_queueing_an_email_and_recording_it_sends_one_copy(rig: Rig) -> None:
    """The notifier queued bob's notice, then died before recording it as sent."""
    notifier = await rig.start(deliver=False)
    assert rig.store is not None and rig.runner is not None
    await notifier.announce(NoticeKind.FAILOVER, [rig.people["bob"]], "failover-22")
    [row] = await notifier.status()
    queued = await rig.store.accept(
        NewMessage(
            queue_id(row["id"]), Envelope("mailstandby@corp.test", ["bob@home.test"]), b"Subject: x\r\n\r\nx\r\n", 0.0
        )
    )
    rig.runner.submit(queued)
    await notifier.start()
    [row] = await rig.settled()
    assert row["state"] == "sent" and row["message_id"] == queue_id(row["id"]) and row["queue_state"] == "delivered"
    assert len(rig.mail_to("bob@home.test")) == 1
