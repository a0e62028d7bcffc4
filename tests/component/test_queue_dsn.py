"""The DSN extension (RFC 3461) end to end: the parameters a sender gives at MAIL and RCPT are
stored with the message, survive a restart, and shape the DSNs the queue sends (RFC 3464)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import test_queue_runner
from smtp_harness import Gateway, message
from test_queue_runner import ALICE, BOB, CAROL, SENDER, Rig, RigFactory, parse, status_groups

from mailstandby.config import StoreSettings
from mailstandby.core.model import Envelope, RcptDsn, new_queue_id
from mailstandby.store.base import NewMessage
from mailstandby.store.sqlite import SQLiteStore

make_rig = test_queue_runner.make_rig  # the queue runner's rig fixtures, shared
rig = test_queue_runner.rig

BODY = b"From: <s@example.test>\r\nSubject: dsn\r\n\r\nthe secret body\r\n"


async def send(rig: Rig, dsn: dict[str, RcptDsn], *, ret: str = "", envid: str = "") -> NewMessage:
    assert rig.store is not None and rig.runner is not None
    env = Envelope(SENDER, [ALICE, BOB], ret=ret, envid=envid, dsn=dsn)
    m = NewMessage(new_queue_id(), env, BODY, time.time())
    rig.runner.submit(await rig.store.accept(m))
    return m


def bounces(rig: Rig) -> list[bytes]:
    return [r.body for r in rig.fake.messages if r.sender == ""]


async def test_notify_never_suppresses_the_bounce(rig: Rig) -> None:
    rig.fake.on(f"rcpt:{BOB}", "550 5.1.1 no such user")
    m = await send(rig, {BOB: RcptDsn(frozenset({"NEVER"}))})
    await rig.settled(m)
    assert rig.states(m) == {ALICE: ("delivered", 1), BOB: ("failed", 1)}
    assert rig.dsns() == []


async def test_notify_success_gets_a_relayed_dsn_with_orcpt_and_envid(rig: Rig) -> None:
    rig.fake.on(f"rcpt:{BOB}", "550 5.1.1 no such user")
    dsn = {ALICE: RcptDsn(frozenset({"SUCCESS"}), "rfc822;Alice@Corp.Test"), BOB: RcptDsn(frozenset({"SUCCESS"}))}
    m = await send(rig, dsn, envid="QQ314159")
    await rig.settled(m)
    await rig.fake.wait_for(lambda: len(bounces(rig)) == 1)
    (report,) = [parse(b) for b in bounces(rig)]
    assert report["Subject"] == "Successful Mail Delivery Report"
    (group,) = status_groups(report)  # BOB failed, but asked only about success: not reported
    assert group["Action"] == "relayed"
    assert group["Final-Recipient"] == f"rfc822; {ALICE}"
    assert group["Original-Recipient"] == "rfc822; Alice@Corp.Test"
    assert group["Status"].startswith("2.")
    assert b"Original-Envelope-Id: QQ314159" in bounces(rig)[0]
    assert b"the secret body" not in bounces(rig)[0]  # no RET: headers only


async def test_default_notify_reports_failures_only(rig: Rig) -> None:
    rig.fake.on(f"rcpt:{BOB}", "550 5.1.1 no such user")
    m = await send(rig, {})
    await rig.settled(m)
    await rig.fake.wait_for(lambda: len(bounces(rig)) == 1)
    (group,) = status_groups(parse(bounces(rig)[0]))
    assert (group["Action"], group["Final-Recipient"]) == ("failed", f"rfc822; {BOB}")


async def test_ret_full_returns_the_message_and_ret_hdrs_the_headers(rig: Rig) -> None:
    rig.fake.on(f"rcpt:{ALICE}", "550 5.1.1 no such user")
    rig.fake.on(f"rcpt:{BOB}", "550 5.1.1 no such user")
    full = await send(rig, {}, ret="FULL")
    await rig.settled(full)
    await rig.fake.wait_for(lambda: len(bounces(rig)) == 1)
    report = parse(bounces(rig)[0])
    (returned,) = [p for p in report.walk() if p.get_content_type() == "message/rfc822"]
    assert b"the secret body" in bounces(rig)[0]
    hdrs = await send(rig, {}, ret="HDRS")
    await rig.settled(hdrs)
    await rig.fake.wait_for(lambda: len(bounces(rig)) == 2)
    second = parse(bounces(rig)[1])
    assert [p for p in second.walk() if p.get_content_type() == "text/rfc822-headers"]
    assert b"the secret body" not in bounces(rig)[1] and b"Subject: dsn" in bounces(rig)[1]
    assert returned is not None


async def test_dsn_requests_survive_a_restart(tmp_path: Path) -> None:
    dsn = {ALICE: RcptDsn(frozenset({"SUCCESS", "FAILURE"}), "rfc822;a@b.test")}
    env = Envelope(SENDER, [ALICE, BOB], ret="HDRS", envid="E1", dsn=dsn)
    store = SQLiteStore(tmp_path / "data", StoreSettings())
    await store.open()
    accepted = await store.accept(NewMessage(new_queue_id(), env, BODY, time.time()))
    await store.close()
    store = SQLiteStore(tmp_path / "data", StoreSettings())  # a restart reads it back from disk
    await store.open()
    try:
        (pending,) = await store.pending()
    finally:
        await store.close()
    for m in (accepted, pending):
        assert (m.ret, m.envid) == ("HDRS", "E1")
        assert {r.rcpt: (r.notify, r.orcpt) for r in m.recipients} == {
            ALICE: ("FAILURE,SUCCESS", "rfc822;a@b.test"),
            BOB: ("", ""),
        }


async def test_smtp_parameters_reach_the_store(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test> RET=HDRS ENVID=id+2B1", "250 2.1.0")
    await c.command("RCPT TO:<alice@corp.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice+40corp.test", "250 2.1.5")
    await c.command("RCPT TO:<bob@corp.test>", "250 2.1.5")
    await c.command("DATA", "354 ")
    await c.send(message() + b".\r\n")
    await c.expect("250 2.0.0")
    await c.quit()
    (stored,) = await gw.store.pending()
    assert (stored.ret, stored.envid) == ("HDRS", "id+1")
    assert {r.rcpt: (r.notify, r.orcpt) for r in stored.recipients} == {
        "alice@corp.test": ("FAILURE,SUCCESS", "rfc822;alice@corp.test"),
        "bob@corp.test": ("", ""),
    }


# -- passed on to a next hop that advertises DSN (RFC 3461 §5.2.1) ------------------------------


def mail_and_rcpts(rig: Rig) -> list[str]:
    return [c for c in rig.fake.commands if c.upper().startswith(("MAIL ", "RCPT "))]


@pytest.mark.parametrize("protocol", ["smtp", "lmtp"])
async def test_dsn_parameters_are_passed_on_and_the_next_hop_reports_success(
    make_rig: RigFactory, protocol: str
) -> None:
    rig = await make_rig(protocol=protocol)
    rig.fake.dsn = True
    dsn = {ALICE: RcptDsn(frozenset({"SUCCESS", "FAILURE"}), "rfc822;Alice+Smith=x@Corp.Test")}
    m = await send(rig, dsn, ret="HDRS", envid="Q Q+1")
    await rig.settled(m)
    mail, *rcpts = mail_and_rcpts(rig)
    assert mail.startswith(f"MAIL FROM:<{SENDER}>") and mail.endswith(" RET=HDRS ENVID=Q+20Q+2B1")
    assert rcpts == [
        f"RCPT TO:<{ALICE}> NOTIFY=FAILURE,SUCCESS ORCPT=rfc822;Alice+2BSmith+3Dx@Corp.Test",
        f"RCPT TO:<{BOB}>",  # nothing given, nothing passed on: the next hop applies the same default
    ]
    assert rig.states(m) == {ALICE: ("delivered", 1), BOB: ("delivered", 1)}
    assert rig.dsns() == []  # the next hop owns the success report now


async def test_a_hop_without_dsn_gets_no_parameters_and_we_report_relayed(rig: Rig) -> None:
    m = await send(rig, {ALICE: RcptDsn(frozenset({"SUCCESS"}), "rfc822;a@corp.test")}, ret="FULL", envid="E")
    await rig.settled(m)
    await rig.fake.wait_for(lambda: len(bounces(rig)) == 1)
    assert all("NOTIFY" not in c and "ORCPT" not in c and "RET=" not in c for c in mail_and_rcpts(rig))
    (group,) = status_groups(parse(bounces(rig)[0]))
    assert group["Action"] == "relayed"


# -- NOTIFY=DELAY: one delay notice per recipient, restart or not -------------------------------


def rcpt_lines(rig: Rig, rcpt: str) -> int:
    return sum(1 for c in rig.fake.commands if c.startswith(f"RCPT TO:<{rcpt}>"))


async def test_a_deferred_recipient_gets_one_delay_notice_across_a_restart(make_rig: RigFactory) -> None:
    rig = await make_rig(delay_warning_time=0.3)
    for rcpt in (ALICE, BOB, CAROL):
        rig.fake.on(f"rcpt:{rcpt}", "451 4.2.0 mailbox busy, try later")
    dsn = {BOB: RcptDsn(frozenset({"FAILURE"})), CAROL: RcptDsn(frozenset({"DELAY"}), "rfc822;Carol@Corp.Test")}
    env = Envelope(SENDER, [ALICE, BOB, CAROL], ret="FULL", envid="E7", dsn=dsn)
    assert rig.store is not None and rig.runner is not None
    m = NewMessage(new_queue_id(), env, BODY, time.time())
    rig.runner.submit(await rig.store.accept(m))
    await rig.fake.wait_for(lambda: len(bounces(rig)) == 1)
    report = parse(bounces(rig)[0])
    assert report["Subject"] == "Delayed Mail (still being retried)"
    groups = status_groups(report)  # no NOTIFY means FAILURE,DELAY (RFC 3461 §4.1); BOB asked for failures only
    assert [(g["Final-Recipient"], g["Action"], g["Status"]) for g in groups] == [
        (f"rfc822; {ALICE}", "delayed", "4.2.0"),
        (f"rfc822; {CAROL}", "delayed", "4.2.0"),
    ]
    assert groups[1]["Original-Recipient"] == "rfc822; Carol@Corp.Test"
    assert all(g["Will-Retry-Until"] for g in groups)
    assert [p for p in report.walk() if p.get_content_type() == "text/rfc822-headers"]
    assert b"the secret body" not in bounces(rig)[0]  # a warning returns the headers only, even with RET=FULL
    assert {state for state, _ in rig.states(m).values()} == {"queued"}

    seen = rcpt_lines(rig, ALICE)
    await test_queue_runner.until(lambda: rcpt_lines(rig, ALICE) >= seen + 2)  # deferred again: no second notice
    await rig.stop()
    await rig.start()  # the notice is marked in the store: a restart does not send it again
    seen = rcpt_lines(rig, ALICE)
    await test_queue_runner.until(lambda: rcpt_lines(rig, ALICE) >= seen + 2)
    assert len(bounces(rig)) == 1
    assert len(rig.dsns()) == 1


async def test_no_delay_notice_when_the_warning_time_is_off(make_rig: RigFactory) -> None:
    rig = await make_rig(delay_warning_time=0)
    rig.fake.on("rcpt", "451 4.2.0 mailbox busy, try later", times=3)
    m = await send(rig, {ALICE: RcptDsn(frozenset({"DELAY"}))})
    await rig.settled(m)
    assert rig.dsns() == []
