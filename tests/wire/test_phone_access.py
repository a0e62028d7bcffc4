"""Phones read the standby: POP3 with real clients (poplib, fetchmail) against mailstandby as a subprocess,
on mail journaled from a real Postfix + Dovecot primary."""

from __future__ import annotations

import poplib
import smtplib
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.primary import Primary
from tests.support.standby import Standby

PASSWORD = "phone-pw-1-long"


@pytest.fixture
def standby(tmp_path: Path, primary: Primary) -> Iterator[Standby]:
    s = Standby(
        tmp_path / "standby",
        primary_port=primary.smtp_port,
        pop3={"listen": ["127.0.0.1:0"], "listen_tls": ["127.0.0.1:0"], "allow_plaintext_auth_on_loopback": True},
    )
    s.set_password("alice@corp.test", PASSWORD)
    with s:
        yield s


def deliver(standby: Standby, primary: Primary, subjects: list[str]) -> None:
    with smtplib.SMTP(*standby.address, timeout=30) as client:
        for subject in subjects:
            client.sendmail("sender@ext.test", ["alice@corp.test"], f"Subject: {subject}\r\n\r\n{subject} body\r\n")
    primary.wait_for_messages("alice@corp.test", len(subjects))
    standby.wait_until(lambda: len(standby.mailbox("alice@corp.test", "INBOX")) == len(subjects), what="journal")


def test_poplib_reads_and_deletes_over_stls(standby: Standby, primary: Primary) -> None:
    deliver(standby, primary, ["one", "two"])
    client = poplib.POP3("127.0.0.1", standby.listeners["pop3"], timeout=30)
    context = ssl.create_default_context(cafile=str(standby.data_dir / "tls" / "selfsigned.crt"))
    context.check_hostname = False
    client.stls(context)
    client.user("alice@corp.test")
    client.pass_(PASSWORD)
    count, _ = client.stat()
    assert count == 2
    _, lines, _ = client.retr(1)
    first = "one" if b"Subject: one" in lines else "two"  # journal order is delivery order
    other = {"one": "two", "two": "one"}[first]
    assert f"Subject: {first}".encode() in lines and f"{first} body".encode() in lines
    uidls = client.uidl()[1]
    client.dele(1)
    client.quit()
    [(left, _, _)] = standby.mailbox("alice@corp.test", "INBOX")
    assert f"Subject: {other}".encode() in left
    again = poplib.POP3_SSL("127.0.0.1", standby.listeners["pop3s"], context=context, timeout=30)
    again.user("alice@corp.test")
    again.pass_(PASSWORD)
    assert again.stat()[0] == 1
    assert again.uidl()[1] == [b"1 " + uidls[1].split(b" ")[1]]  # the survivor keeps its UIDL
    again.quit()


def test_wrong_password_is_refused(standby: Standby) -> None:
    client = poplib.POP3("127.0.0.1", standby.listeners["pop3"], timeout=30)
    client.user("alice@corp.test")
    with pytest.raises(poplib.error_proto):
        client.pass_("not-the-password")
    client.close()


def test_fetchmail_downloads_everything(standby: Standby, primary: Primary, tmp_path: Path) -> None:
    deliver(standby, primary, ["alpha", "beta", "gamma"])
    out = tmp_path / "fetched.mbox"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f"poll 127.0.0.1 protocol POP3 port {standby.listeners['pop3']}\n"
        f'  user "alice@corp.test" password "{PASSWORD}" fetchall keep\n'
        f"  mda \"/bin/sh -c 'cat >> {out}'\"\n"
    )
    rc.chmod(0o600)
    result = subprocess.run(
        ["fetchmail", "-f", str(rc), "--nosyslog", "--nodetach", "--sslproto", "", "-v"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = out.read_text()
    assert all(f"Subject: {s}" in text for s in ("alpha", "beta", "gamma"))
    assert len(standby.mailbox("alice@corp.test", "INBOX")) == 3  # `keep`: nothing deleted
