"""The `primary` fixture itself: private Postfix + Dovecot behave like a real primary."""

from __future__ import annotations

import smtplib
import socket
import time
from pathlib import Path

import pytest
from tests.support.primary import Primary, _pids_using

BODY = (
    b"From: Sender <sender@ext.test>\r\nTo: alice@corp.test\r\nSubject: fixture test\r\n"
    b"Message-ID: <fixture-1@ext.test>\r\n\r\n"
    b"line one\r\n.a line starting with a dot\r\n..two dots\r\n\r\n"
    b"8-bit: \xc3\xa9t\xc3\xa9\r\nlast line\r\n"
)


def body_of(raw: bytes) -> bytes:
    return raw.partition(b"\r\n\r\n")[2]


def refuses(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_smtp_to_postfix_lands_in_imap_inbox_byte_identical(primary: Primary) -> None:
    with smtplib.SMTP(primary.host, primary.smtp_port, timeout=10) as s:
        s.sendmail("sender@ext.test", ["alice@corp.test"], BODY, mail_options=["BODY=8BITMIME"])
    [got] = primary.wait_for_messages("alice@corp.test", 1, timeout=20)
    assert body_of(got) == body_of(BODY)
    assert b"Message-ID: <fixture-1@ext.test>\r\n" in got
    assert b"Return-Path: <sender@ext.test>" in got
    assert primary.fetch_all("bob@corp.test") == []
    assert primary.queue_size() == 0
    assert "status=sent" in primary.maillog()


def test_alias_is_resolved_by_postfix(primary: Primary) -> None:
    with smtplib.SMTP(primary.host, primary.smtp_port, timeout=10) as s:
        s.sendmail("sender@ext.test", ["a.liddell@corp.test"], b"Subject: alias\r\n\r\nhi\r\n")
    [got] = primary.wait_for_messages("alice@corp.test", 1, timeout=20)
    assert b"Subject: alias" in got


def test_unknown_user_is_rejected_at_rcpt(primary: Primary) -> None:
    with smtplib.SMTP(primary.host, primary.smtp_port, timeout=10) as s:
        s.ehlo("client.ext.test")
        assert s.mail("sender@ext.test")[0] == 250
        code, msg = s.rcpt("ghost@corp.test")
        assert code == 550 and b"5.1.1" in msg, (code, msg)
        assert s.rcpt("bob@corp.test")[0] == 250
        # Without a relayhost, other domains are refused at RCPT too (no outbound route).
        code, msg = s.rcpt("someone@ext.test")
        assert code == 550 and b"5.7.1" in msg, (code, msg)


def test_stop_smtp_refuses_then_start_smtp_same_port_keeps_queue(primary: Primary) -> None:
    port = primary.smtp_port
    primary.stop_imap()  # Dovecot down: Postfix must defer and keep the mail
    with smtplib.SMTP(primary.host, port, timeout=10) as s:
        s.sendmail("sender@ext.test", ["carol@corp.test"], b"Subject: queued\r\n\r\nkept\r\n")
    deadline = time.monotonic() + 10
    while "status=deferred" not in primary.maillog() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert primary.queue_size() == 1

    primary.stop_smtp()
    assert refuses(primary.host, port)
    primary.start_smtp()
    assert primary.smtp_port == port
    with smtplib.SMTP(primary.host, port, timeout=10) as s:
        assert s.noop()[0] == 250

    primary.start_imap()
    primary.flush()
    [got] = primary.wait_for_messages("carol@corp.test", 1, timeout=20)
    assert body_of(got) == b"kept\r\n"
    deadline = time.monotonic() + 10
    while primary.queue_size() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert primary.queue_size() == 0


def test_lmtp_direct_to_dovecot(primary: Primary) -> None:
    with smtplib.LMTP(primary.host, primary.lmtp_port, timeout=10) as s:
        s.ehlo("client.test")  # smtplib.LMTP sends LHLO
        assert s.mail("sender@ext.test")[0] == 250
        assert s.rcpt("bob@corp.test")[0] == 250
        code, _ = s.rcpt("ghost@corp.test")
        assert 500 <= code < 600
        code, msg = s.data(b"Subject: via lmtp\r\n\r\nhello lmtp\r\n")  # one reply: bob's
        assert code == 250, msg
    [got] = primary.wait_for_messages("bob@corp.test", 1, timeout=10)
    assert body_of(got) == b"hello lmtp\r\n"


def test_master_user_login(primary: Primary) -> None:
    with smtplib.LMTP(primary.host, primary.lmtp_port, timeout=10) as s:
        s.sendmail("sender@ext.test", ["carol@corp.test"], b"Subject: m\r\n\r\nx\r\n")
    primary.wait_for_messages("carol@corp.test", 1, timeout=10)
    imap = primary.imap_login("carol@corp.test", as_master=True)
    try:
        typ, data = imap.select("INBOX", readonly=True)
        assert typ == "OK" and data == [b"1"]
    finally:
        imap.logout()


def test_two_primaries_at_once(tmp_path: Path) -> None:
    users = {"alice@corp.test": "pw-alice"}
    with (
        Primary(tmp_path / "one", users=users) as one,
        Primary(tmp_path / "two", users=users) as two,
    ):
        ports = {one.smtp_port, one.imap_port, one.lmtp_port, two.smtp_port, two.imap_port}
        assert len(ports) == 5
        for p, tag in ((one, b"one"), (two, b"two")):
            with smtplib.SMTP(p.host, p.smtp_port, timeout=10) as s:
                s.sendmail("x@ext.test", ["alice@corp.test"], b"Subject: " + tag + b"\r\n\r\nx\r\n")
        [a] = one.wait_for_messages("alice@corp.test", 1, timeout=20)
        [b] = two.wait_for_messages("alice@corp.test", 1, timeout=20)
        assert b"Subject: one" in a and b"Subject: two" in b
        one.stop()
        assert refuses(two.host, one.smtp_port)
        assert len(two.fetch_all("alice@corp.test")) == 1  # the other one is unaffected


def test_wait_for_messages_times_out_with_diagnostics(primary: Primary) -> None:
    with pytest.raises(AssertionError, match=r"(?s)expected >= 1.*postqueue -p.*maillog"):
        primary.wait_for_messages("alice@corp.test", 1, timeout=0.5)


def test_close_leaves_no_processes_and_keeps_logs(tmp_path: Path) -> None:
    p = Primary(tmp_path / "p", users={"alice@corp.test": "pw-alice"})
    p.start()
    with smtplib.SMTP(p.host, p.smtp_port, timeout=10) as s:
        s.sendmail("x@ext.test", ["alice@corp.test"], b"Subject: x\r\n\r\nx\r\n")
    p.wait_for_messages("alice@corp.test", 1, timeout=20)
    live = p.base
    p.close()
    assert _pids_using(live) == []
    assert refuses(p.host, p.smtp_port) and refuses(p.host, p.imap_port)
    assert refuses(p.host, p.lmtp_port)
    if live != p.root:
        assert not live.exists()
    assert "status=sent" in (tmp_path / "p" / "log" / "postfix.log").read_text()
    assert "status=sent" in p.maillog()
    assert (tmp_path / "p" / "config" / "dovecot.conf").exists()
