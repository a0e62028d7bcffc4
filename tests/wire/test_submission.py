"""Phones send through the standby (RFC 6409 submission): AUTH required, own addresses only,
other domains via the smarthost (Postfix's smtp-sink here), local users via the primary,
a copy in the user's standby Sent mailbox."""

from __future__ import annotations

import smtplib
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.primary import Primary
from tests.support.standby import Standby

PASSWORD = "phone-pw-2-long"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smarthost(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """Postfix's smtp-sink, dumping every message it takes into a directory."""
    dump = tmp_path / "smarthost"
    dump.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        ["smtp-sink", "-u", "root", "-d", f"{dump}/%M%S.", f"127.0.0.1:{port}", "20"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield port, dump
    finally:
        proc.kill()
        proc.wait(5)


@pytest.fixture
def standby(tmp_path: Path, primary: Primary, smarthost: tuple[int, Path]) -> Iterator[Standby]:
    s = Standby(
        tmp_path / "standby",
        primary_port=primary.smtp_port,
        submission={"listen": ["127.0.0.1:0"], "listen_tls": ["127.0.0.1:0"]},
        outbound={"host": "127.0.0.1", "port": smarthost[0], "tls": "none"},
    )
    s.set_password("alice@corp.test", PASSWORD)
    with s:
        yield s


def tls_context(standby: Standby) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(standby.data_dir / "tls" / "selfsigned.crt"))
    context.check_hostname = False
    return context


def test_phone_sends_to_outside_and_inside_with_a_sent_copy(
    standby: Standby, primary: Primary, smarthost: tuple[int, Path]
) -> None:
    message = b"From: alice@corp.test\r\nSubject: reply from the phone\r\n\r\nsent during the outage\r\n"
    with smtplib.SMTP("127.0.0.1", standby.listeners["submission"], timeout=30) as client:
        client.starttls(context=tls_context(standby))
        client.login("alice@corp.test", PASSWORD)
        client.sendmail("a.liddell@corp.test", ["friend@example.org", "bob@corp.test"], message)
    [at_bob] = primary.wait_for_messages("bob@corp.test", 1)
    assert b"reply from the phone" in at_bob and b"with ESMTPSA id" in at_bob
    standby.wait_until(lambda: any(smarthost[1].iterdir()), what="the smarthost to receive it")
    [dumped] = list(smarthost[1].iterdir())
    assert b"sent during the outage" in dumped.read_bytes()
    [(sent, journaled, flags)] = standby.mailbox("alice@corp.test", "Sent")
    assert sent == message and flags == "\\Seen" and journaled == 0  # as written: no trace header


def test_implicit_tls_port_works(standby: Standby, primary: Primary) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", standby.listeners["submissions"], context=tls_context(standby)) as client:
        client.login("alice@corp.test", PASSWORD)
        client.sendmail("alice@corp.test", ["carol@corp.test"], b"Subject: via 465\r\n\r\nx\r\n")
    primary.wait_for_messages("carol@corp.test", 1)


def test_no_auth_no_mail_and_no_spoofing(standby: Standby) -> None:
    with smtplib.SMTP("127.0.0.1", standby.listeners["submission"], timeout=30) as client:
        client.ehlo()
        assert "auth" not in client.esmtp_features  # no AUTH offered before TLS
        code, msg = client.docmd("AUTH", "PLAIN AGFsaWNlQGNvcnAudGVzdABwaG9uZS1wdy0y")
        assert (code, msg[:6]) == (538, b"5.7.11")
        code, msg = client.mail("alice@corp.test")
        assert (code, msg[:5]) == (530, b"5.7.0")
        client.starttls(context=tls_context(standby))
        client.ehlo()
        assert "PLAIN" in client.esmtp_features["auth"]
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            client.login("alice@corp.test", "wrong")
        assert e.value.smtp_code == 535
        client.login("alice@corp.test", PASSWORD)
        code, msg = client.mail("bob@corp.test")  # not hers
        assert (code, msg[:5]) == (553, b"5.7.1")
    assert PASSWORD not in standby.log()  # passwords are never logged
