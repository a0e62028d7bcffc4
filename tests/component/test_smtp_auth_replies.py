"""RFC 4954 replies on a submission listener, code by code (RELIABILITY A1, A4)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import pytest
from smtp_harness import HOSTNAME, Gateway, GatewayFactory, RawClient

from mailstandby.smtp.server import SMTPServer
from mailstandby.smtp.session import Login


class Accounts:
    """alice / right-password; `broken` makes the check itself fail (a database error)."""

    def __init__(self) -> None:
        self.broken = False

    async def authenticate(self, username: str, password: str, *, peer: str, protocol: str) -> str | None:
        if self.broken:
            raise OSError("credential store unreadable")
        return "alice@corp.test" if (username, password) == ("alice@corp.test", "right-password") else None


def plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


@pytest.fixture
async def submission(make_gateway: GatewayFactory) -> AsyncIterator[tuple[SMTPServer, Accounts, Gateway]]:
    gw = await make_gateway(max_errors=20)
    accounts = Accounts()
    login = Login(accounts, allow_plaintext_on_loopback=True)  # type: ignore[arg-type]
    server = SMTPServer(gw.settings, gw.intake, hostname=HOSTNAME, tls_context=None, login=login)
    await server.start()
    yield server, accounts, gw
    await server.stop(0)


async def connect(server: SMTPServer, gw: Gateway) -> RawClient:
    reader, writer = await asyncio.open_connection(*server.addresses[0])
    c = RawClient(reader, writer)
    gw.clients.append(c)
    await c.expect("220 ")
    return c


async def test_rfc4954_replies(submission: tuple[SMTPServer, Accounts, Gateway]) -> None:
    server, _, gw = submission
    c = await connect(server, gw)
    r = await c.ehlo()
    assert "AUTH PLAIN LOGIN" in r.texts
    await c.command("MAIL FROM:<alice@corp.test>", "530 5.7.0 Authentication required")
    await c.command("AUTH CRAM-MD5", "504 5.5.4")
    await c.command("AUTH PLAIN !!!", "501 5.5.2")
    await c.command("AUTH PLAIN", "334 ")
    await c.command("*", "501 5.7.0")  # the client cancels
    await c.command(f"AUTH PLAIN {plain('alice@corp.test', 'wrong')}", "535 5.7.8")
    await c.command(f"AUTH PLAIN {plain('alice@corp.test', 'right-password')}", "235 2.7.0")
    await c.command(f"AUTH PLAIN {plain('alice@corp.test', 'right-password')}", "503 5.5.1")
    await c.command("MAIL FROM:<alice@corp.test>", "250 2.1.0")
    await c.quit()


async def test_a_failing_credential_check_is_454_temporary(submission: tuple[SMTPServer, Accounts, Gateway]) -> None:
    server, accounts, gw = submission
    accounts.broken = True
    c = await connect(server, gw)
    await c.ehlo()
    await c.command(f"AUTH PLAIN {plain('alice@corp.test', 'right-password')}", "454 4.7.0")
    accounts.broken = False  # the session goes on: the client may try again
    await c.command(f"AUTH PLAIN {plain('alice@corp.test', 'right-password')}", "235 2.7.0")
    await c.quit()


async def test_no_auth_in_clear_without_the_loopback_exception(gw: Gateway) -> None:
    login = Login(Accounts(), allow_plaintext_on_loopback=False)  # type: ignore[arg-type]
    server = SMTPServer(gw.settings, gw.intake, hostname=HOSTNAME, tls_context=None, login=login)
    await server.start()
    try:
        c = await connect(server, gw)
        r = await c.ehlo()
        assert not any(t.startswith("AUTH") for t in r.texts)  # not offered before TLS
        await c.command(f"AUTH PLAIN {plain('alice@corp.test', 'right-password')}", "538 5.7.11")
        await c.quit()
    finally:
        await server.stop(0)
