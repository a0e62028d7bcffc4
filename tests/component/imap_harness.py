"""Test harness for the IMAP server: a raw-bytes client, a fake Authenticator and the rig under test.

`RawIMAP` writes exact bytes and reads responses as they are on the wire
(literals included); `IMAPRig` runs the real IMAPServer on 127.0.0.1:0 (plain
with STARTTLS, and implicit TLS) over either mailbox store, and checks at
teardown that no session outlived its client. `make_rig` is parametrized over
MemoryMailboxStore and SQLiteMailboxStore.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from raw_stream import TIMEOUT, RawStream

from mailstandby.config import IMAPSettings, StoreSettings
from mailstandby.imap.server import IMAPServer
from mailstandby.store.mailbox import MailboxStore
from mailstandby.store.memory import MemoryMailboxStore
from mailstandby.store.sqlite import SQLiteStore
from mailstandby.store.sqlite_mailbox import SQLiteMailboxStore

ALICE, ALICE_PW = "alice@corp.test", "correct horse battery"
BOB, BOB_PW = "bob@corp.test", "bobs own secret"

SETTINGS: dict[str, Any] = {
    "listen": ["127.0.0.1:0"],
    "listen_tls": ["127.0.0.1:0"],
    "allow_plaintext_auth_on_loopback": True,
    "max_connections_per_user": 3,
    "max_literal_size": 64 * 1024,
    "max_line_length": 16 * 1024,
}


class FakeAuthenticator:
    """Accepts the listed (name, password) pairs; names are case-insensitive; records every attempt."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.attempts: list[tuple[str, str, str]] = []

    async def authenticate(self, username: str, password: str, *, peer: str, protocol: str) -> str | None:
        self.attempts.append((username, peer, protocol))
        canonical = username.lower()
        if canonical in self.users and self.users[canonical] == password and password:
            return canonical
        return None


_LITERAL = re.compile(rb"\{(\d+)\}\r\n\Z")


class RawIMAP(RawStream):
    """Exact bytes out; response lines (with their literals) in, as sent."""

    async def line(self) -> bytes:
        """One response line; a line ending in a literal continues through the literal."""
        out = b""
        async with asyncio.timeout(TIMEOUT):
            while True:
                raw = await self.reader.readline()
                assert raw, f"the server closed the connection where a response was expected; got {out!r}"
                out += raw
                m = _LITERAL.search(raw)
                if m is None:
                    return out
                out += await self.reader.readexactly(int(m.group(1)))

    async def until(self, tag: bytes) -> tuple[list[bytes], bytes]:
        """(untagged lines, the tagged line) for `tag`."""
        lines = []
        while True:
            raw = await self.line()
            if raw.startswith(tag + b" "):
                return lines, raw
            lines.append(raw)

    async def cmd(self, line: bytes, expect: bytes = b"OK") -> list[bytes]:
        tag = line.split(b" ", 1)[0]
        await self.send(line + b"\r\n")
        untagged, done = await self.until(tag)
        assert done.startswith(tag + b" " + expect), (line[:80], done, untagged[-3:])
        return untagged

    async def login(self, user: str = ALICE, password: str = ALICE_PW) -> None:
        await self.cmd(f'L1 LOGIN "{user}" "{password}"'.encode())


@dataclass
class IMAPRig:
    server: IMAPServer
    store: MailboxStore
    auth: FakeAuthenticator
    settings: IMAPSettings
    client_tls: ssl.SSLContext
    clients: list[RawIMAP] = field(default_factory=list)
    imaplib_clients: list[imaplib.IMAP4] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.addresses[0][1]

    @property
    def tls_port(self) -> int:
        return self.server.tls_addresses[0][1]

    async def raw(self, *, tls: bool = False, greeting: bytes = b"* OK") -> RawIMAP:
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1",
                self.tls_port if tls else self.port,
                ssl=self.client_tls if tls else None,
                server_hostname="127.0.0.1" if tls else None,
            )
        client = RawIMAP(reader, writer)
        self.clients.append(client)
        first = await client.line()
        assert first.startswith(greeting), first
        return client

    async def imap(self, user: str | None = ALICE, password: str = ALICE_PW) -> imaplib.IMAP4:
        """An imaplib client (logged in unless `user` is None); use it through `call`."""
        client = await asyncio.to_thread(imaplib.IMAP4, "127.0.0.1", self.port, timeout=TIMEOUT)
        self.imaplib_clients.append(client)
        if user is not None:
            await call(client.login, user, password)
        return client

    async def finish(self) -> None:
        for c in self.clients:
            await c.close()
        for i in self.imaplib_clients:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(i.shutdown)
        async with asyncio.timeout(TIMEOUT):
            while self.server.sessions:  # every session ends with its client (no leaks)
                await asyncio.sleep(0.01)
        await self.server.stop(1.0)


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking imaplib call in a thread."""
    return await asyncio.to_thread(fn, *args)


def message(subject: str, body: bytes = b"Hello\r\n", sender: str = "carol@example.org") -> bytes:
    return (
        f"From: Carol <{sender}>\r\nTo: alice@corp.test\r\nSubject: {subject}\r\n"
        f"Date: Tue, 3 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@example.org>\r\n\r\n"
    ).encode() + body


RigFactory = Callable[..., Awaitable[IMAPRig]]


@pytest.fixture(params=["memory", "sqlite"])
async def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[[], Awaitable[Any]]]:
    """Build (and reopen) a store of the parametrized kind; SQLite ones share `tmp_path/data`."""
    bases: list[SQLiteStore] = []
    memory = MemoryMailboxStore()

    async def make() -> MailboxStore:
        if request.param == "memory":
            return memory
        for b in bases:
            await b.close()
        bases.clear()
        base = SQLiteStore(tmp_path / "data", StoreSettings())
        await base.open()
        bases.append(base)
        return SQLiteMailboxStore(base)

    make.kind = request.param  # type: ignore[attr-defined]
    yield make
    for b in bases:
        await b.close()


@pytest.fixture
async def make_rig(
    store_factory: Callable[[], Awaitable[MailboxStore]], server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> AsyncIterator[RigFactory]:
    made: list[IMAPRig] = []

    async def make(*, store: MailboxStore | None = None, tls: bool = True, **overrides: Any) -> IMAPRig:
        updates = {k: overrides.pop(k) for k in ("idle_timeout", "login_timeout") if k in overrides}
        settings = IMAPSettings(**{**SETTINGS, **({"listen_tls": []} if not tls else {}), **overrides})
        if updates:
            settings = settings.model_copy(update=updates)  # below the configurable minimum
        store = store or await store_factory()
        auth = FakeAuthenticator({ALICE: ALICE_PW, BOB: BOB_PW, "a": "pw-a", "adm": "pw-adm"})
        server = IMAPServer(settings, store, auth, tls_context=server_tls if tls else None)
        rig = IMAPRig(server, store, auth, settings, client_tls)
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
async def rig(make_rig: RigFactory) -> IMAPRig:
    return await make_rig()
