"""Serving the admin API inside mailstandby's event loop (uvicorn on sockets we bind).

The same listener serves the public setup pages, so it holds the limits every
listener holds (RELIABILITY X1, X2): connections are capped in total and per
client at accept (503 and close); a request must arrive whole, headers within
`header_timeout` of its first byte (of connecting, for the first request) and
its body within `body_timeout` of the headers, else the connection is closed.
uvicorn has no such timeouts for h11, hence `GuardedH11Protocol`. Proxy headers
(X-Forwarded-For) count only from `trusted_proxies`: from anyone else they are
ignored, so the throttle and the audit see the real peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol

from mailstandby.config import AdminSettings, split_listen
from mailstandby.core.events import Event
from mailstandby.limits import ConnectionCaps, IPNetwork, allowed, networks

log = logging.getLogger(__name__)
logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # its start/stop chatter; errors still show

# RFC 9110 §15.6.4: 503 with Retry-After; §15.5.9: 408 when the request did not arrive in time.
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 20\r\nretry-after: 10\r\nconnection: close\r\n\r\nService Unavailable\n"
)
TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 16\r\nconnection: close\r\n\r\nRequest Timeout\n"
)


@dataclass
class HTTPLimits:
    """What one admin listener allows; shared by all its connections."""

    caps: ConnectionCaps
    header_timeout: float
    body_timeout: float
    proxies: list[IPNetwork]


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with connection caps and request read deadlines."""

    limits: ClassVar[HTTPLimits]  # set on the subclass `guarded_protocol` makes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._reading_body = False
        self._host = "?"
        self._counted = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._host = self.client[0] if self.client else "?"
        shared = allowed(self._host, self.limits.proxies)
        self._counted = self.limits.caps.admit(self._host, shared=shared) is None
        if not self._counted:
            log.info("%s: admin HTTP connection from %s: too many open", Event.LISTENER_REFUSED, self._host)
            transport.write(REFUSED)
            transport.close()
            return
        self._arm(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._counted:
            self._counted = False
            self.limits.caps.release(self._host)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._deadline is None:  # a new request on a kept-alive connection
            self._arm(self.limits.header_timeout)
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()  # a pipelined request may have been read meanwhile

    def _follow(self) -> None:
        """Move the deadline along with the request: headers, then body, then none."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if not self._reading_body:
                self._reading_body = True
                self._arm(self.limits.body_timeout)
        elif state is not h11.IDLE:
            self._reading_body = False
            self._disarm()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        part = "body" if self._reading_body else "headers"
        log.info("admin HTTP: %s did not send the request %s in time: closing", self._host, part)
        if self.conn.our_state is h11.IDLE:  # nothing answered yet on this request
            self.transport.write(TIMED_OUT)
        self.transport.close()


def guarded_protocol(limits: HTTPLimits) -> type[GuardedH11Protocol]:
    """A protocol class for one listener: uvicorn builds it with its own arguments only."""
    return type("AdminHTTPProtocol", (GuardedH11Protocol,), {"limits": limits})


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # mailstandby owns SIGTERM/SIGINT and stops this server itself


class AdminServer:
    def __init__(self, settings: AdminSettings, app: Starlette, *, tls_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.sockets: list[socket.socket] = []
        if settings.tls and tls_context is None:
            raise ValueError("admin.tls needs a certificate")
        # The listeners' own context (tls.py: its protocols and ciphers, its reload), not one uvicorn builds.
        live = tls_context
        tls = {"ssl_context_factory": lambda _config, _default: live} if settings.tls else {}
        self.limits = HTTPLimits(
            ConnectionCaps(settings.max_connections, settings.max_connections_per_client),
            settings.header_timeout,
            settings.body_timeout,
            networks(settings.trusted_proxies),
        )
        config = uvicorn.Config(
            app,
            http=guarded_protocol(self.limits),
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            # The caps above refuse at accept; uvicorn's own limit would answer 503 to every
            # request once that many connections are open, half-open ones included.
            limit_concurrency=None,
            timeout_keep_alive=30,
            h11_max_incomplete_event_size=64 * 1024,
            # X-Forwarded-For only from the configured proxies (uvicorn trusts loopback by default).
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=list(settings.trusted_proxies),
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
