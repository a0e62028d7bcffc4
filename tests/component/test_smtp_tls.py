"""STARTTLS: buffered-command injection and state reset (RELIABILITY T1, T2, T4).

The injection class is Postfix CVE-2011-0411 / aiosmtpd CVE-2024-34083:
plaintext pipelined behind STARTTLS must never be executed after the
handshake as if it had arrived encrypted.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

import pytest
from smtp_harness import TIMEOUT, Gateway, RawClient, message, split_received


async def tls_client(gw: Gateway) -> RawClient:
    c = await gw.connect()
    await c.ehlo()
    await c.command("STARTTLS", "220 2.0.0")
    await c.starttls(gw.client_tls)
    return c


@pytest.mark.parametrize(
    "injected",
    [
        b"RSET\r\n",
        b"HELP\r\n",
        b"EHLO evil.test\r\n",
        b"EHLO evil.test\r\nMAIL FROM:<evil@attacker.test>\r\nRCPT TO:<alice@corp.test>\r\n",
    ],
    ids=["RSET", "HELP", "EHLO", "EHLO+MAIL+RCPT"],
)
async def test_starttls_buffered_command_injection(gw: Gateway, injected: bytes) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.send(b"STARTTLS\r\n" + injected)  # one write, as the attack does
    await c.expect("220 2.0.0")
    await c.starttls(gw.client_tls)
    await c.send(b"NOOP\r\nQUIT\r\n")
    replies = await c.replies_until_eof()
    # exactly one reply to NOOP and one to QUIT; nothing for the injected commands
    assert [r.lines for r in replies] == [["250 Ok"], ["221 Bye"]], [str(r) for r in replies]


async def test_injected_ehlo_did_not_greet_the_tls_session(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.send(b"STARTTLS\r\nEHLO evil.test\r\n")
    await c.expect("220 2.0.0")
    await c.starttls(gw.client_tls)
    # had the injected EHLO run inside TLS, MAIL would be allowed now
    await c.command("MAIL FROM:<s@example.test>", "503 Error: send HELO/EHLO first")
    await c.quit()


async def test_state_is_reset_after_tls(gw: Gateway) -> None:
    c = await tls_client(gw)
    await c.command("MAIL FROM:<s@example.test>", "503 Error: send HELO/EHLO first")
    r = await c.ehlo("client.test")
    assert "STARTTLS" not in r.texts
    assert "PIPELINING" in r.texts
    await c.command("STARTTLS", "503 5.5.1")  # TLS already active
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")
    await c.command("DATA", "354 ")
    data = message("over tls")
    await c.send(data + b".\r\n")
    await c.expect("250 2.0.0")
    await c.quit()
    received, rest = split_received(await gw.body(gw.accepted[0]))
    assert rest == data
    assert b"with ESMTPS id" in received


async def test_tls_forgets_the_pre_tls_helo_name(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo("before-tls.test")
    await c.command("STARTTLS", "220 2.0.0")
    await c.starttls(gw.client_tls)
    await c.ehlo("after-tls.test")
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")
    await c.command("DATA", "354 ")
    await c.send(message() + b".\r\n")
    await c.expect("250 2.0.0")
    await c.quit()
    received, _ = split_received(await gw.body(gw.accepted[0]))
    assert received.startswith(b"Received: from after-tls.test ")


async def test_starttls_refused_inside_a_transaction(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("STARTTLS", "503 5.5.1")
    await c.command("STARTTLS now", "501 5.5.4")
    await c.quit()


async def test_starttls_before_ehlo_works(gw: Gateway) -> None:
    c = await gw.connect()
    await c.command("STARTTLS", "220 ")
    await c.starttls(gw.client_tls)
    await c.ehlo()
    await c.quit()


async def test_garbage_instead_of_client_hello_closes_cleanly(gw: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command("STARTTLS", "220 2.0.0")
    with caplog.at_level(logging.INFO, logger="mailstandby"):
        await c.send(b"this is not a TLS ClientHello\r\n" * 100)
        async with asyncio.timeout(TIMEOUT):
            rest = await c.reader.read()  # until the server closes
        async with asyncio.timeout(TIMEOUT):
            while gw.server.sessions:
                await asyncio.sleep(0.01)
    assert not rest.startswith(b"2")  # never an SMTP reply in clear
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text  # no internal error


async def test_untrusted_server_certificate_is_refused_by_a_verifying_client(gw: Gateway) -> None:
    # sanity check of the harness: the trustme CA is what makes the happy path verify
    c = await gw.connect()
    await c.ehlo()
    await c.command("STARTTLS", "220 2.0.0")
    with pytest.raises(ssl.SSLCertVerificationError):
        await c.starttls(ssl.create_default_context())
