"""Differential wire test of session rules: the same client steps against Dovecot (the primary)
and mailstandby, compared as a client sees them.

- Keywords compare without case (a mailbox keeps the first spelling it saw): STORE +FLAGS with
  another spelling changes nothing, -FLAGS with another spelling removes it, SEARCH KEYWORD finds
  it whatever the case.
- The bad-command allowance: before login the third bad command ends the session with BYE only
  (earlier good commands do not forgive); after login twenty bad commands in a row end it (the
  twentieth answered BAD, then BYE), and any OK or NO starts the count again.
"""

from __future__ import annotations

import imaplib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.imapdiff import check, login
from tests.support.primary import Primary
from tests.support.standby import Standby

USER = "alice@corp.test"
PRIMARY_PASSWORD = "pw-alice"  # as in tests/wire/conftest.py
STANDBY_PASSWORD = "rules-pw-7-long"
MESSAGE = b"Subject: keywords\r\nFrom: a@example.com\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[str, int, str]]]:
    root: Path = tmp_path_factory.mktemp("imaprules")
    primary = Primary(root / "primary", users={USER: PRIMARY_PASSWORD})
    standby: Standby | None = None
    try:
        primary.start()
        standby = Standby(
            root / "standby",
            primary_port=primary.smtp_port,
            imap={"listen": ["127.0.0.1:0"], "allow_plaintext_auth_on_loopback": True},
        )
        standby.set_password(USER, STANDBY_PASSWORD)
        standby.start()
        yield {
            "dovecot": (primary.host, primary.imap_port, PRIMARY_PASSWORD),
            "standby": ("127.0.0.1", standby.listeners["imap"], STANDBY_PASSWORD),
        }
    finally:
        if standby is not None:
            standby.kill()
        primary.close()


def _flags(client: imaplib.IMAP4) -> set[bytes]:
    typ, data = client.fetch("1", "(FLAGS)")
    check(typ, data, "FETCH")
    text = data[0] if isinstance(data[0], bytes) else b""
    inner = text[text.index(b"FLAGS (") + 7 :].split(b")")[0]
    return set(inner.split()) - {b"\\Recent"}


def _keyword_script(host: str, port: int, password: str) -> list[object]:
    client = login(host, port, USER, password)
    try:
        mailbox = "Rules"
        client.delete(mailbox)
        check(*client.create(mailbox), "CREATE")
        check(*client.append(mailbox, "($Label)", None, MESSAGE), "APPEND")
        check(*client.select(mailbox), "SELECT")
        seen: list[object] = []
        for op, flags in (("+FLAGS", "($LABEL Foo)"), ("+FLAGS", "(foo)"), ("-FLAGS", "($label)")):
            check(*client.store("1", op, flags), "STORE")
            seen.append((op, flags, _flags(client)))
        for criteria in (("KEYWORD", "FOO"), ("KEYWORD", "foo"), ("UNKEYWORD", "FOO"), ("KEYWORD", "$LABEL")):
            typ, data = client.search(None, *criteria)
            seen.append((criteria, typ, data))
        return seen
    finally:
        client.logout()


def test_keywords_compare_without_case_as_in_dovecot(servers: dict[str, tuple[str, int, str]]) -> None:
    dovecot = _keyword_script(*servers["dovecot"])
    standby = _keyword_script(*servers["standby"])
    assert dovecot[0][2] == {b"$Label", b"Foo"}, dovecot  # the script means what it says on the reference
    assert standby == dovecot


def _until_bye(host: str, port: int, password: str | None, steps: list[bytes]) -> list[bytes]:
    """Send each step and read until its tagged reply or BYE; returns every status word seen."""
    sock = socket.create_connection((host, port), timeout=30)
    reader = sock.makefile("rb")
    seen: list[bytes] = []
    try:
        reader.readline()
        if password is not None:
            sock.sendall(b"a LOGIN %s %s\r\n" % (USER.encode(), password.encode()))
            assert b" OK " in reader.readline()
        for step in steps:
            sock.sendall(step + b"\r\n")
            tag = step.split(b" ", 1)[0]
            while True:
                line = reader.readline()
                if not line:
                    return [*seen, b"EOF"]
                if line.startswith(b"* BYE"):
                    seen.append(b"BYE")
                    return [*seen, b"EOF"] if _closed(reader) else seen
                if line.startswith(tag + b" "):
                    seen.append(line.split(b" ", 2)[1])
                    break
        return seen
    finally:
        sock.close()


def _closed(reader: socket.SocketIO | object) -> bool:
    """The server closed after its BYE (a reset counts: the close raced the client's last ACK)."""
    try:
        return not reader.readline()  # type: ignore[attr-defined]
    except ConnectionResetError:
        return True


BEFORE_LOGIN = [b"x1 FOO", b"x2 NOOP", b"x3 BAR", b"x4 CAPABILITY", b"x5 BAZ", b"x6 NOOP"]
AFTER_LOGIN = (
    [b"y%d FOO" % i for i in range(19)] + [b"n SELECT nosuch"] + [b"z%d FOO" % i for i in range(20)] + [b"w NOOP"]
)


@pytest.mark.parametrize(
    ("label", "logged_in", "steps"), [("before", False, BEFORE_LOGIN), ("after", True, AFTER_LOGIN)]
)
def test_bad_command_allowance_as_in_dovecot(
    servers: dict[str, tuple[str, int, str]], label: str, logged_in: bool, steps: list[bytes]
) -> None:
    results = {}
    for name, (host, port, password) in servers.items():
        results[name] = _until_bye(host, port, password if logged_in else None, steps)
    assert results["dovecot"][-2:] == [b"BYE", b"EOF"], results["dovecot"]  # the reference does end it
    assert results["standby"] == results["dovecot"], label
