"""Test harness for the POP3 server: a raw-bytes client, a fake Authenticator and the rig under test.

`RawPOP3` writes exact bytes and reads status lines and multi-line responses
as they are on the wire (still dot-stuffed); `POP3Rig` bundles the real
POP3Server with a MemoryMailboxStore on 127.0.0.1:0 (plain and implicit TLS)
and checks at teardown that no session outlived its client.
"""

from __future__ import annotations

import asyncio
import poplib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from raw_stream import TIMEOUT, RawStream

from mailstandby.config import POP3Settings
from mailstandby.pop3.server import POP3Server
from mailstandby.store.mailbox import MessageMeta
from mailstandby.store.memory import MemoryMailboxStore

HOSTNAME = "mx.corp.test"
ALICE, ALICE_PW = "alice@corp.test", "correct horse battery"
BOB, BOB_PW = "bob@corp.test", "bobs own secret"

SETTINGS: dict[str, Any] = {
    "listen": ["127.0.0.1:0"],
    "listen_tls": ["127.0.0.1:0"],
    "allow_plaintext_auth_on_loopback": True,
    "timeout": 10.0,
    "max_bad_commands": 5,
    "max_connections_per_user": 3,
}


class FakeAuthenticator:
    """Accepts the listed (name, password) pairs; names are case-insensitive; records every attempt."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.attempts: list[tuple[str, str, str]] = []  # (username, peer, protocol)

    async def authenticate(self, username: str, password: str, *, peer: str, protocol: str) -> str | None:
        self.attempts.append((username, peer, protocol))
        canonical = username.lower()
        if canonical in self.users and self.users[canonical] == password and password:
            return canonical
        return None


class RawPOP3(RawStream):
    """Exact bytes out; status lines and multi-line responses in, as sent."""

    async def line(self) -> bytes:
        async with asyncio.timeout(TIMEOUT):
            raw = await self.reader.readline()
        assert raw, "the server closed the connection where a response was expected"
        assert raw.endswith(b"\r\n"), f"line without CRLF: {raw!r}"
        return raw

    async def expect(self, prefix: bytes) -> bytes:
        raw = await self.line()
        assert raw.startswith(prefix), f"expected {prefix!r}, got {raw!r}"
        return raw

    async def command(self, line: bytes, prefix: bytes) -> bytes:
        await self.send(line + b"\r\n")
        return await self.expect(prefix)

    async def body(self) -> bytes:
        """The rest of a multi-line response, terminator included, exactly as sent."""
        out = []
        while True:
            raw = await self.line()
            out.append(raw)
            if raw == b".\r\n":
                return b"".join(out)

    async def multiline(self, line: bytes) -> tuple[bytes, list[bytes]]:
        """(status line, body lines without CRLF or terminator) of a +OK multi-line response."""
        status = await self.command(line, b"+OK")
        body = await self.body()
        return status, body.split(b"\r\n")[:-2]

    async def login(self, user: str = ALICE, password: str = ALICE_PW) -> None:
        await self.command(f"USER {user}".encode(), b"+OK")
        await self.command(f"PASS {password}".encode(), b"+OK Logged in.")

    async def quit(self) -> bytes:
        await self.send(b"QUIT\r\n")
        rest = await self.until_eof()
        assert rest.startswith(b"+OK"), rest
        await self.close()
        return rest


@dataclass
class POP3Rig:
    server: POP3Server
    store: MemoryMailboxStore
    auth: FakeAuthenticator
    settings: POP3Settings
    client_tls: ssl.SSLContext
    clients: list[RawPOP3] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.addresses[0][1]

    @property
    def tls_port(self) -> int:
        return self.server.tls_addresses[0][1]

    async def connect(self, *, tls: bool = False, greet: bool = True) -> RawPOP3:
        async with asyncio.timeout(TIMEOUT):
            if tls:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.tls_port, ssl=self.client_tls, server_hostname="127.0.0.1"
                )
            else:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        client = RawPOP3(reader, writer)
        self.clients.append(client)
        if greet:
            await client.expect(f"+OK {HOSTNAME} ".encode())
        return client

    async def poplib(self, fn: Callable[[poplib.POP3], Any], *, tls: bool = False) -> Any:
        """Run `fn` with a connected poplib client in a thread; the connection is closed afterwards."""

        def run() -> Any:
            if tls:
                client: poplib.POP3 = poplib.POP3_SSL(
                    "127.0.0.1", self.tls_port, timeout=TIMEOUT, context=self.client_tls
                )
            else:
                client = poplib.POP3("127.0.0.1", self.port, timeout=TIMEOUT)
            try:
                return fn(client)
            finally:
                client.close()

        return await asyncio.to_thread(run)

    async def deliver(self, body: bytes, user: str = ALICE, flags: frozenset[str] = frozenset()) -> int:
        await self.store.ensure_user(user)
        _, uid = await self.store.append(user, "INBOX", body, flags)
        return uid

    async def inbox(self, user: str = ALICE) -> list[MessageMeta]:
        return (await self.store.snapshot(user, "INBOX")).messages

    async def sessions_gone(self) -> None:
        try:
            async with asyncio.timeout(TIMEOUT):
                while self.server.sessions:
                    await asyncio.wait(list(self.server.sessions.values()))
        except TimeoutError:
            pytest.fail(f"{len(self.server.sessions)} POP3 session(s) outlived their clients")

    async def finish(self) -> None:
        """Teardown with the leak check: every session ends once its client is gone."""
        for c in self.clients:
            await c.close()
        try:
            await self.sessions_gone()
        finally:
            await self.server.stop(0)
        assert self.server.sessions == {}
        assert self.server.slots._count == {}, "a session kept its login slot"


RigFactory = Callable[..., Awaitable[POP3Rig]]


def message(subject: str, body: bytes = b"hello\r\n") -> bytes:
    return f"From: sender@example.test\r\nTo: alice@corp.test\r\nSubject: {subject}\r\n\r\n".encode() + body
