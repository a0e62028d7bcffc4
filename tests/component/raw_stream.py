"""The byte-exact client side shared by the SMTP, POP3 and IMAP harnesses: writes exactly what a
test gives it, bounds every wait, and closes quietly. Each protocol adds its own reply reading."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

TIMEOUT = 10.0  # seconds any single wait in a test may take before it fails


class RawStream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        async with asyncio.timeout(TIMEOUT):
            await self.writer.drain()

    async def until_eof(self) -> bytes:
        async with asyncio.timeout(TIMEOUT):
            return await self.reader.read()

    async def starttls(self, context: ssl.SSLContext) -> None:
        async with asyncio.timeout(TIMEOUT):
            await self.writer.start_tls(context, server_hostname="127.0.0.1")

    async def close(self) -> None:
        if self.writer.is_closing():
            return
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            async with asyncio.timeout(TIMEOUT):
                await self.writer.wait_closed()
