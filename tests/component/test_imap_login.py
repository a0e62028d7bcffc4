"""IMAP before login: greeting, CAPABILITY, NOOP, LOGOUT, ID, STARTTLS, LOGIN, AUTHENTICATE PLAIN.

RFC 3501 §6.1-6.2, RFC 4959 SASL-IR, RFC 2595; RELIABILITY A1, A2, A4, A8, P6, P10, P12, P13, T1, T2, X1.
"""

from __future__ import annotations

import asyncio
import base64
import imaplib
import ssl

import pytest
from imap_harness import (
    ALICE,
    ALICE_PW,
    IMAPRig,
    RigFactory,
    call,
    make_rig,
    rig,
    store_factory,
)

__all__ = ["make_rig", "rig", "store_factory"]  # fixtures


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


async def test_greeting_and_capability(rig: IMAPRig) -> None:
    client = await rig.raw()
    caps = await client.cmd(b"a CAPABILITY")
    assert len(caps) == 1
    words = caps[0].split()
    for cap in (b"IMAP4rev1", b"LITERAL-", b"SASL-IR", b"IDLE", b"UIDPLUS", b"MOVE", b"STARTTLS", b"AUTH=PLAIN"):
        assert cap in words
    assert b"APPENDLIMIT=65536" in words
    assert b"LOGINDISABLED" not in words
    await client.cmd(b"b NOOP")
    await client.send(b"c LOGOUT\r\n")
    assert await client.line() == b"* BYE Logging out\r\n"
    assert (await client.line()).startswith(b"c OK")
    assert await client.until_eof() == b""


async def test_greeting_carries_capability(make_rig: RigFactory) -> None:
    rig = await make_rig(allow_plaintext_auth_on_loopback=False)
    client = await rig.raw(greeting=b"* OK [CAPABILITY IMAP4rev1 ")
    caps = (await client.cmd(b"a CAPABILITY"))[0].split()
    assert b"LOGINDISABLED" in caps and b"STARTTLS" in caps and b"AUTH=PLAIN" not in caps


async def test_imaplib_login_logout(rig: IMAPRig) -> None:
    client = await rig.imap(None)
    assert "IMAP4REV1" in client.capabilities
    typ, _ = await call(client.login, ALICE, ALICE_PW)
    assert typ == "OK"
    typ, _ = await call(client.noop)
    assert typ == "OK"
    typ, _ = await call(client.logout)
    assert typ == "BYE"


async def test_login_failures_are_identical(rig: IMAPRig) -> None:
    client = await rig.raw()
    await client.send(b'a LOGIN alice@corp.test "wrong"\r\n')
    _, wrong = await client.until(b"a")
    await client.send(b'b LOGIN nobody@corp.test "wrong"\r\n')
    _, unknown = await client.until(b"b")
    assert wrong[1:] == unknown[1:] == b" NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    await client.send(b'c LOGIN alice@corp.test ""\r\n')
    _, empty = await client.until(b"c")
    assert empty.startswith(b"c NO [AUTHENTICATIONFAILED]")


async def test_privacy_required_without_tls(make_rig: RigFactory, client_tls: ssl.SSLContext) -> None:
    rig = await make_rig(allow_plaintext_auth_on_loopback=False)
    client = await rig.raw()
    await client.cmd(f'a LOGIN "{ALICE}" "{ALICE_PW}"'.encode(), b"NO [PRIVACYREQUIRED]")
    await client.cmd(b"b AUTHENTICATE PLAIN " + b64(f"\0{ALICE}\0{ALICE_PW}".encode()), b"NO [PRIVACYREQUIRED]")
    await client.cmd(b"c STARTTLS")
    await client.starttls(client_tls)
    caps = (await client.cmd(b"d CAPABILITY"))[0].split()
    assert b"STARTTLS" not in caps and b"AUTH=PLAIN" in caps and b"LOGINDISABLED" not in caps
    await client.cmd(b"e STARTTLS", b"BAD")
    await client.login()
    assert rig.auth.attempts == [(ALICE, "127.0.0.1", "imap")]


async def test_implicit_tls(make_rig: RigFactory) -> None:
    rig = await make_rig(allow_plaintext_auth_on_loopback=False)
    client = await rig.raw(tls=True)
    caps = (await client.cmd(b"a CAPABILITY"))[0].split()
    assert b"STARTTLS" not in caps and b"AUTH=PLAIN" in caps
    await client.login()


async def test_starttls_injection_is_never_executed(make_rig: RigFactory, client_tls: ssl.SSLContext) -> None:
    """RELIABILITY T1: commands pipelined behind STARTTLS in plaintext are dropped."""
    rig = await make_rig(allow_plaintext_auth_on_loopback=False)
    client = await rig.raw()
    await client.send(f'a STARTTLS\r\nb LOGIN "{ALICE}" "{ALICE_PW}"\r\nc CAPABILITY\r\n'.encode())
    assert (await client.line()).startswith(b"a OK")
    await client.starttls(client_tls)
    await client.send(b"d NOOP\r\n")
    lines, done = await client.until(b"d")
    assert lines == [] and done.startswith(b"d OK")
    assert rig.auth.attempts == []
    await client.cmd(b"e SELECT INBOX", b"BAD")  # still not authenticated


async def test_authenticate_plain_variants(rig: IMAPRig) -> None:
    client = await rig.raw()
    plain = b64(f"\0{ALICE}\0{ALICE_PW}".encode())
    await client.send(b"a AUTHENTICATE PLAIN\r\n")
    assert await client.line() == b"+ \r\n"
    await client.send(b"*\r\n")
    _, done = await client.until(b"a")
    assert done.startswith(b"a BAD")
    await client.send(b"b AUTHENTICATE PLAIN\r\n")
    assert await client.line() == b"+ \r\n"
    await client.send(b64(f"other\0{ALICE}\0{ALICE_PW}".encode()) + b"\r\n")
    _, done = await client.until(b"b")
    assert done.startswith(b"b NO [AUTHENTICATIONFAILED]")
    await client.cmd(b"c AUTHENTICATE CRAM-MD5", b"NO")
    await client.cmd(b"d AUTHENTICATE PLAIN " + plain, b"OK [CAPABILITY IMAP4rev1")
    await client.cmd(b"e AUTHENTICATE PLAIN " + plain, b"BAD")  # already authenticated


async def test_authenticate_with_continuation(rig: IMAPRig) -> None:
    client = await rig.raw()
    await client.send(b"a AUTHENTICATE PLAIN\r\n")
    assert await client.line() == b"+ \r\n"
    await client.send(b64(f"{ALICE}\0{ALICE}\0{ALICE_PW}".encode()) + b"\r\n")
    _, done = await client.until(b"a")
    assert done.startswith(b"a OK")


async def test_passwords_never_logged(rig: IMAPRig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(1)
    client = await rig.raw()
    await client.cmd(b'a LOGIN alice@corp.test "Sekr1t-wrong"', b"NO")
    await client.cmd(b"b AUTHENTICATE PLAIN " + b64(b"\0alice@corp.test\0Sekr1t-plain"), b"NO")
    await client.login()
    text = caplog.text
    assert "Sekr1t" not in text and ALICE_PW not in text
    assert b64(b"\0alice@corp.test\0Sekr1t-plain").decode() not in text


async def test_bad_command_limit_before_login(make_rig: RigFactory) -> None:
    """RELIABILITY P6, as Dovecot's imap-login: the third bad command before login is answered
    only with BYE, and good commands in between do not forgive the earlier ones."""
    rig = await make_rig()
    assert rig.settings.max_bad_commands_before_login == 3
    client = await rig.raw()
    await client.cmd(b"a FOO", b"BAD")
    await client.cmd(b"b NOOP")
    await client.cmd(b"c SELECT INBOX", b"BAD")
    await client.send(b"d BAR\r\n")
    assert await client.line() == b"* BYE Too many invalid IMAP commands.\r\n"
    assert await client.until_eof() == b""


async def test_bad_commands_in_a_row_after_login(make_rig: RigFactory) -> None:
    """After login Dovecot's imap allows 20 bad commands in a row: any OK or NO starts the count
    again, and the 20th gets its BAD and then the BYE."""
    rig = await make_rig()
    limit = rig.settings.max_bad_commands
    client = await rig.raw()
    await client.login()
    for i in range(limit - 1):
        await client.cmd(b"x%d FOO" % i, b"BAD")
    await client.cmd(b"n SELECT nosuch", b"NO")
    for i in range(limit - 1):
        await client.cmd(b"y%d FOO" % i, b"BAD")
    await client.send(b"z FOO\r\n")
    assert (await client.line()).startswith(b"z BAD")
    assert await client.line() == b"* BYE Too many invalid IMAP commands.\r\n"
    assert await client.until_eof() == b""


async def test_nul_in_quoted_string_and_literal(rig: IMAPRig) -> None:
    """RELIABILITY P10: NUL is BAD and the connection still works."""
    client = await rig.raw()
    await client.cmd(b'a LOGIN "u\x00x" p', b"BAD")
    await client.login()
    await client.send(b"b APPEND INBOX {5}\r\n")
    assert (await client.line()).startswith(b"+ ")
    await client.send(b"ab\x00cd\r\n")
    _, done = await client.until(b"b")
    assert done.startswith(b"b BAD")
    await client.cmd(b"c NOOP")
    await client.cmd(b'd SELECT "IN\x00BOX"', b"BAD")
    await client.cmd(b"e SELECT INBOX")
    assert await client.cmd(b"f FETCH 1:* FLAGS") == []  # nothing was stored


async def test_overlong_line(rig: IMAPRig) -> None:
    """RELIABILITY P13: an 8 KiB line works; a 1 MiB one is BAD and the session stays up."""
    client = await rig.raw()
    await client.login()
    await client.cmd(b"a SELECT INBOX")
    seqset = b",".join(b"%d" % (2 * i + 1) for i in range(1800))
    assert len(seqset) > 8192 - 100
    await client.cmd(b"b UID FETCH " + seqset + b" FLAGS")
    await client.send(b"c NOOP " + b"x" * (1024 * 1024) + b"\r\n")
    line = await client.line()
    assert line == b"c BAD Error in IMAP command received by server: Too long argument.\r\n"
    await client.cmd(b"d NOOP")


async def test_literals_before_login_are_tiny(rig: IMAPRig) -> None:
    """RELIABILITY P12: no `+` for a huge literal before login."""
    client = await rig.raw()
    await client.send(b"a LOGIN {4294967295}\r\n")
    line = await client.line()
    assert line.startswith(b"a BAD") or line.startswith(b"a NO")
    await client.send(b"b LOGIN {4294967295+}\r\n")
    assert (await client.line()).startswith(b"b BAD [TOOBIG]")
    assert (await client.line()).startswith(b"* BYE")
    assert await client.until_eof() == b""


async def test_login_with_literals(rig: IMAPRig) -> None:
    client = await rig.raw()
    user, pw = ALICE.encode(), ALICE_PW.encode()
    await client.send(b"a LOGIN {%d}\r\n" % len(user))
    assert (await client.line()).startswith(b"+ ")
    await client.send(user + b" {%d+}\r\n" % len(pw) + pw + b"\r\n")
    _, done = await client.until(b"a")
    assert done.startswith(b"a OK")


async def test_connection_limit_per_user(rig: IMAPRig) -> None:
    clients = [await rig.raw() for _ in range(4)]
    for c in clients[:3]:
        await c.login()
    await clients[3].cmd(f'x LOGIN "{ALICE}" "{ALICE_PW}"'.encode(), b"NO [LIMIT]")
    await clients[0].cmd(b"y LOGOUT")
    await clients[3].login()


async def test_login_timeout(make_rig: RigFactory) -> None:
    rig = await make_rig(login_timeout=0.3)
    client = await rig.raw()
    assert (await client.line()).startswith(b"* BYE")
    assert await client.until_eof() == b""


async def test_id_and_wrong_state(rig: IMAPRig) -> None:
    client = await rig.raw()
    lines = await client.cmd(b'a ID ("name" "test")')
    assert lines == [b'* ID ("name" "mailstandby")\r\n']
    await client.cmd(b"b ID NIL")
    await client.cmd(b"c FETCH 1 FLAGS", b"BAD")


async def test_shutdown_says_bye(make_rig: RigFactory) -> None:
    rig = await make_rig()
    client = await rig.raw()
    await client.login()
    await rig.server.stop(0.1)
    assert await client.line() == b"* BYE server shutting down\r\n"
    assert await client.until_eof() == b""


async def test_imaplib_starttls(make_rig: RigFactory, client_tls: ssl.SSLContext) -> None:
    rig = await make_rig(allow_plaintext_auth_on_loopback=False)
    client = await rig.imap(None)
    with pytest.raises(imaplib.IMAP4.error):
        await call(client.login, ALICE, ALICE_PW)
    await call(client.starttls, client_tls)
    typ, _ = await call(client.login, ALICE, ALICE_PW)
    assert typ == "OK"
    await call(client.logout)
    await asyncio.sleep(0)


async def test_sasl_ir_empty_response_fails(rig: IMAPRig) -> None:
    client = await rig.raw()
    await client.cmd(b"a AUTHENTICATE PLAIN =", b"NO [AUTHENTICATIONFAILED]")
    await client.cmd(b"b AUTHENTICATE PLAIN !!!", b"BAD")
    await client.login()


class BrokenStore:
    """A store whose listing fails with a detail that must never reach the client."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def list_mailboxes(self, user: str) -> list[object]:
        raise RuntimeError("secret detail /var/lib/mailstandby")


async def test_internal_errors_do_not_leak(make_rig: RigFactory, caplog: pytest.LogCaptureFixture) -> None:
    from mailstandby.store.memory import MemoryMailboxStore

    rig = await make_rig(store=BrokenStore(MemoryMailboxStore()))
    client = await rig.raw()
    await client.login()
    await client.send(b'a LIST "" "*"\r\n')
    lines, done = await client.until(b"a")
    assert lines == []
    assert done == b"a NO [SERVERBUG] Internal error occurred. Refer to server log for more information.\r\n"
    assert "secret detail" in caplog.text  # the detail stays in the log
    await client.cmd(b"b NOOP")
