"""A tiny HTTP server on 127.0.0.1:0 that records what Apprise's `json://` and `form://` services post.

A request counts as delivered only when the sink answered it with 2xx. It can
be told to answer the next requests with an error, or to hold the next
request without answering (`stall`), as a provider that is down or hung would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Posted:
    path: str
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class HTTPSink:
    def __init__(self) -> None:
        self.port = 0
        self.delivered: list[Posted] = []  # answered 2xx
        self.refused: list[Posted] = []  # answered with an error or never answered
        self.plan: list[int | str] = []  # per coming request: a status code, or "stall"
        self.changed = asyncio.Condition()
        self.release = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(condition)

    def to(self, path: str) -> list[Posted]:
        return [p for p in self.delivered if p.path == path]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        posted = Posted(path, await reader.readexactly(length))
        step = self.plan.pop(0) if self.plan else 200
        if step == "stall":
            self.refused.append(posted)
            async with self.changed:
                self.changed.notify_all()
            await self.release.wait()
            return  # hang up without an answer
        assert isinstance(step, int)
        reason = "OK" if step < 300 else "Error"
        writer.write(f"HTTP/1.1 {step} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        (self.delivered if 200 <= step < 300 else self.refused).append(posted)
        async with self.changed:
            self.changed.notify_all()
