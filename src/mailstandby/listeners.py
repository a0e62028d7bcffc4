"""Listening sockets shared by the SMTP, IMAP and POP3 servers.

`Listeners` owns what every protocol server does the same way: plain and
implicit-TLS sockets (RFC 8314), one task per connection running that
protocol's session over a `transport.Connection`, one place where a session's
unexpected end is handled (the detail goes to the log, the peer gets the
protocol's generic error), and a graceful stop: stop listening, give sessions
that are in the middle of something (`busy`) up to the grace period, then
send the protocol's goodbye and close. A subclass says how to build a session
and what its protocol says at each of those moments.

Every listener caps its connections (RELIABILITY X2): in total and per client
(address, IPv6 /64), and, where the protocol server says so, per client per
minute (`connection_rate_ok`), refused at accept with the protocol's own temporary
error; a listener with an allow-list closes any other peer at once. A
session that must log in (IMAP, POP3) gets `login_timeout` from connecting
to do so, however busy it keeps itself; `max_session_time` bounds the rest.
A request that has begun must keep arriving at `min_rate` (slowloris; the
measuring is `transport.Connection`'s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any, Protocol

from mailstandby.config import split_listen
from mailstandby.core.events import Event
from mailstandby.limits import ConnectionCaps, IPNetwork, Refusal, allowed
from mailstandby.transport import Connection, ConnectionClosed

log = logging.getLogger(__name__)


class ServedSession(Protocol):
    busy: bool  # in the middle of something the stop should let finish
    log: logging.LoggerAdapter[Any]

    async def run(self) -> None: ...


class Listeners:
    """Subclasses implement `make_session`, and set `goodbye` and `internal_error` (wire bytes)."""

    goodbye: bytes = b""  # sent to sessions ended by shutdown, and to connections refused by it
    internal_error: bytes = b""  # sent when a session dies of an unexpected exception
    too_long: bytes = b""  # sent to a session that reached `max_session_time` (RELIABILITY X1)
    too_many: bytes = b""  # sent to a connection refused because the listener is full (X2)
    too_many_from_client: bytes = b""  # sent to a connection refused because its client holds its share
    login_too_slow: bytes = b""  # sent to a session that did not log in within `login_timeout`

    def __init__(
        self,
        listen: list[str],
        listen_tls: list[str],
        tls_context: ssl.SSLContext | None,
        *,
        write_timeout: float,
        handshake_timeout: float = 60.0,
        max_session_time: float | None = None,
        max_connections: int | None = None,
        max_connections_per_client: int | None = None,
        login_timeout: float | None = None,
        allowed_peers: list[IPNetwork] | None = None,
        min_rate: int = 0,
        rate_window: float = 30.0,
    ) -> None:
        self.listen = listen
        self.listen_tls = listen_tls
        self.tls_context = tls_context
        self.write_timeout = write_timeout
        self.handshake_timeout = handshake_timeout  # RELIABILITY T4
        self.max_session_time = max_session_time  # a hard cap, whatever the client keeps doing (X1)
        self.caps = ConnectionCaps(max_connections, max_connections_per_client)
        self.login_timeout = login_timeout  # None: the protocol has no login (SMTP MX, milter)
        self.allowed_peers = allowed_peers  # None: anyone may connect
        self.min_rate = min_rate  # bytes per second a begun request must keep arriving at (X1; transport.py)
        self.rate_window = rate_window
        self.servers: list[asyncio.Server] = []
        self.tls_servers: list[asyncio.Server] = []
        self.sessions: dict[Any, asyncio.Task[None]] = {}
        self.accepting = True

    # -- what a protocol server provides ----------------------------------------------
    def make_session(self, conn: Connection) -> ServedSession | None:
        """A session for a new connection, or None after writing a refusal to `conn`."""
        raise NotImplementedError

    def goodbye_for(self, session: Any) -> bytes:
        return self.goodbye

    def internal_error_for(self, session: Any) -> bytes:
        return self.internal_error

    def too_long_for(self, session: Any) -> bytes:
        return self.too_long

    def session_ended(self, session: Any) -> None:
        """Release what the session held (per-user slots...)."""

    def connection_rate_ok(self, host: str) -> bool:
        """Count a new connection from `host` against its connection rate; False: refuse it."""
        return True

    def logged_in(self, session: Any) -> bool:
        """Whether the session has authenticated (asked once `login_timeout` has passed)."""
        return True

    # -- sockets ------------------------------------------------------------------------
    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Plain listeners (STARTTLS offered when there is a certificate)."""
        return [s.getsockname()[:2] for srv in self.servers for s in srv.sockets]

    @property
    def tls_addresses(self) -> list[tuple[str, int]]:
        """Implicit-TLS listeners."""
        return [s.getsockname()[:2] for srv in self.tls_servers for s in srv.sockets]

    async def start(self) -> None:
        if self.listen_tls and self.tls_context is None:
            raise ValueError("implicit-TLS listeners need a certificate")
        loop = asyncio.get_running_loop()
        for listen in self.listen:
            host, port = split_listen(listen)
            srv = await loop.create_server(
                lambda: self._connection(tls=False), host, port, reuse_address=True, backlog=512
            )
            self.servers.append(srv)
        for listen in self.listen_tls:
            host, port = split_listen(listen)
            srv = await loop.create_server(
                lambda: self._connection(tls=True),
                host,
                port,
                reuse_address=True,
                backlog=512,
                ssl=self.tls_context,
                ssl_handshake_timeout=self.handshake_timeout,
            )
            self.tls_servers.append(srv)

    def _connection(self, *, tls: bool) -> Connection:
        conn = Connection()
        conn.tls_active = tls  # implicit TLS: connection_made comes after the handshake
        conn.write_timeout = self.write_timeout
        conn.min_rate, conn.rate_window = self.min_rate, self.rate_window
        conn.on_open = self._serve
        return conn

    def _serve(self, conn: Connection) -> None:
        if not self.accepting:
            assert conn.transport is not None
            conn.transport.write(self.goodbye)
            conn.close()
            return
        host = conn.peer[0]
        if self.allowed_peers is not None and not allowed(host, self.allowed_peers):
            log.warning("%s: connection from %s: not in allowed_peers", Event.LISTENER_REFUSED, host)
            conn.close()
            return
        refusal = self.caps.admit(host)
        if refusal is not None:
            self._refuse(conn, refusal)
            return
        if not self.connection_rate_ok(host):
            self.caps.release(host)
            self._refuse(conn, Refusal.RATE)
            return
        session = self.make_session(conn)
        if session is None:
            self.caps.release(host)
            conn.close()
            return
        self.sessions[session] = asyncio.get_running_loop().create_task(self._run(session, conn))

    def _refuse(self, conn: Connection, refusal: Refusal) -> None:
        host = conn.peer[0]
        if refusal is Refusal.TOTAL:
            log.warning("%s: connection from %s: %d open (the maximum)", Event.LISTENER_REFUSED, host, self.caps.total)
            reply = self.too_many
        elif refusal is Refusal.RATE:
            log.info("%s: connection from %s: connection rate limit", Event.LISTENER_REFUSED, host)
            reply = self.too_many_from_client
        else:
            log.info("%s: connection from %s: %d open from it", Event.LISTENER_REFUSED, host, self.caps.count(host))
            reply = self.too_many_from_client
        assert conn.transport is not None
        if reply:
            conn.transport.write(reply)
        conn.close()

    async def _run(self, session: ServedSession, conn: Connection) -> None:
        lifetime = asyncio.timeout(self.max_session_time)
        late: list[bool] = []  # set when the login deadline, not the session time, ended it
        login_due: asyncio.TimerHandle | None = None
        try:
            async with lifetime:
                login_due = self._login_deadline(session, lifetime, late)
                await session.run()
        except TimeoutError:
            if not lifetime.expired():
                raise
            if late:
                session.log.info("no login within %.0fs: closing", self.login_timeout)
                conn.write(self.login_too_slow)
            else:
                session.log.info("session time limit of %.0fs reached: closing", self.max_session_time)
                conn.write(self.too_long_for(session))
            await _quiet_flush(conn)
        except ConnectionClosed:
            pass
        except ssl.SSLError as e:
            session.log.info("TLS failure: %s", e.reason)
        except OSError as e:
            session.log.info("connection error: %s", e)
        except asyncio.CancelledError:
            conn.write(self.goodbye_for(session))
            await _quiet_flush(conn)
            raise
        except Exception:
            session.log.exception("internal error")  # details stay in the log
            conn.write(self.internal_error_for(session))
            await _quiet_flush(conn)
        finally:
            if login_due is not None:
                login_due.cancel()
            self.session_ended(session)
            self.caps.release(conn.peer[0])
            conn.close()
            self.sessions.pop(session, None)

    def _login_deadline(
        self, session: ServedSession, lifetime: asyncio.Timeout, late: list[bool]
    ) -> asyncio.TimerHandle | None:
        """Arm the check that ends a session not logged in `login_timeout` after it began."""
        if self.login_timeout is None:
            return None
        loop = asyncio.get_running_loop()

        def due() -> None:
            if not self.logged_in(session):
                late.append(True)
                lifetime.reschedule(loop.time())

        return loop.call_later(self.login_timeout, due)

    async def stop(self, grace: float) -> None:
        """Stop listening; let busy sessions finish up to `grace`; say goodbye to the rest."""
        self.accepting = False
        for srv in self.servers + self.tls_servers:
            srv.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while any(s.busy for s in self.sessions) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        tasks = list(self.sessions.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        for srv in self.servers + self.tls_servers:
            await srv.wait_closed()


async def _quiet_flush(conn: Connection) -> None:
    with contextlib.suppress(OSError, TimeoutError, ConnectionClosed):
        await asyncio.wait_for(conn.flush(), 1)
