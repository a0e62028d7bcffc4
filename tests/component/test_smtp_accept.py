"""Accepting mail: the happy path, recipient policy, command order, size and store limits.

Each test is a named regression for a promise in DESIGN.md or RELIABILITY.md
(D4, D5, X3, X4, P2, P5, R1, R2).
"""

from __future__ import annotations

import smtplib

import pytest
from smtp_harness import HOSTNAME, BufferPeak, Gateway, GatewayFactory, RawClient, message, split_received

from mailstandby.store.base import StoreError


async def send_message(
    c: RawClient, data: bytes, *, sender: str = "sender@example.test", rcpts: tuple[str, ...] = ("alice@corp.test",)
) -> str:
    """A whole transaction on a greeted client; returns the queue id from the 250."""
    await c.command(f"MAIL FROM:<{sender}>", "250 2.1.0")
    for r in rcpts:
        await c.command(f"RCPT TO:<{r}>", "250 2.1.5")
    await c.command("DATA", "354 ")
    await c.send(data + b".\r\n")
    r = await c.expect("250 2.0.0 Ok: queued as ")
    return r.last.rsplit(" ", 1)[1]


# -- happy path ------------------------------------------------------------------------


async def test_happy_path_smtplib_starttls_stores_exact_bytes(gw: Gateway) -> None:
    # includes lines that need dot-stuffing, 8-bit bytes and a trailing-space line
    original = message(
        "happy", b"line one\r\n.leading dot\r\n..two dots\r\n.\r\ntrailing space \r\n\xc3\xa9t\xc3\xa9\r\n"
    )

    def client(s: smtplib.SMTP) -> tuple[bool, tuple[int, bytes]]:
        s.ehlo()
        offered = s.has_extn("starttls")
        s.starttls(context=gw.client_tls)  # verifies the trustme CA and the name 127.0.0.1
        s.ehlo()
        assert not s.has_extn("starttls")
        assert s.has_extn("size") and s.esmtp_features["size"] == str(gw.settings.max_message_size)
        assert s.mail("sender@example.test")[0] == 250
        assert s.rcpt("alice@corp.test")[0] == 250
        return offered, s.data(original)

    offered, (code, text) = await gw.smtp(client)
    assert offered
    assert code == 250
    queue_id = text.decode().rsplit(" ", 1)[1]

    assert [m.id for m in gw.accepted] == [queue_id]
    queued = gw.accepted[0]
    assert queued.sender == "sender@example.test"
    assert [r.rcpt for r in queued.recipients] == ["alice@corp.test"]
    assert await gw.stored_ids() == {queue_id}

    stored = await gw.body(queued)
    received, rest = split_received(stored)
    assert rest == original  # byte-identical after our one header (R6: DKIM survives)
    assert f"id {queue_id}".encode() in received
    assert b"with ESMTPS" in received  # RFC 3848: ESMTP over TLS
    assert received.startswith(b"Received: from client.test ([127.0.0.1])")
    assert f"by {HOSTNAME}".encode() in received
    assert b"for <alice@corp.test>" in received
    assert queued.size == len(stored)


async def test_plain_transaction_raw(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    data = message("raw")
    queue_id = await send_message(c, data, rcpts=("alice@corp.test", "bob@corp.test"))
    await c.quit()
    (queued,) = gw.accepted
    assert queued.id == queue_id
    assert [r.rcpt for r in queued.recipients] == ["alice@corp.test", "bob@corp.test"]
    received, rest = split_received(await gw.body(queued))
    assert rest == data
    assert b"with ESMTP id" in received and b"for <" not in received  # no "for" with two recipients


async def test_helo_session_gets_no_enhanced_codes(gw: Gateway) -> None:
    c = await gw.connect()
    await c.command("HELO client.test", f"250 {HOSTNAME}")
    await c.command("MAIL FROM:<s@example.test>", "250 Ok")
    await c.command("MAIL FROM:<s@example.test>", "503 Error: nested MAIL command")
    await c.command("RCPT TO:<alice@corp.test>", "250 Ok")
    await c.command("DATA", "354 ")
    await c.send(b"Subject: x\r\n\r\nhi\r\n.\r\n")
    await c.expect("250 Ok: queued as ")  # the queue id, still without an enhanced code
    await c.quit()
    (queued,) = gw.accepted
    received, _ = split_received(await gw.body(queued))
    assert b"with SMTP id" in received


@pytest.mark.parametrize(
    ("helo", "smtputf8", "shown"),
    [
        ("evil\x1b[31m.test", False, b"evil?[31m.test"),  # terminal escapes (RELIABILITY X9)
        ("tab\tname.test", False, b"tab?name.test"),
        ("(fake)host.test", False, b"fakehost.test"),  # no comment injection
        ("b\u00fccher.test", False, b"b?cher.test"),  # a 7-bit message keeps ASCII headers
        ("b\u00fccher.test", True, "b\u00fccher.test".encode()),
    ],
)
async def test_received_header_sanitizes_the_helo_name(gw: Gateway, helo: str, smtputf8: bool, shown: bytes) -> None:
    c = await gw.connect()
    await c.command(f"EHLO {helo}".encode(), "250 ")
    await c.command("MAIL FROM:<s@example.test>" + (" SMTPUTF8" if smtputf8 else ""), "250 2.1.0")
    await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")
    await c.command("DATA", "354 ")
    await c.send(message() + b".\r\n")
    await c.expect("250 2.0.0")
    await c.quit()
    received, _ = split_received(await gw.body(gw.accepted[0]))
    assert received.startswith(b"Received: from " + shown + b" ([127.0.0.1])")
    if not smtputf8:
        assert received.isascii()
    assert all(b >= 0x20 or b in b"\t\r\n" for b in received)


async def test_ehlo_advertises_limits(gw: Gateway) -> None:
    c = await gw.connect()
    r = await c.ehlo("client.test")
    assert r.lines[0] == f"250-{HOSTNAME}"
    assert set(r.texts[1:]) == {
        f"SIZE {64 * 1024}",
        "8BITMIME",
        "PIPELINING",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "DSN",
        "CHUNKING",
        "STARTTLS",
    }
    await c.quit()


async def test_no_starttls_offered_without_a_certificate(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(tls=False)
    c = await gw.connect()
    r = await c.ehlo()
    assert "STARTTLS" not in r.texts
    await c.command("STARTTLS", "454 4.7.0")
    await c.quit()


async def test_empty_message(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await send_message(c, b"")
    await c.quit()
    (queued,) = gw.accepted
    _, rest = split_received(await gw.body(queued))
    assert rest == b""


async def test_the_crlf_before_the_dot_belongs_to_the_message(gw: Gateway) -> None:
    # the CRLF before "." belongs to the last line of the message (RFC 5321 §4.1.1.4)
    c = await gw.connect()
    await c.ehlo()
    await send_message(c, b"Subject: x\r\n\r\nlast line\r\n")
    await c.quit()
    _, rest = split_received(await gw.body(gw.accepted[0]))
    assert rest.endswith(b"last line\r\n")


# -- recipients (R1, R2, X4) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("rcpt", "reply"),
    [
        ("alice@corp.test", "250 2.1.5"),
        ("a.l@corp.test", "250 2.1.5"),  # alias
        ("ALICE@CORP.TEST", "250 2.1.5"),  # lookups are case-insensitive
        ("bob@corp.test.", "501 5.1.3"),  # trailing-dot trick: refused as syntax, never relayed
        ("carol@corp.test", "550 5.1.1"),  # unknown user in our domain: no backscatter
        ("alice@other.test", "554 5.7.1"),  # other domain: never an open relay
        ("alice@corp.test.other.test", "554 5.7.1"),
        ("alice@sub.corp.test", "554 5.7.1"),
        ("alice@[127.0.0.1]", "554 5.7.1"),
        ("alice%other.test@corp.test", "550 5.1.1"),  # percent hack resolves only locally, and fails
        ('"alice@other.test"@corp.test', "550 5.1.1"),
        ("@corp.test:alice@other.test", "554 5.7.1"),  # source route ignored: the mailbox decides
        ("<>", "501 5.1.3"),
    ],
)
async def test_rcpt_policy(gw: Gateway, rcpt: str, reply: str) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    arg = "<>" if rcpt == "<>" else f"<{rcpt}>"
    await c.command(f"RCPT TO:{arg}", reply)
    await c.quit()


async def test_unknown_and_relay_recipients_are_not_stored(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("RCPT TO:<carol@corp.test>", "550 5.1.1")
    await c.command("RCPT TO:<x@other.test>", "554 5.7.1")
    await c.command("DATA", "554 5.5.1")  # no valid recipients
    await c.command("RCPT TO:<bob@corp.test>", "250 2.1.5")
    await c.command("DATA", "354 ")
    await c.send(message() + b".\r\n")
    await c.expect("250 2.0.0")
    await c.quit()
    (queued,) = gw.accepted
    assert [r.rcpt for r in queued.recipients] == ["bob@corp.test"]


async def test_too_many_recipients_452_and_the_first_ones_get_the_mail(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(max_recipients=2)
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")
    await c.command("RCPT TO:<bob@corp.test>", "250 2.1.5")
    await c.command("RCPT TO:<a.l@corp.test>", "452 4.5.3")  # 452, not 552 (RFC 5321 §4.5.3.1.10)
    await c.command("RCPT TO:<carol@corp.test>", "452 4.5.3")
    await c.command("DATA", "354 ")
    await c.send(message() + b".\r\n")
    await c.expect("250 2.0.0")
    await c.quit()
    (queued,) = gw.accepted
    assert [r.rcpt for r in queued.recipients] == ["alice@corp.test", "bob@corp.test"]


async def test_every_rcpt_counts_towards_the_recipient_limit(gw: Gateway) -> None:
    """Duplicates and refused addresses count too (as Postfix's anvil counts RCPTs): probing
    addresses in one transaction ends at the limit, however the probes were answered."""
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")
    await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")  # a duplicate
    await c.command("RCPT TO:<nobody@corp.test>", "550 5.1.1")  # refused
    await c.command("RCPT TO:<x@elsewhere.test>", "554 5.7.1")  # refused
    await c.command("RCPT TO:<bob@corp.test>", "250 2.1.5")  # the fifth: max_recipients
    await c.command("RCPT TO:<carol@corp.test>", "452 4.5.3")
    await c.command("RSET", "250 2.0.0")  # a new transaction starts a new count
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")
    await c.quit()


async def test_duplicate_recipients_are_stored_once(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    rcpts = ("alice@corp.test", "alice@corp.test", "Alice@Corp.Test", "bob@corp.test", "bob@CORP.test")
    await send_message(c, message(), rcpts=rcpts)
    await c.quit()
    (queued,) = gw.accepted
    assert [r.rcpt for r in queued.recipients] == ["alice@corp.test", "bob@corp.test"]
    assert sorted(d["rcpt"] for d in gw.store.deliveries(queued.id)) == ["alice@corp.test", "bob@corp.test"]


async def test_null_sender_accepted(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await send_message(c, message("bounce"), sender="")
    await c.quit()
    assert gw.accepted[0].sender == ""


# -- command order (P5) ----------------------------------------------------------------


async def test_rcpt_before_mail_503(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command("RCPT TO:<alice@corp.test>", "503 5.5.1")
    await c.quit()


async def test_data_without_mail_503_and_without_rcpt_554(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command("DATA", "503 5.5.1 Error: need MAIL command")
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("DATA", "554 5.5.1 Error: no valid recipients")
    await c.quit()
    assert gw.accepted == []


async def test_nested_mail_503(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("MAIL FROM:<t@example.test>", "503 5.5.1 Error: nested MAIL command")
    await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")
    await c.command("MAIL FROM:<t@example.test>", "503 5.5.1")
    await c.quit()


@pytest.mark.parametrize("command", ["MAIL FROM:<s@example.test>", "RCPT TO:<alice@corp.test>", "DATA"])
async def test_transaction_commands_before_ehlo_503(gw: Gateway, command: str) -> None:
    c = await gw.connect()
    # before EHLO there are no enhanced status codes (RFC 2034): check code and text
    await c.command(command, "503 Error: send HELO/EHLO first")
    await c.quit()


@pytest.mark.parametrize("arg", ["", "two words"])
async def test_ehlo_needs_one_argument(gw: Gateway, arg: str) -> None:
    c = await gw.connect()
    await c.command(f"EHLO {arg}".strip(), "501 ")
    await c.command("MAIL FROM:<s@example.test>", "503 ")  # still not greeted
    await c.quit()


async def test_rset_clears_the_transaction(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")
    await c.command("RSET", "250 2.0.0")
    await c.command("DATA", "503 5.5.1")  # the transaction is gone
    await c.command("RCPT TO:<alice@corp.test>", "503 5.5.1")
    await c.command("MAIL FROM:<t@example.test>", "250 2.1.0")  # not "nested"
    await c.command("RCPT TO:<bob@corp.test>", "250 2.1.5")
    await c.command("DATA", "354 ")
    await c.send(message() + b".\r\n")
    await c.expect("250 2.0.0")
    await c.quit()
    (queued,) = gw.accepted
    assert queued.sender == "t@example.test"
    assert [r.rcpt for r in queued.recipients] == ["bob@corp.test"]


async def test_ehlo_also_clears_the_transaction(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.ehlo()
    await c.command("RCPT TO:<alice@corp.test>", "503 5.5.1")
    await c.quit()


async def test_every_command_gets_exactly_one_reply(gw: Gateway) -> None:
    c = await gw.connect()
    commands = [
        (b"EHLO client.test", "250 "),
        (b"NOOP", "250 2.0.0"),
        (b"RCPT TO:<alice@corp.test>", "503 5.5.1"),
        (b"VRFY alice", "252 2.0.0"),
        (b"EXPN staff", "502 5.5.1"),
        (b"HELP", "214 2.0.0"),
        (b"MAIL FROM:<s@example.test>", "250 2.1.0"),
        (b"RCPT TO:<bob@corp.test>", "250 2.1.5"),
        (b"RSET", "250 2.0.0"),
        (b"QUIT", "221 2.0.0"),
    ]
    await c.send(b"".join(line + b"\r\n" for line, _ in commands))
    replies = await c.replies_until_eof()
    assert [r.last[: len(p)] for r, (_, p) in zip(replies, commands, strict=False)] == [p for _, p in commands]
    assert len(replies) == len(commands)


async def test_pipelined_mail_rcpts_data_get_replies_in_order(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.send(
        b"MAIL FROM:<s@example.test>\r\n"
        b"RCPT TO:<alice@corp.test>\r\n"
        b"RCPT TO:<nobody@corp.test>\r\n"
        b"RCPT TO:<bob@corp.test>\r\n"
        b"DATA\r\n"
    )
    for prefix in ("250 2.1.0", "250 2.1.5", "550 5.1.1", "250 2.1.5", "354 "):
        await c.expect(prefix)
    data = message("pipelined")
    await c.send(data + b".\r\n")
    await c.expect("250 2.0.0")
    await c.quit()
    (queued,) = gw.accepted
    assert [r.rcpt for r in queued.recipients] == ["alice@corp.test", "bob@corp.test"]
    assert split_received(await gw.body(queued))[1] == data


async def test_two_transactions_in_one_session(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    first = await send_message(c, message("one"))
    second = await send_message(c, message("two"), rcpts=("bob@corp.test",))
    await c.quit()
    assert first != second
    assert [m.id for m in gw.accepted] == [first, second]
    assert await gw.stored_ids() == {first, second}


# -- sizes (X3) ------------------------------------------------------------------------


async def test_size_param_over_limit_552_at_mail(gw: Gateway) -> None:
    limit = gw.settings.max_message_size
    c = await gw.connect()
    await c.ehlo()
    await c.command(f"MAIL FROM:<s@example.test> SIZE={limit + 1}", "552 5.3.4")
    await c.command(f"MAIL FROM:<s@example.test> SIZE={10**30}", "501 5.5.4")
    await c.command(f"MAIL FROM:<s@example.test> SIZE={limit}", "250 2.1.0")
    await c.quit()


async def test_message_at_the_limit_is_accepted(gw: Gateway) -> None:
    limit = gw.settings.max_message_size
    data = message("at limit", size=limit)
    c = await gw.connect()
    await c.ehlo()
    await send_message(c, data)
    await c.quit()
    assert split_received(await gw.body(gw.accepted[0]))[1] == data


async def test_data_over_limit_552_after_the_dot_then_next_transaction_works(gw: Gateway) -> None:
    limit = gw.settings.max_message_size
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")
    await c.command("DATA", "354 ")
    await c.send(message("too big", size=limit + 1024) + b".\r\n")
    await c.expect("552 5.3.4")
    assert gw.accepted == []
    queue_id = await send_message(c, message("small"))
    await c.quit()
    assert [m.id for m in gw.accepted] == [queue_id]
    assert await gw.stored_ids() == {queue_id}


async def test_five_megabytes_with_a_64k_limit_completes_with_552(gw: Gateway, input_buffer_peak: BufferPeak) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")
    await c.command("DATA", "354 ")
    chunk = (b"z" * 1022 + b"\r\n") * 64  # 64 KiB of proper lines
    await c.send(b"Subject: big\r\n\r\n")
    for _ in range(80):  # 5 MiB
        await c.send(chunk)
    await c.send(b".\r\n")
    await c.expect("552 5.3.4")
    await c.command("NOOP", "250 2.0.0")
    await c.quit()
    assert gw.accepted == []
    assert await gw.stored_ids() == set()
    assert input_buffer_peak.peak < 2 * 1024 * 1024  # streamed and dropped, never held whole


@pytest.mark.parametrize("length", [1001, 5000, 60_000])
async def test_long_data_lines_are_kept_verbatim(gw: Gateway, length: int) -> None:
    # RELIABILITY P4 policy: lines over 998/1000 octets are accepted and stored
    # unchanged up to the message size limit; never truncated (DKIM).
    data = b"Subject: long\r\n\r\n" + b"L" * length + b"\r\nend\r\n"
    c = await gw.connect()
    await c.ehlo()
    await send_message(c, data)
    await c.command("NOOP", "250 2.0.0")
    await c.quit()
    assert split_received(await gw.body(gw.accepted[0]))[1] == data


async def test_terminator_split_across_writes(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")
    await c.command("DATA", "354 ")
    data = message("split")
    for piece in (data[:-1], data[-1:] + b".", b"\r", b"\n"):
        await c.send(piece)
    await c.expect("250 2.0.0")
    await c.quit()
    assert split_received(await gw.body(gw.accepted[0]))[1] == data


# -- store trouble (D4, D5) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reply", "next_mail"),
    [
        (StoreError("disk full", no_space=True), "451 4.3.0", "452 4.3.1"),  # and new mail is refused
        (StoreError("index commit failed"), "451 4.3.0", "250 2.1.0"),  # transient, one message only
        (StoreError("file too big", too_big=True), "552 5.3.4", "250 2.1.0"),
        (OSError(5, "Input/output error"), "451 4.3.0", "250 2.1.0"),  # not a StoreError: still temporary
    ],
)
async def test_store_refusal_is_never_a_250(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch, error: Exception, reply: str, next_mail: str
) -> None:
    async def refuse(msg: object) -> object:
        raise error

    monkeypatch.setattr(gw.store, "accept", refuse)
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")
    await c.command("DATA", "354 ")
    await c.send(message("doomed") + b".\r\n")
    await c.expect(reply)
    await c.command("MAIL FROM:<s@example.test>", next_mail)
    await c.quit()
    assert gw.accepted == []
    assert await gw.stored_ids() == set()


async def test_real_fsync_failure_gives_451_and_nothing_stored(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    # RELIABILITY D6: fsync EIO is fatal for that message (no retry, no commit)
    import os

    real_fsync = os.fsync
    spool = str(gw.data_dir / "spool")

    def failing_fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(spool + "/seg-"):
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")
    await c.command("DATA", "354 ")
    await c.send(message("eio") + b".\r\n")
    await c.expect("451 4.3.0")
    monkeypatch.setattr(os, "fsync", real_fsync)
    queue_id = await send_message(c, message("after eio"))  # a fresh segment takes the next message
    await c.quit()
    assert await gw.stored_ids() == {queue_id}


async def test_free_space_below_reserve_452_at_mail(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gw.store, "free_space", lambda: 0)
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "452 4.3.1")
    await c.command("RCPT TO:<alice@corp.test>", "503 5.5.1")  # no transaction was opened
    await c.quit()
    assert gw.accepted == []


async def test_free_space_just_below_the_reserve(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    # Postfix rule: keep 1.5 x the message size limit free (min_free_space is 0 here)
    reserve = int(1.5 * gw.settings.max_message_size)
    monkeypatch.setattr(gw.store, "free_space", lambda: reserve - 1)
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "452 4.3.1")
    await c.quit()


async def test_free_space_unknown_fails_closed(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> int:
        raise OSError(5, "statvfs failed")

    monkeypatch.setattr(gw.store, "free_space", broken)
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "452 4.3.1")
    await c.quit()
