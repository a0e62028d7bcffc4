"""Serving the admin API inside mailstandby's event loop (uvicorn on sockets we bind)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator

import uvicorn
from starlette.applications import Starlette

from mailstandby.config import AdminSettings, split_listen

log = logging.getLogger(__name__)
logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # its start/stop chatter; errors still show


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # mailstandby owns SIGTERM/SIGINT and stops this server itself


class AdminServer:
    def __init__(self, settings: AdminSettings, app: Starlette, *, cert: str = "", key: str = "") -> None:
        self.settings = settings
        self.sockets: list[socket.socket] = []
        tls = {"ssl_certfile": cert, "ssl_keyfile": key} if settings.tls else {}
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            limit_concurrency=100,
            timeout_keep_alive=30,
            h11_max_incomplete_event_size=64 * 1024,
            **tls,  # type: ignore[arg-type]
        )
        self.server = _Server(config)
        self.task: asyncio.Task[None] | None = None

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for s in self.sockets]

    @property
    def scheme(self) -> str:
        return "https" if self.settings.tls else "http"

    async def start(self) -> None:
        for value in self.settings.listen:
            host, port = split_listen(value)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
            sock.setblocking(False)
            self.sockets.append(sock)
        if self.sockets:
            self.task = asyncio.create_task(self.server.serve(sockets=self.sockets), name="admin-http")
            while not self.server.started and not self.task.done():
                await asyncio.sleep(0.01)
            if self.task.done():
                self.task.result()  # raise what stopped it

    async def stop(self) -> None:
        if self.task is None:
            return
        self.server.should_exit = True
        try:
            await asyncio.wait_for(self.task, 5)
        except TimeoutError:
            self.server.force_exit = True
            self.task.cancel()
        for sock in self.sockets:
            sock.close()
