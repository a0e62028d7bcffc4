"""Hostile clients: smuggling, overlong lines, garbage, cross-protocol, pipelining, bad bytes.

Named regressions for RELIABILITY P1, P2, P3, P6, P9, P10 and X1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import pytest
from smtp_harness import (
    TIMEOUT,
    BufferPeak,
    ConnectionGone,
    Gateway,
    GatewayFactory,
    RawClient,
    message,
    split_received,
)


async def open_data(c: RawClient, rcpt: str = "alice@corp.test") -> None:
    await c.command("MAIL FROM:<sender@example.test>", "250 2.1.0")
    await c.command(f"RCPT TO:<{rcpt}>", "250 2.1.5")
    await c.command("DATA", "354 ")


# -- SMTP smuggling (P1) -----------------------------------------------------------------

SMUGGLED = (
    b"MAIL FROM:<ceo@corp.test>\r\n"
    b"RCPT TO:<bob@corp.test>\r\n"
    b"DATA\r\n"
    b"From: ceo@corp.test\r\nSubject: smuggled\r\n\r\nwire the money\r\n"
)
FAKE_TERMINATORS = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r\n.\r", b"\r\n\x00.\r\n"]


@pytest.mark.parametrize("fake", FAKE_TERMINATORS, ids=repr)
async def test_smuggling_never_yields_two_messages(gw: Gateway, fake: bytes) -> None:
    c = await gw.connect()
    await c.ehlo()
    await open_data(c)
    first = b"From: sender@example.test\r\nSubject: innocent\r\n\r\nhello"
    # everything in one write, as a smuggling sender would; then QUIT
    await c.send(first + fake + SMUGGLED + b".\r\n" + b"QUIT\r\n")
    replies = await c.replies_until_eof()
    codes = [r.last[:9] for r in replies]

    # Exactly one answer to the whole DATA, then the 221: the smuggled MAIL,
    # RCPT and DATA were never executed as commands.
    assert len(replies) == 2 and replies[1].code == 221, codes
    stored = await gw.stored_ids()
    if fake == b"\r\n\x00.\r\n":
        # no bare CR/LF: one ordinary message with a NUL line, stored verbatim (P10 policy)
        assert codes[0] == "250 2.0.0"
        assert len(stored) == 1 and len(gw.accepted) == 1
        _, rest = split_received(await gw.body(gw.accepted[0]))
        assert rest == first + fake + SMUGGLED
    else:
        assert codes[0] == "550 5.5.2", codes
        assert stored == set() and gw.accepted == []


@pytest.mark.parametrize("fake", FAKE_TERMINATORS[:-1], ids=repr)
async def test_smuggling_rejection_keeps_the_session_usable(gw: Gateway, fake: bytes) -> None:
    c = await gw.connect()
    await c.ehlo()
    await open_data(c)
    await c.send(b"Subject: a\r\n\r\nhello" + fake + SMUGGLED + b".\r\n")
    await c.expect("550 5.5.2")
    await open_data(c, "bob@corp.test")
    await c.send(message("clean") + b".\r\n")
    await c.expect("250 2.0.0")
    await c.quit()
    assert len(gw.accepted) == 1 and [r.rcpt for r in gw.accepted[0].recipients] == ["bob@corp.test"]


@pytest.mark.parametrize("bare", [b"\n", b"\r"], ids=["LF", "CR"])
async def test_bare_newline_in_header_or_body_is_rejected(gw: Gateway, bare: bytes) -> None:
    c = await gw.connect()
    await c.ehlo()
    await open_data(c)
    await c.send(b"Subject: a" + bare + b"Bcc: x@corp.test\r\n\r\nbody\r\n.\r\n")
    await c.expect("550 5.5.2")
    await c.quit()
    assert await gw.stored_ids() == set()


async def test_smuggling_with_the_fake_terminator_in_its_own_segment(gw: Gateway) -> None:
    # the fake end arrives alone in a TCP segment: still not an end of data
    c = await gw.connect()
    await c.ehlo()
    await open_data(c)
    await c.send(b"Subject: a\r\n\r\nhello")
    await c.send(b"\n.\n")
    await c.send(SMUGGLED)
    await c.send(b".\r\n")
    await c.expect("550 5.5.2")
    await c.quit()
    assert await gw.stored_ids() == set()


# -- line length (P3) --------------------------------------------------------------------


async def test_line_at_and_under_the_limit_is_fine(gw: Gateway) -> None:
    limit = gw.settings.max_line_length
    c = await gw.connect()
    await c.ehlo()
    await c.command(b"NOOP " + b"x" * (600 - 7), "250 2.0.0")  # 600 octets with CRLF
    await c.command(b"NOOP " + b"x" * (limit - 7), "250 2.0.0")  # exactly the limit
    await c.quit()


async def test_line_over_the_limit_500_5_5_6(gw: Gateway) -> None:
    limit = gw.settings.max_line_length
    c = await gw.connect()
    await c.ehlo()
    await c.command(b"NOOP " + b"x" * (limit - 6), "500 5.5.6")  # one octet over
    await c.command(b"NOOP " + b"x" * 4096, "500 5.5.6")
    await c.command(b"MAIL FROM:<" + b"a" * 4096 + b"@example.test>", "500 5.5.6")
    await c.command("NOOP", "250 2.0.0")  # the session is in sync
    await c.quit()


async def test_overlong_line_does_not_run_its_tail_as_a_command(gw: Gateway) -> None:
    # a line cut at the limit must not leave "RSET" behind as a command of its own
    limit = gw.settings.max_line_length
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.send(b"X" * (limit + 10) + b"QUIT\r\n" + b"RCPT TO:<alice@corp.test>\r\n")
    await c.expect("500 5.5.6")
    await c.expect("250 2.1.5")  # still connected, transaction intact
    await c.quit()


async def test_ten_megabytes_without_crlf_then_crlf(gw: Gateway, input_buffer_peak: BufferPeak) -> None:
    c = await gw.connect()
    await c.ehlo()
    chunk = b"A" * (1024 * 1024)
    for _ in range(10):
        await c.send(chunk)
    await c.send(b"\r\n")
    await c.expect("500 5.5.6")
    await c.command("NOOP", "250 2.0.0")
    await c.quit()
    assert input_buffer_peak.peak < 2 * 1024 * 1024  # the overflow was dropped, not buffered


# -- garbage and error budget (P6) -------------------------------------------------------


async def test_garbage_lines_421_and_close(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.send(b"".join(b"garbage %d\r\n" % i for i in range(25)))
    replies = await c.replies_until_eof()
    codes = [r.last[:9] for r in replies]
    errors = gw.settings.max_errors
    assert codes == ["500 5.5.2"] * (errors - 1) + ["421 4.7.0"], codes


async def test_errors_of_any_kind_count(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command("RCPT TO:<alice@corp.test>", "503 5.5.1")
    await c.command("MAIL FROM:<bad", "501 5.1.7")
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("RCPT TO:<carol@corp.test>", "550 5.1.1")  # probing unknown users costs too (R11)
    await c.command("RCPT TO:<x@other.test>", "554 5.7.1")
    await c.send(b"RCPT TO:<dave@corp.test>\r\n")
    assert [r.last[:9] for r in await c.replies_until_eof()] == ["421 4.7.0"]


async def test_junk_command_budget(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(max_junk_commands=3)
    c = await gw.connect()
    await c.ehlo()
    await c.send(b"NOOP\r\nRSET\r\nHELP\r\nNOOP\r\nNOOP\r\n")
    replies = await c.replies_until_eof()
    assert [r.last[:9] for r in replies] == ["250 2.0.0", "250 2.0.0", "214 2.0.0", "421 4.7.0"]


async def test_accepted_mail_forgives_earlier_errors(gw: Gateway) -> None:
    # A long-lived relay session (the primary's MTA reusing a connection) makes
    # an occasional error per message; the budget is per stretch without mail,
    # as in Postfix smtpd, not per connection.
    c = await gw.connect()
    await c.ehlo()
    for i in range(2 * gw.settings.max_errors):
        await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
        await c.command("RCPT TO:<carol@corp.test>", "550 5.1.1")
        await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")
        await c.command("DATA", "354 ")
        await c.send(message(f"relay {i}") + b".\r\n")
        await c.expect("250 2.0.0")
    await c.quit()
    assert len(gw.accepted) == 2 * gw.settings.max_errors


async def test_accepted_mail_resets_the_junk_budget(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(max_junk_commands=2)
    c = await gw.connect()
    await c.ehlo()
    for i in range(4):
        await c.command("RSET", "250 2.0.0")  # Postfix's client sends RSET before reusing a connection
        await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
        await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")
        await c.command("DATA", "354 ")
        await c.send(message(f"cached {i}") + b".\r\n")
        await c.expect("250 2.0.0")
    await c.quit()
    assert len(gw.accepted) == 4


async def test_unknown_and_unimplemented_commands(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command("XYZZY", "500 5.5.2")
    await c.command(b"BDAT 12 LAST\r\nMAIL FROM:", "503 5.5.1")  # the chunk is read and dropped (P1)
    await c.command("AUTH PLAIN AGFsaWNlAHB3", "502 5.5.1")
    await c.quit()


# -- cross-protocol (HTTP on port 25) ---------------------------------------------------


@pytest.mark.parametrize("request_line", [b"GET / HTTP/1.0", b"POST /x HTTP/1.1", b"CONNECT mx:25 HTTP/1.1"])
async def test_http_request_gets_221_and_close(gw: Gateway, request_line: bytes) -> None:
    c = await gw.connect()
    await c.send(request_line + b"\r\nHost: mx.corp.test\r\n\r\n")
    replies = await c.replies_until_eof()
    assert [r.code for r in replies] == [221]


# -- pipelining violation (P2) -----------------------------------------------------------


async def test_message_data_before_354_is_554_and_close(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")
    await c.send(b"DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n")
    replies = await c.replies_until_eof()
    assert [r.last[:9] for r in replies] == ["554 5.5.0"]
    assert await gw.stored_ids() == set() and gw.accepted == []


async def test_whole_transaction_in_one_write_is_554(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.send(
        b"MAIL FROM:<s@example.test>\r\nRCPT TO:<alice@corp.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n"
    )
    replies = await c.replies_until_eof()
    assert [r.last[:9] for r in replies] == ["250 2.1.0", "250 2.1.5", "554 5.5.0"]
    assert await gw.stored_ids() == set()


# -- bad bytes in commands (P9, P10) -----------------------------------------------------


async def test_nul_in_command_500(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command(b"MAIL FROM:<a\x00b@example.test>", "500 5.5.2")  # not truncated at the NUL
    await c.command(b"MAIL FROM:<a@example.test>\x00 SIZE=1", "500 5.5.2")
    await c.command("MAIL FROM:<a@example.test>", "250 2.1.0")  # no transaction was opened before
    await c.quit()


async def test_non_ascii_addresses_need_smtputf8(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<üser@example.test>".encode(), "553 5.6.7")
    await c.command("MAIL FROM:<user@example.test>", "250 2.1.0")
    await c.command("RCPT TO:<ålice@corp.test>".encode(), "553 5.6.7")
    await c.command("RSET", "250 ")
    await c.command("MAIL FROM:<üser@example.test> SMTPUTF8".encode(), "250 2.1.0")
    await c.command("RCPT TO:<ålice@corp.test>".encode(), "550 5.1.1")  # well-formed, just unknown
    await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")
    await c.command("DATA", "354 ")
    data = "Subject: grüße\r\n\r\nhej\r\n".encode()
    await c.send(data + b".\r\n")
    await c.expect("250 2.0.0")
    await c.quit()
    (queued,) = gw.accepted
    assert queued.sender == "üser@example.test" and queued.smtputf8
    received, rest = split_received(await gw.body(queued))
    assert rest == data and b"with UTF8SMTPS" not in received and b"with UTF8SMTP id" in received


async def test_bad_utf8_in_command_500_5_5_2(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command(b"MAIL FROM:<\xff\xfe@example.test>", "500 5.5.2")
    await c.command(b"MAIL FROM:<a@example.test> SMTPUTF8\xc0", "500 5.5.2")
    await c.quit()


async def test_mail_parameters(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test> BODY=BINARYMIME", "501 5.5.4")
    await c.command("MAIL FROM:<s@example.test> X-UNKNOWN=1", "555 5.5.4")
    await c.command("MAIL FROM:<s@example.test> SMTPUTF8=yes", "555 5.5.4")
    await c.command("MAIL FROM:<s@example.test> BODY=8BITMIME SIZE=100 SMTPUTF8", "250 2.1.0")
    await c.command("RCPT TO:<alice@corp.test> NOTIFY=NEVER,SUCCESS", "501 5.5.4")  # RFC 3461 §4.1
    await c.quit()


async def test_parameters_after_helo_are_refused(gw: Gateway) -> None:
    c = await gw.connect()
    await c.command("HELO client.test", "250 ")
    await c.command("MAIL FROM:<s@example.test> SIZE=10", "555 ")
    await c.quit()


# -- time limits (X1) --------------------------------------------------------------------


async def test_idle_client_gets_421_timeout(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(command_timeout=0.3)
    c = await gw.connect()
    await c.ehlo()
    assert [r.last[:9] for r in await c.replies_until_eof()] == ["421 4.4.2"]


async def test_stalled_data_gets_421_timeout_and_nothing_stored(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(data_timeout=0.3)
    c = await gw.connect()
    await c.ehlo()
    await open_data(c)
    await c.send(b"Subject: half\r\n\r\nhalf a mess")
    assert [r.last[:9] for r in await c.replies_until_eof()] == ["421 4.4.2"]
    assert await gw.stored_ids() == set()


async def test_a_busy_session_still_ends_at_the_session_time_limit(make_gateway: GatewayFactory) -> None:
    """Slowloris that keeps every read short (a NOOP each 0.1 s) still meets the hard cap. A client that
    is writing when the server closes may see a reset instead of the 421 (TCP discards the reply then);
    whatever it reads before the end is 250s and, at most, the 421."""
    gw = await make_gateway(command_timeout=5, max_session_time=0.6)
    c = await gw.connect()
    await c.ehlo()
    seen: list[str] = []
    with contextlib.suppress(ConnectionGone, ConnectionError):
        async with asyncio.timeout(TIMEOUT):
            while True:
                await c.send(b"NOOP\r\n")
                seen.append((await c.reply()).last[:9])
                if not seen[-1].startswith("250"):
                    break
                await asyncio.sleep(0.1)
    assert set(seen[:-1]) <= {"250 2.0.0"} and seen[-1] in ("250 2.0.0", "421 4.4.2")
    async with asyncio.timeout(TIMEOUT):
        while gw.server.sessions:  # the session is over, whatever the client saw
            await asyncio.sleep(0.05)


async def test_client_that_never_reads_its_replies_is_dropped(make_gateway: GatewayFactory) -> None:
    # Pipelined commands whose replies are never read fill the socket buffers;
    # the session must not wait on them forever (every wait is bounded, X1).
    gw = await make_gateway(command_timeout=0.5)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(TIMEOUT):
        await loop.sock_connect(sock, ("127.0.0.1", gw.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    gw.clients.append(RawClient(reader, writer))
    writer.write(b"EHLO flood.test\r\n" * 100_000)  # ~15 MB of replies; never read
    async with asyncio.timeout(TIMEOUT):
        while gw.server.sessions:
            await asyncio.sleep(0.05)


async def test_disconnect_mid_data_stores_nothing(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await open_data(c)
    await c.send(b"Subject: cut\r\n\r\npartial\r\n")
    await c.close()  # the leak check at teardown proves the session noticed
    assert await gw.stored_ids() == set()


# -- internal errors --------------------------------------------------------------------


async def test_internal_error_is_451_and_close(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(address: object) -> None:
        raise RuntimeError("directory exploded: secret detail")

    monkeypatch.setattr(gw.directory, "lookup", broken)
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    with caplog.at_level(logging.ERROR, logger="mailstandby"):
        await c.send(b"RCPT TO:<alice@corp.test>\r\n")
        replies = await c.replies_until_eof()
    assert [r.last[:9] for r in replies] == ["451 4.3.0"]
    assert "secret detail" not in replies[0].last  # details go to the log, never to the client
    assert "directory exploded" in caplog.text
