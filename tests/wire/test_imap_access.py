"""Phones read the standby over IMAP: imaplib, IDLE and mbsync against mailstandby as a subprocess,
on mail journaled from a real Postfix + Dovecot primary; changes made on the standby stay there."""

from __future__ import annotations

import imaplib
import smtplib
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.primary import Primary
from tests.support.standby import Standby

PASSWORD = "phone-pw-3-long"


@pytest.fixture
def standby(tmp_path: Path, primary: Primary) -> Iterator[Standby]:
    s = Standby(
        tmp_path / "standby",
        primary_port=primary.smtp_port,
        imap={"listen": ["127.0.0.1:0"], "listen_tls": ["127.0.0.1:0"]},
    )
    s.set_password("alice@corp.test", PASSWORD)
    with s:
        yield s


def tls_context(standby: Standby) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(standby.data_dir / "tls" / "selfsigned.crt"))
    context.check_hostname = False
    return context


def deliver(standby: Standby, primary: Primary, subjects: list[str]) -> None:
    with smtplib.SMTP(*standby.address, timeout=30) as client:
        for subject in subjects:
            client.sendmail("sender@ext.test", ["alice@corp.test"], f"Subject: {subject}\r\n\r\n{subject} body\r\n")
    primary.wait_for_messages("alice@corp.test", len(subjects))
    standby.wait_until(lambda: len(standby.mailbox("alice@corp.test", "INBOX")) >= len(subjects), what="journal")


def login(standby: Standby) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL("127.0.0.1", standby.listeners["imaps"], ssl_context=tls_context(standby))
    client.login("alice@corp.test", PASSWORD)
    return client


def test_imaplib_reads_flags_and_moves(standby: Standby, primary: Primary) -> None:
    deliver(standby, primary, ["first", "second"])
    client = login(standby)
    try:
        typ, data = client.select("INBOX")
        assert typ == "OK" and data == [b"2"]
        typ, data = client.uid("FETCH", "1:*", "(FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        subjects = {
            item[1].strip(): int(item[0].split(b"UID ")[1].split()[0]) for item in data if isinstance(item, tuple)
        }
        assert set(subjects) == {b"Subject: first", b"Subject: second"}  # journal order is delivery order
        first, second = subjects[b"Subject: first"], subjects[b"Subject: second"]
        typ, data = client.uid("FETCH", str(first), "(BODY[])")  # not PEEK: marks \\Seen
        assert b"first body" in data[0][1]
        client.uid("STORE", str(second), "+FLAGS", "(\\Flagged)")
        assert "MOVE" in client.capabilities
        typ, _ = client.uid("MOVE", str(second), "Trash")
        assert typ == "OK"
    finally:
        client.logout()
    [(kept, _, flags)] = standby.mailbox("alice@corp.test", "INBOX")
    assert b"Subject: first" in kept and flags == "\\Seen"
    [(moved, _, flags)] = standby.mailbox("alice@corp.test", "Trash")
    assert b"Subject: second" in moved and "\\Flagged" in flags


def test_starttls_required_before_login(standby: Standby) -> None:
    client = imaplib.IMAP4("127.0.0.1", standby.listeners["imap"])
    assert "LOGINDISABLED" in client.capabilities
    with pytest.raises(imaplib.IMAP4.error):
        client.login("alice@corp.test", PASSWORD)
    client.starttls(ssl_context=tls_context(standby))
    typ, _ = client.login("alice@corp.test", PASSWORD)
    assert typ == "OK"
    client.logout()


def test_idle_announces_new_mail(standby: Standby, primary: Primary) -> None:
    client = login(standby)
    client.select("INBOX")
    tag = client._new_tag().decode()
    client.send(f"{tag} IDLE\r\n".encode())
    assert client.readline().startswith(b"+")
    deliver(standby, primary, ["pushed"])
    client.sock.settimeout(30)
    line = client.readline()
    assert line.strip() == b"* 1 EXISTS", line
    line = client.readline()
    assert line.strip() == b"* 1 RECENT", line  # this session is the one that sees it first (RFC 3501 §2.3.2)
    client.send(b"DONE\r\n")
    assert client.readline().startswith(tag.encode() + b" OK")
    client.logout()


def test_mbsync_copies_the_whole_mailbox(standby: Standby, primary: Primary, tmp_path: Path) -> None:
    deliver(standby, primary, ["m1", "m2", "m3"])
    maildir = tmp_path / "phone"
    maildir.mkdir()
    cert = standby.data_dir / "tls" / "selfsigned.crt"
    rc = tmp_path / "mbsyncrc"
    rc.write_text(
        f"IMAPAccount standby\nHost 127.0.0.1\nPort {standby.listeners['imaps']}\nUser alice@corp.test\n"
        f"Pass {PASSWORD}\nSSLType IMAPS\nCertificateFile {cert}\n\n"
        "IMAPStore standby-remote\nAccount standby\n\n"
        f"MaildirStore phone-local\nPath {maildir}/\nInbox {maildir}/INBOX\n\n"
        "Channel sync\nFar :standby-remote:\nNear :phone-local:\nPatterns INBOX\nCreate Near\nSync Pull\n"
    )
    result = subprocess.run(
        ["mbsync", "-c", str(rc), "sync"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    files = list((maildir / "INBOX" / "new").iterdir()) + list((maildir / "INBOX" / "cur").iterdir())
    assert sorted(b"Subject: m" in f.read_bytes() for f in files) == [True, True, True]


def test_fetchmail_over_imap_with_tls(standby: Standby, primary: Primary, tmp_path: Path) -> None:
    deliver(standby, primary, ["i1", "i2"])
    out = tmp_path / "fetched.mbox"
    rc = tmp_path / "fetchmailrc"
    cert = standby.data_dir / "tls" / "selfsigned.crt"
    rc.write_text(
        f"poll 127.0.0.1 protocol IMAP port {standby.listeners['imaps']}\n"
        f'  user "alice@corp.test" password "{PASSWORD}" fetchall keep ssl\n'
        f"  sslcertck sslcertfile {cert} sslcommonname standby.corp.test\n"
        f"  mda \"/bin/sh -c 'cat >> {out}'\"\n"
    )
    rc.chmod(0o600)
    result = subprocess.run(
        ["fetchmail", "-f", str(rc), "--nosyslog", "--nodetach", "-v"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = out.read_text()
    assert "Subject: i1" in text and "Subject: i2" in text
    assert len(standby.mailbox("alice@corp.test", "INBOX")) == 2  # `keep`
