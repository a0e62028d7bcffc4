"""The inbound path end to end: real clients -> mailstandby (subprocess) -> real Postfix -> Dovecot."""

from __future__ import annotations

import email
import re
import smtplib
import subprocess
from email import policy
from pathlib import Path

import pytest
from tests.support.primary import Primary
from tests.support.standby import Standby

BODY = (
    b"From: Sender <sender@ext.test>\r\nTo: alice@corp.test\r\nSubject: wire test\r\n"
    b"Message-ID: <wire-1@ext.test>\r\n\r\n"
    b"line one\r\n.a line starting with a dot\r\n..two dots\r\n\r\n"
    b"8-bit: \xc3\xa9t\xc3\xa9\r\nlast line\r\n"
)


def split_message(raw: bytes) -> tuple[bytes, bytes]:
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    return head, body


def send(standby: Standby, sender: str, rcpts: list[str], data: bytes, **kw: object) -> str:
    """Send one message; returns the queue id from the 250 reply."""
    with smtplib.SMTP(*standby.address, timeout=30) as s:
        s.ehlo("client.ext.test")
        s.mail(sender, ["BODY=8BITMIME"])
        for r in rcpts:
            code, msg = s.rcpt(r)
            assert code == 250, (r, code, msg)
        code, msg = s.data(data)
        assert code == 250, msg
    m = re.search(rb"queued as (\w+)", msg)
    assert m, msg
    return m.group(1).decode()


@pytest.fixture
def standby(tmp_path: Path, primary: Primary):
    with Standby(tmp_path / "standby", primary_port=primary.smtp_port) as s:
        yield s


def test_message_reaches_primary_once_byte_identical(standby: Standby, primary: Primary) -> None:
    qid = send(standby, "sender@ext.test", ["alice@corp.test"], BODY)
    [got] = primary.wait_for_messages("alice@corp.test", 1)
    _, body = split_message(got)
    assert body == split_message(BODY)[1]  # byte-identical body, dots unstuffed exactly once
    msg = email.message_from_bytes(got, policy=policy.default)
    ours = [r for r in msg.get_all("Received") if "(mailstandby)" in r]
    assert len(ours) == 1 and f"id {qid}" in ours[0] and "by standby.corp.test" in ours[0]
    assert msg["Message-ID"] == "<wire-1@ext.test>"
    standby.wait_until(lambda: not standby.queued(), what="queue to drain")
    assert len(primary.fetch_all("alice@corp.test")) == 1
    [row] = standby.deliveries()
    assert row["state"] == "delivered" and row["rcpt"] == "alice@corp.test"


def test_swaks_with_starttls_and_alias(standby: Standby, primary: Primary) -> None:
    out = subprocess.run(
        [
            "swaks",
            "--server",
            f"127.0.0.1:{standby.port}",
            "--tls",
            "--from",
            "sender@ext.test",
            "--to",
            "a.liddell@corp.test",
            "--header",
            "Subject: via swaks",
            "--body",
            "hello from swaks",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "<-  220 2.0.0 Ready to start TLS" in out.stdout and "<~  250 2.0.0 Ok: queued" in out.stdout
    [got] = primary.wait_for_messages("alice@corp.test", 1)  # the primary resolves the alias too
    msg = email.message_from_bytes(got, policy=policy.default)
    assert msg["Subject"] == "via swaks"
    assert any("with ESMTPS id" in r for r in msg.get_all("Received"))


def test_primary_down_mail_waits_then_arrives_exactly_once(standby: Standby, primary: Primary) -> None:
    primary.stop_smtp()
    ids = [
        send(standby, "sender@ext.test", ["bob@corp.test"], BODY.replace(b"wire-1", f"down-{n}".encode()))
        for n in range(3)
    ]
    standby.wait_until(
        lambda: len(standby.queued()) == 3 and any(d["attempts"] >= 2 for d in standby.queued()),
        what="retries while the primary is down",
    )
    assert any("4.4.1" in d["last_reply"] for d in standby.queued())
    primary.start_smtp()
    got = primary.wait_for_messages("bob@corp.test", 3, timeout=60)
    standby.wait_until(lambda: not standby.queued(), what="queue to drain")
    got = primary.fetch_all("bob@corp.test")
    ids_seen = sorted(re.search(rb"\(mailstandby\) with ESMTP id (\w+)", g).group(1).decode() for g in got)
    assert ids_seen == sorted(ids)


def test_permanent_failure_sends_one_dsn_to_the_sender(standby: Standby, primary: Primary) -> None:
    # ghost@ is in mailstandby's directory but unknown to the primary: 5xx at relay time
    qid = send(
        standby,
        "alice@corp.test",
        ["ghost@corp.test", "carol@corp.test"],
        b"Subject: to a ghost\r\nMessage-ID: <ghost@corp.test>\r\n\r\nboo\r\n",
    )
    [dsn] = primary.wait_for_messages("alice@corp.test", 1)
    primary.wait_for_messages("carol@corp.test", 1)  # the good recipient still got it
    msg = email.message_from_bytes(dsn, policy=policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg["Return-Path"] in ("<>", "")  # null sender: a bounce cannot bounce
    status = [p for p in msg.walk() if p.get_content_type() == "message/delivery-status"]
    text = dsn.decode("utf-8", "replace")
    assert status and "Final-Recipient: rfc822; ghost@corp.test" in text and "Action: failed" in text
    assert "carol@corp.test" not in text.split("Undelivered Message Headers")[0].split("Final-Recipient")[1]
    assert qid in text
    standby.wait_until(lambda: not standby.queued(), what="queue to drain")
    states = {(d["rcpt"], d["state"]) for d in standby.deliveries() if d["message_id"] == qid}
    assert states == {("ghost@corp.test", "failed"), ("carol@corp.test", "delivered")}


def test_no_dsn_for_a_bounce(standby: Standby, primary: Primary) -> None:
    qid = send(standby, "", ["ghost@corp.test"], b"Subject: bounce\r\n\r\nx\r\n")
    standby.wait_until(lambda: any(d["state"] == "failed" for d in standby.deliveries()), what="failure")
    rows = standby.deliveries()
    assert [(d["message_id"], d["state"]) for d in rows] == [(qid, "failed")]  # no DSN message queued


def test_expired_message_bounces_with_delivery_time_expired(tmp_path: Path, primary: Primary) -> None:
    with Standby(tmp_path / "s", primary_port=primary.smtp_port, queue={"max_lifetime": 1.5}) as standby:
        primary.stop_smtp()
        qid = send(standby, "bob@corp.test", ["carol@corp.test"], b"Subject: too late\r\n\r\nx\r\n")
        standby.wait_until(
            lambda: any(d["message_id"] == qid and d["state"] == "failed" for d in standby.deliveries()), what="expiry"
        )
        primary.start_smtp()
        [dsn] = primary.wait_for_messages("bob@corp.test", 1, timeout=60)
        assert b"Status: 4.4.7" in dsn
        assert primary.fetch_all("carol@corp.test") == []


def test_lmtp_to_dovecot_with_per_recipient_results(tmp_path: Path, primary: Primary) -> None:
    with Standby(tmp_path / "s", primary_port=primary.lmtp_port, protocol="lmtp") as standby:
        qid = send(standby, "sender@ext.test", ["alice@corp.test", "ghost@corp.test", "bob@corp.test"], BODY)
        primary.wait_for_messages("alice@corp.test", 1)
        primary.wait_for_messages("bob@corp.test", 1)
        standby.wait_until(lambda: not standby.queued(), what="queue to drain")
        states = {d["rcpt"]: d["state"] for d in standby.deliveries() if d["message_id"] == qid}
        assert states == {"alice@corp.test": "delivered", "bob@corp.test": "delivered", "ghost@corp.test": "failed"}


def test_sigterm_keeps_queued_mail_for_the_next_start(standby: Standby, primary: Primary) -> None:
    primary.stop_smtp()
    qid = send(standby, "sender@ext.test", ["carol@corp.test"], BODY)
    assert standby.stop() == 0
    primary.start_smtp()
    standby.start()
    [got] = primary.wait_for_messages("carol@corp.test", 1, timeout=60)
    assert f"id {qid}".encode() in got


def test_relayed_mail_is_journaled_once_in_the_standby_inbox(standby: Standby, primary: Primary) -> None:
    """Warm standby: what the primary took is also in the user's standby INBOX, marked journaled."""
    send(standby, "sender@ext.test", ["a.liddell@corp.test", "alice@corp.test", "bob@corp.test"], BODY)
    [at_primary] = primary.wait_for_messages("alice@corp.test", 1)
    primary.wait_for_messages("bob@corp.test", 1)
    standby.wait_until(lambda: not standby.queued(), what="queue to drain")
    copies = standby.mailbox("alice@corp.test", "INBOX")
    assert len(copies) == 1  # alias and address are one user: one copy
    [(body, journaled, flags)] = copies
    assert journaled == 1 and flags == ""
    ours = body.split(b"\r\n\r\n", 1)[0].split(b"\r\nFrom: ")[0]  # our Received header
    assert ours.startswith(b"Received: ") and ours in at_primary  # the very copy the primary took
    assert split_message(body)[1] == split_message(at_primary)[1] == split_message(BODY)[1]
    assert len(standby.mailbox("bob@corp.test", "INBOX")) == 1
