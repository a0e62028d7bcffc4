"""Connection caps on every listener (RELIABILITY X2), the pre-login deadline of IMAP and POP3, and
the milter listener's allow-list, on real sockets.

Clients bind to distinct loopback addresses (127.0.0.2, 127.0.0.3, ...) to be distinct clients.
Refusals are the protocol's own temporary errors, as Postfix and Dovecot send them:
SMTP `421 4.7.0`, IMAP `* BYE [UNAVAILABLE]`, POP3 `-ERR [SYS/TEMP]`; the milter just closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from imap_harness import ALICE, ALICE_PW
from imap_harness import SETTINGS as IMAP_SETTINGS
from imap_harness import FakeAuthenticator as IMAPAuth
from pop3_harness import SETTINGS as POP3_SETTINGS
from pop3_harness import FakeAuthenticator as POP3Auth
from raw_stream import TIMEOUT
from smtp_harness import GatewayFactory

from mailstandby.config import IMAPSettings, MilterSettings, POP3Settings
from mailstandby.directory.static import StaticDirectory
from mailstandby.imap.server import IMAPServer
from mailstandby.limits import ConnectionCaps, Refusal, client_key
from mailstandby.listeners import Listeners
from mailstandby.milter.server import MilterServer
from mailstandby.pop3.server import POP3Server
from mailstandby.routing import Router
from mailstandby.store.memory import MemoryMailboxStore

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Clients:
    """Raw connections from chosen source addresses, all closed at teardown."""

    def __init__(self) -> None:
        self.open: list[asyncio.StreamWriter] = []

    async def connect(self, port: int, source: str = "127.0.0.1") -> Conn:
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        self.open.append(writer)
        return reader, writer

    async def close(self) -> None:
        for w in self.open:
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()


async def first_line(conn: Conn) -> bytes:
    async with asyncio.timeout(TIMEOUT):
        return await conn[0].readline()


async def then_closed(conn: Conn) -> bytes:
    """Everything the server sends until it closes the connection."""
    async with asyncio.timeout(TIMEOUT):
        return await conn[0].read()


async def ended(server: Listeners) -> None:
    async with asyncio.timeout(TIMEOUT):
        while server.sessions:
            await asyncio.sleep(0.01)


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    c = Clients()
    yield c
    await c.close()


ServerFactory = Callable[..., Awaitable[Any]]


@pytest.fixture
async def start() -> AsyncIterator[ServerFactory]:
    """Start an IMAP, POP3 or milter server with the given settings; stopped (no session left) at teardown."""
    made: list[Listeners] = []

    async def make(kind: str, **overrides: Any) -> Any:
        update = {k: overrides.pop(k) for k in ("login_timeout",) if k in overrides}  # below the minimum
        server: Listeners
        if kind == "imap":
            imap = IMAPSettings(**{**IMAP_SETTINGS, "listen_tls": [], **overrides}).model_copy(update=update)
            server = IMAPServer(imap, MemoryMailboxStore(), IMAPAuth({ALICE: ALICE_PW}), tls_context=None)
        elif kind == "pop3":
            pop3 = POP3Settings(**{**POP3_SETTINGS, "listen_tls": [], **overrides}).model_copy(update=update)
            auth = POP3Auth({ALICE: ALICE_PW})
            server = POP3Server(pop3, MemoryMailboxStore(), auth, hostname="mx.corp.test", tls_context=None)
        else:
            milter = MilterSettings(listen=["127.0.0.1:0"], **overrides)
            server = MilterServer(
                milter,
                Router(StaticDirectory(["corp.test"], [])),
                sink=None,
                hostname="mx",
                max_size=1024,  # type: ignore[arg-type]
            )
        await server.start()
        made.append(server)
        return server

    yield make
    for server in made:
        await server.stop(0)
        assert server.caps.total == 0, "a connection was never uncounted"


# -- the counting itself -------------------------------------------------------------


def test_clients_are_addresses_and_ipv6_64s() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"


def test_caps_count_per_client_and_in_total() -> None:
    caps = ConnectionCaps(total=3, per_client=2)
    assert caps.admit("2001:db8::1") is None
    assert caps.admit("2001:db8::2") is None
    assert caps.admit("2001:db8::3") is Refusal.PER_CLIENT  # the same /64
    assert caps.admit("192.0.2.1") is None
    assert caps.admit("192.0.2.2") is Refusal.TOTAL
    caps.release("2001:db8::1")
    assert caps.admit("192.0.2.2") is None
    assert caps.total == 3


# -- IMAP ------------------------------------------------------------------------------


async def test_imap_refuses_a_client_past_its_share_and_serves_others(start: ServerFactory, clients: Clients) -> None:
    server = await start("imap", max_connections_per_client=3)
    port = server.addresses[0][1]
    for _ in range(3):
        assert (await first_line(await clients.connect(port, "127.0.0.2"))).startswith(b"* OK")
    refused = await clients.connect(port, "127.0.0.2")
    assert await then_closed(refused) == (
        b"* BYE [UNAVAILABLE] Too many connections from your address, try again later.\r\n"
    )
    assert (await first_line(await clients.connect(port, "127.0.0.3"))).startswith(b"* OK")


async def test_imap_refuses_past_its_total(start: ServerFactory, clients: Clients) -> None:
    server = await start("imap", max_connections=3)
    port = server.addresses[0][1]
    for n in range(3):
        assert (await first_line(await clients.connect(port, f"127.0.0.{n + 2}"))).startswith(b"* OK")
    refused = await clients.connect(port, "127.0.0.9")
    assert await then_closed(refused) == b"* BYE [UNAVAILABLE] Too many connections, try again later.\r\n"
    await clients.close()
    await ended(server)
    assert (await first_line(await clients.connect(port, "127.0.0.9"))).startswith(b"* OK")  # slots come back


async def test_imap_ends_a_session_that_keeps_busy_without_logging_in(start: ServerFactory, clients: Clients) -> None:
    """Every NOOP is answered within the per-read timeout, but the login deadline runs from connecting."""
    server = await start("imap", login_timeout=0.5)
    reader, writer = conn = await clients.connect(server.addresses[0][1])
    assert (await first_line(conn)).startswith(b"* OK")
    seen = b""
    async with asyncio.timeout(TIMEOUT):
        while not seen.startswith(b"* BYE"):
            writer.write(b"a NOOP\r\n")
            seen = await reader.readline()
            if seen.startswith(b"a OK"):
                continue
    assert seen == b"* BYE Disconnected for inactivity during authentication.\r\n"
    assert await then_closed(conn) == b""


async def test_imap_login_deadline_spares_a_logged_in_session(start: ServerFactory, clients: Clients) -> None:
    server = await start("imap", login_timeout=0.5)
    reader, writer = conn = await clients.connect(server.addresses[0][1])
    await first_line(conn)
    writer.write(f'l LOGIN {ALICE} "{ALICE_PW}"\r\n'.encode())
    async with asyncio.timeout(TIMEOUT):
        while not (line := await reader.readline()).startswith(b"l "):
            pass
    assert line.startswith(b"l OK"), line
    loop = asyncio.get_running_loop()
    past = loop.time() + 1.0  # twice the login deadline
    async with asyncio.timeout(TIMEOUT):
        while loop.time() < past:
            writer.write(b"n NOOP\r\n")
            while not (line := await reader.readline()).startswith(b"n "):
                assert not line.startswith(b"* BYE"), line
            assert line.startswith(b"n OK"), line


# -- POP3 ------------------------------------------------------------------------------


async def test_pop3_refuses_a_client_past_its_share(start: ServerFactory, clients: Clients) -> None:
    server = await start("pop3", max_connections_per_client=2)
    port = server.addresses[0][1]
    for _ in range(2):
        assert (await first_line(await clients.connect(port, "127.0.0.2"))).startswith(b"+OK")
    refused = await clients.connect(port, "127.0.0.2")
    assert await then_closed(refused) == (
        b"-ERR [SYS/TEMP] Too many connections from your address, try again later.\r\n"
    )
    assert (await first_line(await clients.connect(port, "127.0.0.3"))).startswith(b"+OK")


async def test_pop3_refuses_past_its_total(start: ServerFactory, clients: Clients) -> None:
    server = await start("pop3", max_connections=2)
    port = server.addresses[0][1]
    for n in range(2):
        assert (await first_line(await clients.connect(port, f"127.0.0.{n + 2}"))).startswith(b"+OK")
    refused = await clients.connect(port, "127.0.0.9")
    assert await then_closed(refused) == b"-ERR [SYS/TEMP] Too many connections, try again later.\r\n"


async def test_pop3_ends_a_session_that_keeps_busy_without_logging_in(start: ServerFactory, clients: Clients) -> None:
    server = await start("pop3", login_timeout=0.5)
    reader, writer = conn = await clients.connect(server.addresses[0][1])
    assert (await first_line(conn)).startswith(b"+OK")
    seen = b""
    async with asyncio.timeout(TIMEOUT):
        while not seen.startswith(b"-ERR"):
            writer.write(b"CAPA\r\n")
            seen = await reader.readline()
            if seen.startswith(b"+OK"):
                while await reader.readline() != b".\r\n":
                    pass
    assert seen == b"-ERR [SYS/TEMP] Disconnected: no login in time.\r\n"
    assert await then_closed(conn) == b""


# -- SMTP ------------------------------------------------------------------------------


async def test_smtp_refuses_a_client_past_its_share(make_gateway: GatewayFactory, clients: Clients) -> None:
    gw = await make_gateway(max_connections_per_client=2)
    for _ in range(2):
        assert (await first_line(await clients.connect(gw.port, "127.0.0.2"))).startswith(b"220 ")
    refused = await clients.connect(gw.port, "127.0.0.2")
    assert await then_closed(refused) == b"421 Error: too many connections from your address\r\n"
    assert (await first_line(await clients.connect(gw.port, "127.0.0.3"))).startswith(b"220 ")
    await clients.close()
    await ended(gw.server)


# -- milter ----------------------------------------------------------------------------


async def test_milter_closes_peers_outside_its_allow_list(start: ServerFactory, clients: Clients) -> None:
    server = await start("milter", allowed_peers=["127.0.0.2"])
    port = server.addresses[0][1]
    assert await then_closed(await clients.connect(port, "127.0.0.1")) == b""
    assert server.caps.total == 0
    await clients.connect(port, "127.0.0.2")  # the MTA speaks first: a session waits for its packet
    async with asyncio.timeout(TIMEOUT):
        while len(server.sessions) != 1:
            await asyncio.sleep(0.01)


def test_milter_allows_only_loopback_by_default() -> None:
    assert MilterSettings().allowed_peers == ["127.0.0.0/8", "::1"]
    with pytest.raises(ValueError, match="not an address or network"):
        MilterSettings(allowed_peers=["mta.example"])
