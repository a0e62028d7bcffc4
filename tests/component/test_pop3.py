"""The POP3 server on 127.0.0.1:0 with a MemoryMailboxStore, driven by poplib and raw bytes.

RFC 1939 (states, STAT/LIST/UIDL/TOP/RETR/DELE/RSET/QUIT, UPDATE), RFC 2449
(CAPA, PIPELINING, 255-octet lines), RFC 2595 (STLS), RFC 5034 (AUTH PLAIN),
RFC 3206 codes; RELIABILITY D9, P6, P10, A1, A2, A4, A8, T1, T2, X1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import poplib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pop3_harness import (
    ALICE,
    ALICE_PW,
    BOB,
    BOB_PW,
    HOSTNAME,
    SETTINGS,
    FakeAuthenticator,
    POP3Rig,
    RigFactory,
    message,
)

from mailstandby.config import POP3Settings
from mailstandby.pop3.server import POP3Server
from mailstandby.store.mailbox import FlagMode, MailboxError
from mailstandby.store.memory import MemoryMailboxStore

DOTS = message("dots", b"Hello\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n")
TWO = message("two", b"second\r\n")


@pytest.fixture
async def make_rig(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> AsyncIterator[RigFactory]:
    made: list[POP3Rig] = []

    async def make(
        *, store: MemoryMailboxStore | None = None, tls: bool = True, timeout: float | None = None, **overrides: Any
    ) -> POP3Rig:
        settings = POP3Settings(**{**SETTINGS, **({"listen_tls": []} if not tls else {}), **overrides})
        if timeout is not None:
            settings = settings.model_copy(update={"timeout": timeout})  # below the configurable minimum
        store = store or MemoryMailboxStore()
        auth = FakeAuthenticator({ALICE: ALICE_PW, BOB: BOB_PW})
        server = POP3Server(settings, store, auth, hostname=HOSTNAME, tls_context=server_tls if tls else None)
        rig = POP3Rig(server, store, auth, settings, client_tls)
        made.append(rig)
        await server.start()
        return rig

    yield make
    for rig in made:
        await rig.finish()
    current = asyncio.current_task()
    leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert leftover == [], f"tasks left running: {leftover}"


@pytest.fixture
async def rig(make_rig: RigFactory) -> POP3Rig:
    rig = await make_rig()
    await rig.deliver(DOTS)
    await rig.deliver(TWO)
    return rig


def plain(authcid: str, password: str, authzid: str = "") -> bytes:
    return base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode())


# -- poplib: the everyday conversation -------------------------------------------------


async def test_poplib_reads_the_maildrop(rig: POP3Rig) -> None:
    uidvalidity = (await rig.store.snapshot(ALICE, "INBOX")).info.uidvalidity

    def session(p: poplib.POP3) -> dict[str, Any]:
        p.user(ALICE)
        p.pass_(ALICE_PW)
        out = {"stat": p.stat(), "list": p.list()[1], "uidl": p.uidl()[1], "retr": p.retr(1)[1], "top": p.top(2, 0)[1]}
        p.quit()
        return out

    got = await rig.poplib(session)
    assert got["stat"] == (2, len(DOTS) + len(TWO))
    assert got["list"] == [f"1 {len(DOTS)}".encode(), f"2 {len(TWO)}".encode()]
    assert got["uidl"] == [f"1 {uidvalidity}.1".encode(), f"2 {uidvalidity}.2".encode()]
    assert b"\r\n".join(got["retr"]) + b"\r\n" == DOTS  # poplib undoes the dot-stuffing
    assert got["top"] == [b"From: sender@example.test", b"To: alice@corp.test", b"Subject: two", b""]


async def test_capabilities(rig: POP3Rig) -> None:
    c = await rig.connect()
    _, caps = await c.multiline(b"CAPA")
    assert caps == [
        b"TOP",
        b"UIDL",
        b"RESP-CODES",
        b"AUTH-RESP-CODE",
        b"PIPELINING",
        b"USER",
        b"SASL PLAIN",
        b"STLS",
        b"IMPLEMENTATION mailstandby",
    ]
    await c.login()
    _, after = await c.multiline(b"CAPA")
    assert after == caps  # RFC 2449 §5: AUTHORIZATION capabilities are announced in both states
    await c.quit()


# -- exact bytes on the wire -----------------------------------------------------------


async def test_exact_bytes(rig: POP3Rig) -> None:
    uidvalidity = (await rig.store.snapshot(ALICE, "INBOX")).info.uidvalidity
    c = await rig.connect()
    await c.login()
    assert await c.command(b"STAT", b"+OK") == f"+OK 2 {len(DOTS) + len(TWO)}\r\n".encode()
    assert await c.command(b"LIST 2", b"+OK") == f"+OK 2 {len(TWO)}\r\n".encode()
    assert await c.command(b"UIDL 1", b"+OK") == f"+OK 1 {uidvalidity}.1\r\n".encode()
    assert await c.command(b"RETR 1", b"+OK") == f"+OK {len(DOTS)} octets\r\n".encode()
    assert await c.body() == (
        b"From: sender@example.test\r\nTo: alice@corp.test\r\nSubject: dots\r\n\r\n"
        b"Hello\r\n..leading dot\r\n...two dots\r\n..\r\nend\r\n.\r\n"
    )
    await c.command(b"TOP 1 2", b"+OK")
    assert await c.body() == (
        b"From: sender@example.test\r\nTo: alice@corp.test\r\nSubject: dots\r\n\r\nHello\r\n..leading dot\r\n.\r\n"
    )
    status, lines = await c.multiline(b"LIST")
    assert status == f"+OK 2 messages ({len(DOTS) + len(TWO)} octets)\r\n".encode()
    assert lines == [f"1 {len(DOTS)}".encode(), f"2 {len(TWO)}".encode()]
    assert await c.quit() == b"+OK Logging out.\r\n"


async def test_stored_bare_line_ends_are_sent_as_crlf(make_rig: RigFactory) -> None:
    rig = await make_rig()
    await rig.deliver(b"Subject: lf\n\nline\n.\nend")
    c = await rig.connect()
    await c.login()
    await c.command(b"RETR 1", b"+OK")
    assert await c.body() == b"Subject: lf\r\n\r\nline\r\n..\r\nend\r\n.\r\n"
    await c.quit()


async def test_commands_are_case_insensitive(rig: POP3Rig) -> None:
    c = await rig.connect()
    await c.command(f"user {ALICE}".encode(), b"+OK")
    await c.command(f"pAsS {ALICE_PW}".encode(), b"+OK Logged in.")
    await c.command(b"stat", b"+OK 2 ")
    await c.quit()


# -- authentication ----------------------------------------------------------------------


@pytest.mark.parametrize("initial", [True, False], ids=["initial-response", "continuation"])
async def test_auth_plain(rig: POP3Rig, initial: bool) -> None:
    c = await rig.connect()
    if initial:
        await c.send(b"AUTH PLAIN " + plain(ALICE, ALICE_PW) + b"\r\n")
    else:
        await c.command(b"AUTH PLAIN", b"+ ")
        await c.send(plain(ALICE, ALICE_PW) + b"\r\n")
    await c.expect(b"+OK Logged in.")
    await c.command(b"STAT", b"+OK 2 ")
    await c.quit()


@pytest.mark.parametrize(
    ("lines", "reply"),
    [
        ([b"AUTH PLAIN " + plain(ALICE, "wrong")], b"-ERR [AUTH] Authentication failed.\r\n"),
        ([b"AUTH PLAIN " + plain(ALICE, ALICE_PW, authzid=BOB)], b"-ERR [AUTH] Authentication failed.\r\n"),
        ([b"AUTH PLAIN ="], b"-ERR [AUTH] Authentication failed.\r\n"),
        ([b"AUTH PLAIN", b"*"], b"-ERR Authentication aborted by client.\r\n"),
        ([b"AUTH PLAIN", b"not base64!"], b"-ERR Invalid arguments.\r\n"),
        ([b"AUTH CRAM-MD5"], b"-ERR Unsupported authentication mechanism.\r\n"),
    ],
    ids=["wrong-password", "other-authzid", "empty", "abort", "bad-base64", "unknown-mechanism"],
)
async def test_auth_plain_failures(rig: POP3Rig, lines: list[bytes], reply: bytes) -> None:
    c = await rig.connect()
    for i, line in enumerate(lines):
        await c.send(line + b"\r\n")
        if i < len(lines) - 1:
            await c.expect(b"+ ")
    assert await c.line() == reply
    await c.login()  # the session is still usable
    await c.quit()


async def test_auth_without_mechanism_lists_plain(rig: POP3Rig) -> None:
    c = await rig.connect()
    _, mechs = await c.multiline(b"AUTH")
    assert mechs == [b"PLAIN"]
    await c.quit()


async def test_wrong_password_and_unknown_user_look_the_same(rig: POP3Rig) -> None:
    # RELIABILITY A2: identical bytes for every failure, USER included
    replies = []
    for user, password in [(ALICE, "wrong"), ("nobody@corp.test", "wrong"), (ALICE, "")]:
        c = await rig.connect()
        replies.append(await c.command(f"USER {user}".encode(), b"+OK"))
        replies.append(await c.command(f"PASS {password}".encode(), b"-ERR"))
        await c.quit()
    assert replies[0::2] == [b"+OK\r\n"] * 3
    assert replies[1::2] == [b"-ERR [AUTH] Authentication failed.\r\n"] * 3


async def test_pass_needs_user_and_user_is_forgotten_after_a_failure(rig: POP3Rig) -> None:
    c = await rig.connect()
    await c.command(f"PASS {ALICE_PW}".encode(), b"-ERR No username given.")
    await c.command(f"USER {ALICE}".encode(), b"+OK")
    await c.command(b"PASS wrong", b"-ERR [AUTH]")
    await c.command(f"PASS {ALICE_PW}".encode(), b"-ERR No username given.")
    await c.login()
    await c.quit()


async def test_password_with_spaces(make_rig: RigFactory) -> None:
    rig = await make_rig()
    rig.auth.users[BOB] = " lead and trail "
    c = await rig.connect()
    await c.command(f"USER {BOB}".encode(), b"+OK")
    await c.command(b"PASS  lead and trail ", b"+OK Logged in.")
    await c.quit()


async def test_commands_in_the_wrong_state(make_rig: RigFactory) -> None:
    rig = await make_rig(max_bad_commands=10)
    c = await rig.connect()
    for cmd in (b"STAT", b"LIST", b"RETR 1", b"DELE 1", b"NOOP"):
        await c.command(cmd, b"-ERR Command not valid in this state.")
    await c.login()
    await c.command(f"USER {ALICE}".encode(), b"-ERR Command not valid in this state.")
    await c.command(b"STLS", b"-ERR Command not valid in this state.")
    await c.quit()


async def test_sessions_per_user_and_address_are_limited(rig: POP3Rig) -> None:
    # RELIABILITY A8 (max_connections_per_user = 3 here); other users are unaffected
    first = [await rig.connect() for _ in range(3)]
    for c in first:
        await c.login()
    extra = await rig.connect()
    await extra.command(f"USER {ALICE}".encode(), b"+OK")
    await extra.command(f"PASS {ALICE_PW}".encode(), b"-ERR [IN-USE] ")
    bob = await rig.connect()
    await bob.login(BOB, BOB_PW)
    await first[0].quit()
    await rig_wait(lambda: len(rig.server.sessions) == 4)
    await extra.login()
    for c in [*first[1:], extra, bob]:
        await c.quit()


async def rig_wait(condition: Any) -> None:
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.005)


async def test_a_failing_authenticator_is_a_temporary_error(rig: POP3Rig) -> None:
    async def broken(username: str, password: str, *, peer: str, protocol: str) -> str | None:
        raise ConnectionError("directory unreachable")

    real = rig.auth.authenticate
    rig.auth.authenticate = broken  # type: ignore[method-assign]
    c = await rig.connect()
    await c.command(f"USER {ALICE}".encode(), b"+OK")
    await c.command(f"PASS {ALICE_PW}".encode(), b"-ERR [SYS/TEMP] ")
    rig.auth.authenticate = real  # type: ignore[method-assign]
    await c.login()
    await c.quit()


async def test_a_maildrop_that_cannot_be_opened_is_a_temporary_error(make_rig: RigFactory) -> None:
    class BrokenSnapshot(MemoryMailboxStore):
        fail = True

        async def snapshot(self, user: str, name: str) -> Any:
            if self.fail:
                raise MailboxError("cannot", "disk on fire")
            return await super().snapshot(user, name)

    store = BrokenSnapshot()
    rig = await make_rig(store=store, max_connections_per_user=1)
    c = await rig.connect()
    await c.command(f"USER {ALICE}".encode(), b"+OK")
    await c.command(f"PASS {ALICE_PW}".encode(), b"-ERR [SYS/TEMP] Unable to open the maildrop")
    store.fail = False
    await c.login()  # the failed attempt did not keep the only login slot
    await c.quit()


# -- deletion (RFC 1939 §6, RELIABILITY D9) ---------------------------------------------


async def test_dele_and_quit_removes_through_the_store(rig: POP3Rig) -> None:
    c = await rig.connect()
    await c.login()
    await c.command(b"DELE 1", b"+OK Marked to be deleted.")
    await c.command(b"RETR 1", b"-ERR Message is deleted.")
    await c.command(b"DELE 1", b"-ERR Message is deleted.")
    await c.command(b"LIST 1", b"-ERR Message is deleted.")
    await c.command(b"STAT", f"+OK 1 {len(TWO)}".encode())
    _, lines = await c.multiline(b"LIST")
    assert lines == [f"2 {len(TWO)}".encode()]
    _, uidls = await c.multiline(b"UIDL")
    assert [u.split()[0] for u in uidls] == [b"2"]
    assert [m.uid for m in await rig.inbox()] == [1, 2]  # nothing happens before QUIT
    await c.quit()
    (left,) = await rig.inbox()
    assert left.uid == 2 and "\\Deleted" not in left.flags  # what IMAP sees


async def test_dele_then_dropped_connection_deletes_nothing(rig: POP3Rig) -> None:
    c = await rig.connect()
    await c.login()
    await c.command(b"DELE 1", b"+OK")
    await c.command(b"DELE 2", b"+OK")
    await c.command(b"RETR 2", b"-ERR")
    await c.close()  # no QUIT
    await rig.sessions_gone()
    assert [(m.uid, m.flags) for m in await rig.inbox()] == [(1, frozenset()), (2, frozenset())]


async def test_rset_undeletes(rig: POP3Rig) -> None:
    c = await rig.connect()
    await c.login()
    await c.command(b"DELE 1", b"+OK")
    await c.command(b"DELE 2", b"+OK")
    await c.command(b"STAT", b"+OK 0 0")
    assert await c.command(b"RSET", b"+OK") == f"+OK 2 messages ({len(DOTS) + len(TWO)} octets)\r\n".encode()
    await c.command(b"DELE 2", b"+OK")
    await c.quit()
    assert [m.uid for m in await rig.inbox()] == [1]


async def test_retr_marks_seen_at_quit_and_top_does_not(make_rig: RigFactory) -> None:
    rig = await make_rig()
    for i in range(3):
        await rig.deliver(message(f"m{i}"))
    c = await rig.connect()
    await c.login()
    await c.command(b"RETR 1", b"+OK")
    await c.body()
    await c.command(b"TOP 2 5", b"+OK")
    await c.body()
    assert all(not m.flags for m in await rig.inbox())  # applied in UPDATE only
    await c.quit()
    assert [m.flags for m in await rig.inbox()] == [{"\\Seen"}, frozenset(), frozenset()]


async def test_dele_leaves_messages_deleted_by_imap_alone(rig: POP3Rig) -> None:
    # an IMAP client flagged message 2 \Deleted without expunging: POP3's QUIT expunges only its own DELEs
    c = await rig.connect()
    await c.login()
    await rig.store.store_flags(ALICE, "INBOX", [2], frozenset({"\\Deleted"}), FlagMode.ADD)
    await c.command(b"DELE 1", b"+OK")
    await c.quit()
    assert [(m.uid, m.flags) for m in await rig.inbox()] == [(2, {"\\Deleted"})]


async def test_a_failed_update_says_so(make_rig: RigFactory) -> None:
    class BrokenExpunge(MemoryMailboxStore):
        async def expunge(self, user: str, name: str, uids: list[int] | None = None) -> list[int]:
            raise MailboxError("cannot", "disk on fire")

    rig = await make_rig(store=BrokenExpunge())
    await rig.deliver(DOTS)
    c = await rig.connect()
    await c.login()
    await c.command(b"DELE 1", b"+OK")
    await c.send(b"QUIT\r\n")
    assert await c.until_eof() == b"-ERR [SYS/TEMP] Some deleted messages were not removed.\r\n"


# -- the maildrop is a snapshot; UIDL is stable (RFC 1939 §7, §8) --------------------


async def test_uidl_is_stable_across_sessions(rig: POP3Rig) -> None:
    async def uidls() -> dict[bytes, bytes]:
        c = await rig.connect()
        await c.login()
        _, lines = await c.multiline(b"UIDL")
        await c.quit()
        return {u: n for n, u in (line.split() for line in lines)}

    first = await uidls()
    second = await uidls()
    assert first == second and len(first) == 2
    c = await rig.connect()
    await c.login()
    await c.command(b"DELE 1", b"+OK")
    await c.quit()
    third = await uidls()
    assert set(third) < set(first)  # the survivor keeps its unique id (now as message 1)
    assert list(third.values()) == [b"1"]


async def test_mail_arriving_during_a_session_waits_for_the_next_one(rig: POP3Rig) -> None:
    c = await rig.connect()
    await c.login()
    await rig.deliver(message("late"))
    await c.command(b"STAT", b"+OK 2 ")
    await c.command(b"RETR 3", b"-ERR There's no message with that number.")
    await c.quit()
    c = await rig.connect()
    await c.login()
    await c.command(b"STAT", b"+OK 3 ")
    await c.quit()


async def test_a_message_expunged_by_imap_during_the_session(rig: POP3Rig) -> None:
    c = await rig.connect()
    await c.login()
    await rig.store.store_flags(ALICE, "INBOX", [1], frozenset({"\\Deleted"}), FlagMode.ADD)
    await rig.store.expunge(ALICE, "INBOX")
    await c.command(b"RETR 1", b"-ERR Message was expunged by another session.")
    await c.command(b"DELE 1", b"+OK")
    await c.command(b"RETR 2", b"+OK")
    await c.body()
    await c.quit()
    assert [m.uid for m in await rig.inbox()] == [2]


async def test_users_see_only_their_own_maildrop(rig: POP3Rig) -> None:
    await rig.deliver(message("for bob"), user=BOB)
    c = await rig.connect()
    await c.login(BOB, BOB_PW)
    await c.command(b"STAT", b"+OK 1 ")
    await c.command(b"RETR 2", b"-ERR There's no message with that number.")
    await c.command(b"RETR 1", b"+OK")
    assert b"Subject: for bob" in await c.body()
    await c.quit()


# -- TLS (RFC 2595, RFC 8314; RELIABILITY A1, T1, T2) ------------------------------------


async def test_stls_with_poplib(rig: POP3Rig) -> None:
    def session(p: poplib.POP3) -> tuple[dict[str, Any], tuple[int, int]]:
        p.stls(rig.client_tls)
        caps = p.capa()
        p.user(ALICE)
        p.pass_(ALICE_PW)
        stat = p.stat()
        p.quit()
        return caps, stat

    caps, stat = await rig.poplib(session)
    assert "STLS" not in caps and "USER" in caps
    assert stat[0] == 2


async def test_implicit_tls_with_poplib(rig: POP3Rig) -> None:
    def session(p: poplib.POP3) -> tuple[dict[str, Any], tuple[int, int]]:
        caps = p.capa()
        p.user(ALICE)
        p.pass_(ALICE_PW)
        stat = p.stat()
        p.quit()
        return caps, stat

    caps, stat = await rig.poplib(session, tls=True)
    assert "STLS" not in caps and "SASL" in caps
    assert stat == (2, len(DOTS) + len(TWO))


async def test_plaintext_auth_is_refused_before_tls(make_rig: RigFactory) -> None:
    rig = await make_rig(allow_plaintext_auth_on_loopback=False)
    await rig.deliver(DOTS)
    refused = b"-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n"
    c = await rig.connect()
    _, caps = await c.multiline(b"CAPA")
    assert b"USER" not in caps and b"SASL PLAIN" not in caps and b"STLS" in caps
    assert await c.command(f"USER {ALICE}".encode(), b"-ERR") == refused
    assert await c.command(b"AUTH PLAIN " + plain(ALICE, ALICE_PW), b"-ERR") == refused
    assert await c.command(f"PASS {ALICE_PW}".encode(), b"-ERR") == refused
    await c.command(b"STLS", b"+OK Begin TLS negotiation now.")
    await c.starttls(rig.client_tls)
    _, caps = await c.multiline(b"CAPA")
    assert b"USER" in caps and b"SASL PLAIN" in caps and b"STLS" not in caps
    await c.command(b"STLS", b"-ERR TLS is already active.")
    await c.login()
    await c.quit()
    assert [a[0] for a in rig.auth.attempts] == [ALICE]  # no credentials reached the authenticator in clear


async def test_plaintext_auth_on_implicit_tls(make_rig: RigFactory) -> None:
    rig = await make_rig(allow_plaintext_auth_on_loopback=False)
    c = await rig.connect(tls=True)
    await c.login()
    await c.quit()


@pytest.mark.parametrize("injected", [b"CAPA\r\n", f"USER {ALICE}\r\n".encode(), b"QUIT\r\n"])
async def test_stls_buffered_command_injection(rig: POP3Rig, injected: bytes) -> None:
    c = await rig.connect()
    await c.send(b"STLS\r\n" + injected)  # one write, as the attack does
    await c.expect(b"+OK Begin TLS")
    await c.starttls(rig.client_tls)
    # had USER run inside TLS, PASS would now be accepted
    await c.command(f"PASS {ALICE_PW}".encode(), b"-ERR No username given.")
    await c.send(b"NOOP\r\nQUIT\r\n")
    rest = await c.until_eof()
    assert rest == b"-ERR Command not valid in this state.\r\n+OK Logging out.\r\n"


async def test_stls_without_a_certificate(make_rig: RigFactory) -> None:
    rig = await make_rig(tls=False)
    c = await rig.connect()
    _, caps = await c.multiline(b"CAPA")
    assert b"STLS" not in caps
    await c.command(b"STLS", b"-ERR TLS support isn't enabled.")
    await c.quit()


async def test_garbage_instead_of_client_hello_closes_cleanly(rig: POP3Rig, caplog: pytest.LogCaptureFixture) -> None:
    # RELIABILITY T4, after STLS and on the implicit-TLS port
    caplog.set_level(logging.INFO, logger="mailstandby")
    c = await rig.connect()
    await c.command(b"STLS", b"+OK")
    await c.send(b"this is not a TLS ClientHello\r\n" * 100)
    assert not (await c.until_eof()).startswith(b"+OK")  # never a POP3 reply in clear
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.tls_port)
    writer.write(b"USER alice\r\n" * 100)
    async with asyncio.timeout(10):
        assert not (await reader.read()).startswith(b"+OK")
    writer.close()
    await rig.sessions_gone()
    assert not [r for r in caplog.records if r.name.startswith("mailstandby") and r.levelno >= logging.ERROR]
    c = await rig.connect()  # the server is fine
    await c.login()
    await c.quit()


# -- abuse (RELIABILITY P6, P10, X1) ------------------------------------------------------


async def test_bad_command_limit(rig: POP3Rig) -> None:
    c = await rig.connect()
    for cmd in (b"HELO", b"STAT", b"RETR x", b"XYZZY"):
        await c.command(cmd, b"-ERR")
    for _ in range(10):  # not bad commands: they do not count
        await c.command(b"CAPA", b"+OK")
        await c.body()
    await c.send(b"GARBAGE\r\n")
    assert await c.until_eof() == b"-ERR Too many bad commands.\r\n"


async def test_no_such_message_is_not_a_bad_command(rig: POP3Rig) -> None:
    c = await rig.connect()
    await c.login()
    for _ in range(8):
        await c.command(b"RETR 99", b"-ERR There's no message with that number.")
    await c.command(b"NOOP", b"+OK")
    await c.quit()


async def test_failed_logins_count_as_bad_commands(rig: POP3Rig) -> None:
    c = await rig.connect()
    for _ in range(4):
        await c.command(f"USER {ALICE}".encode(), b"+OK")
        await c.command(b"PASS guess", b"-ERR [AUTH]")
    await c.command(f"USER {ALICE}".encode(), b"+OK")
    await c.send(b"PASS guess\r\n")
    assert await c.until_eof() == b"-ERR Too many bad commands.\r\n"


async def test_overlong_line(rig: POP3Rig) -> None:
    c = await rig.connect()
    await c.command(b"USER " + b"a" * 248, b"+OK")  # 255 octets with CRLF: the RFC 2449 maximum
    await c.command(b"USER " + b"a" * 249, b"-ERR Line too long.")
    await c.command(b"NOOP " + b"x" * 100_000, b"-ERR Line too long.")
    await c.login()
    await c.quit()


async def test_nul_byte_is_refused_and_the_session_goes_on(rig: POP3Rig) -> None:
    c = await rig.connect()
    await c.command(f"USER {ALICE}\x00bob".encode(), b"-ERR NUL character in command.")
    await c.command(b"PASS x\x00y", b"-ERR NUL character in command.")
    await c.login()
    await c.command(b"RETR 1\x00", b"-ERR NUL character in command.")
    await c.command(b"STAT", b"+OK 2 ")
    await c.quit()


async def test_pipelined_commands_get_ordered_replies(rig: POP3Rig) -> None:
    uidvalidity = (await rig.store.snapshot(ALICE, "INBOX")).info.uidvalidity
    c = await rig.connect()
    commands = [
        "CAPA",
        f"USER {ALICE}",
        f"PASS {ALICE_PW}",
        "STAT",
        "UIDL",
        "RETR 2",
        "BOGUS",
        "DELE 2",
        "LIST",
        "QUIT",
    ]
    await c.send("".join(f"{cmd}\r\n" for cmd in commands).encode())  # one write
    transcript = await c.until_eof()
    total = len(DOTS) + len(TWO)
    assert transcript.startswith(b"+OK Capability list follows\r\n")
    assert transcript.split(b"IMPLEMENTATION mailstandby\r\n.\r\n", 1)[1] == (
        b"+OK\r\n+OK Logged in.\r\n"
        + f"+OK 2 {total}\r\n".encode()
        + f"+OK\r\n1 {uidvalidity}.1\r\n2 {uidvalidity}.2\r\n.\r\n".encode()
        + f"+OK {len(TWO)} octets\r\n".encode()
        + TWO
        + b".\r\n-ERR Unknown command.\r\n+OK Marked to be deleted.\r\n"
        + f"+OK 1 messages ({len(DOTS)} octets)\r\n1 {len(DOTS)}\r\n.\r\n".encode()
        + b"+OK Logging out.\r\n"
    )
    assert [m.uid for m in await rig.inbox()] == [1]


async def test_idle_session_times_out(make_rig: RigFactory) -> None:
    rig = await make_rig(timeout=0.3)
    c = await rig.connect()
    await c.login()
    await c.command(b"DELE 1", b"-ERR")  # an empty maildrop
    assert await c.until_eof() == b"-ERR Disconnected for inactivity.\r\n"


async def test_shutdown_says_goodbye_and_closes(rig: POP3Rig) -> None:
    idle = await rig.connect()
    busy = await rig.connect()
    await busy.login()
    await busy.command(b"DELE 1", b"+OK")
    await rig.server.stop(0)
    assert await idle.until_eof() == b"-ERR server shutting down\r\n"
    assert await busy.until_eof() == b"-ERR server shutting down\r\n"
    assert rig.server.sessions == {}
    assert [m.uid for m in await rig.inbox()] == [1, 2]  # shutdown is no QUIT: nothing deleted


# -- secrets never reach the log (STYLE §3, aiosmtpd) -------------------------------------


async def test_passwords_are_never_logged(rig: POP3Rig, caplog: pytest.LogCaptureFixture) -> None:
    secrets = [ALICE_PW, "wrong-Pa55word", BOB_PW]
    blobs = [plain(BOB, BOB_PW).decode(), plain(ALICE, "wrong-Pa55word").decode(), plain(ALICE, ALICE_PW).decode()]
    caplog.set_level(1)
    c = await rig.connect()
    await c.command(f"USER {ALICE}".encode(), b"+OK")
    await c.command(b"PASS wrong-Pa55word", b"-ERR")
    await c.command(b"AUTH PLAIN " + blobs[1].encode(), b"-ERR")
    await c.command(b"AUTH PLAIN", b"+ ")
    await c.command(blobs[1].encode(), b"-ERR")
    await c.command(b"AUTH PLAIN " + blobs[2].encode(), b"+OK")
    await c.quit()
    c = await rig.connect()
    await c.command(b"AUTH PLAIN", b"+ ")
    await c.command(blobs[0].encode(), b"+OK")
    await c.quit()
    c = await rig.connect()
    await c.login()
    await c.quit()
    await rig.sessions_gone()
    assert any(r.levelno < logging.DEBUG for r in caplog.records), "TRACE records should have been captured"
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + str(record.__dict__)
        for secret in secrets + blobs:
            assert secret not in text, f"{secret!r} logged by {record.name}: {record.getMessage()}"


async def test_a_busy_session_still_ends_at_the_session_time_limit(make_rig: RigFactory) -> None:
    """RELIABILITY X1: NOOPs keep every read short, the hard cap ends the session anyway. A client writing
    at the moment the server closes may see a reset instead of the -ERR (TCP drops the reply then)."""
    rig = await make_rig(max_session_time=0.6)
    c = await rig.connect()
    await c.login()
    seen: list[bytes] = []
    with contextlib.suppress(AssertionError, ConnectionError):  # the harness asserts on a closed connection
        async with asyncio.timeout(5):
            while True:
                await c.send(b"NOOP\r\n")
                seen.append(await c.line())
                if not seen[-1].startswith(b"+OK"):
                    break
                await asyncio.sleep(0.1)
    assert all(line.startswith(b"+OK") for line in seen[:-1])
    assert seen[-1].startswith(b"+OK") or seen[-1] == b"-ERR [SYS/TEMP] Session time limit reached, reconnect.\r\n"
    await rig.sessions_gone()
