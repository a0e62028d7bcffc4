"""Test harness for the SMTP receiving side: a raw-bytes client and the gateway under test.

`RawClient` writes exact bytes and reads whole (multi-line) replies (maddy
`tests/conn.go`, RELIABILITY harness conventions 2); `Gateway` bundles the real
SMTPServer + GatewayIntake + SQLiteStore that the fixtures in conftest.py build.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from raw_stream import TIMEOUT, RawStream

from mailstandby.config import KiB, SMTPSettings
from mailstandby.directory.static import StaticDirectory
from mailstandby.intake import GatewayIntake
from mailstandby.smtp.server import SMTPServer
from mailstandby.store.base import QueuedMessage
from mailstandby.store.sqlite import SQLiteStore

HOSTNAME = "mx.corp.test"

SETTINGS: dict[str, Any] = {
    "listen": ["127.0.0.1:0"],
    "max_message_size": 64 * KiB,
    "max_recipients": 5,
    "max_errors": 5,
    "max_line_length": 1024,
    "command_timeout": 5.0,
    "data_timeout": 5.0,
    "min_free_space": 0,
}

_REPLY_LINE = re.compile(rb"^([2-5]\d\d)([ -])(.*)\r\n$", re.DOTALL)


# -- the raw client --------------------------------------------------------------------


@dataclass
class SMTPReply:
    code: int
    lines: list[str]  # each line as received, without CRLF

    @property
    def last(self) -> str:
        return self.lines[-1]

    @property
    def texts(self) -> list[str]:
        return [line[4:] for line in self.lines]

    def __str__(self) -> str:
        return " | ".join(self.lines)


class ConnectionGone(AssertionError):
    """The server closed the connection where a reply was expected."""


class RawClient(RawStream):
    """Writes exact bytes; reads whole (multi-line) replies."""

    async def reply(self) -> SMTPReply:
        lines: list[str] = []
        async with asyncio.timeout(TIMEOUT):
            while True:
                raw = await self.reader.readline()
                if not raw:
                    raise ConnectionGone(f"connection closed after {lines!r}")
                m = _REPLY_LINE.match(raw)
                assert m is not None, f"malformed reply line {raw!r}"
                assert not lines or lines[0][:3] == m.group(1).decode(), f"code changed inside a reply: {raw!r}"
                lines.append(raw[:-2].decode("utf-8"))
                if m.group(2) == b" ":
                    return SMTPReply(int(m.group(1)), lines)

    async def expect(self, prefix: str) -> SMTPReply:
        """The next reply; its last line must start with `prefix` (e.g. "250 2.1.5")."""
        r = await self.reply()
        assert r.last.startswith(prefix), f"expected {prefix!r}, got {r}"
        return r

    async def command(self, line: str | bytes, prefix: str) -> SMTPReply:
        await self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return await self.expect(prefix)

    async def ehlo(self, name: str = "client.test") -> SMTPReply:
        return await self.command(f"EHLO {name}", "250 ")

    async def replies_until_eof(self) -> list[SMTPReply]:
        """Every reply until the server closes; fails if it does not close within TIMEOUT."""
        out: list[SMTPReply] = []
        async with asyncio.timeout(TIMEOUT):
            while True:
                try:
                    out.append(await self.reply())
                except ConnectionGone as e:
                    assert "after []" in str(e), f"connection closed mid-reply: {e}"
                    return out

    async def quit(self) -> None:
        """QUIT, 221, and the server closes: the normal end of a test."""
        await self.send(b"QUIT\r\n")
        replies = await self.replies_until_eof()
        assert [r.code for r in replies] == [221], [str(r) for r in replies]
        await self.close()


# -- the gateway under test ------------------------------------------------------------


@dataclass
class Gateway:
    server: SMTPServer
    store: SQLiteStore
    intake: GatewayIntake
    directory: StaticDirectory
    settings: SMTPSettings
    data_dir: Path
    client_tls: ssl.SSLContext
    accepted: list[QueuedMessage] = field(default_factory=list)
    clients: list[RawClient] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.addresses[0][1]

    async def connect(self, *, greet: bool = True) -> RawClient:
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        client = RawClient(reader, writer)
        self.clients.append(client)
        if greet:
            await client.expect(f"220 {HOSTNAME} ")
        return client

    async def smtp(self, fn: Callable[[smtplib.SMTP], Any]) -> Any:
        """Run `fn` with a connected smtplib client in a thread; QUIT afterwards."""

        def run() -> Any:
            with smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.test", timeout=TIMEOUT) as s:
                return fn(s)

        return await asyncio.to_thread(run)

    async def body(self, queued: QueuedMessage) -> bytes:
        return await self.store.read_body(queued.id)

    async def stored_ids(self) -> set[str]:
        """What the store holds, read from the store itself (not from the callback)."""
        return {m.id for m in await self.store.pending()}

    async def finish(self) -> None:
        """Teardown with the leak check: every session ends once its client is gone."""
        for c in self.clients:
            await c.close()
        try:
            async with asyncio.timeout(TIMEOUT):
                while self.server.sessions:
                    await asyncio.wait(list(self.server.sessions.values()))
        except TimeoutError:
            pytest.fail(f"{len(self.server.sessions)} SMTP session(s) outlived their clients")
        finally:
            await self.server.stop(0)
            await self.store.close()
        assert self.server.sessions == {}


GatewayFactory = Callable[..., Awaitable[Gateway]]


class BufferPeak:
    """The largest unread input any server connection held (memory bound, RELIABILITY P3/X3)."""

    def __init__(self) -> None:
        self.peak = 0


# -- message helpers -------------------------------------------------------------------

RECEIVED = re.compile(rb"\AReceived: [^\r\n]*\r\n(?:\t[^\r\n]*\r\n)*")


def split_received(stored: bytes) -> tuple[bytes, bytes]:
    """(our Received header, the rest) of a stored body."""
    m = RECEIVED.match(stored)
    assert m is not None, f"stored body does not start with a Received header: {stored[:200]!r}"
    return m.group(0), stored[m.end() :]


def message(subject: str = "test", body: bytes = b"hello\r\n", *, size: int | None = None) -> bytes:
    """A small RFC 5322 message with CRLF line ends, optionally padded to exactly `size` bytes."""
    msg = f"From: sender@example.test\r\nTo: alice@corp.test\r\nSubject: {subject}\r\n\r\n".encode() + body
    if size is None:
        return msg
    full, rest = divmod(size - len(msg), 78)
    assert full >= 1, "size too small to pad"
    lines = [b"y" * 76 + b"\r\n"] * full
    if rest == 1:
        lines[-1] = b"y" * 77 + b"\r\n"
    elif rest >= 2:
        lines.append(b"z" * (rest - 2) + b"\r\n")
    msg += b"".join(lines)
    assert len(msg) == size
    return msg
