"""IMAP listeners: plain (with STARTTLS) and implicit TLS; a Session per connection; graceful shutdown.

Mirrors `pop3.server`: the byte-level connection is `transport.Connection`
(bounded buffers, timeouts, STARTTLS without pipelined plaintext); `sessions`
holds every live session and its task; `stop(grace)` stops listening and ends
every session with `* BYE server shutting down` (STYLE §3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

from mailstandby.auth import Authenticator
from mailstandby.config import IMAPSettings, split_listen
from mailstandby.core.model import new_queue_id
from mailstandby.imap.session import SHUTDOWN_BYE, Session, SessionSlots
from mailstandby.store.mailbox import MailboxStore
from mailstandby.transport import Connection, ConnectionClosed

log = logging.getLogger(__name__)

TLS_HANDSHAKE_TIMEOUT = 60.0  # seconds (RELIABILITY T4)
INTERNAL_BYE = b"* BYE Internal error occurred.\r\n"


class IMAPServer:
    """Runs a Session per connection on each configured listener."""

    def __init__(
        self,
        settings: IMAPSettings,
        store: MailboxStore,
        authenticator: Authenticator,
        *,
        tls_context: ssl.SSLContext | None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.authenticator = authenticator
        self.tls_context = tls_context
        self.servers: list[asyncio.Server] = []
        self.tls_servers: list[asyncio.Server] = []
        self.sessions: dict[Session, asyncio.Task[None]] = {}
        self.slots = SessionSlots(settings.max_connections_per_user)
        self.accepting = True

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for srv in self.servers for s in srv.sockets]

    @property
    def tls_addresses(self) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for srv in self.tls_servers for s in srv.sockets]

    async def start(self) -> None:
        if self.settings.listen_tls and self.tls_context is None:
            raise ValueError("imap.listen_tls needs a TLS certificate")
        loop = asyncio.get_running_loop()
        for listen in self.settings.listen:
            host, port = split_listen(listen)
            srv = await loop.create_server(lambda: self._new_connection(tls=False), host, port, reuse_address=True)
            self.servers.append(srv)
        for listen in self.settings.listen_tls:
            host, port = split_listen(listen)
            srv = await loop.create_server(
                lambda: self._new_connection(tls=True),
                host,
                port,
                reuse_address=True,
                ssl=self.tls_context,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
            )
            self.tls_servers.append(srv)

    def _new_connection(self, *, tls: bool) -> Connection:
        conn = Connection()
        conn.tls_active = tls  # implicit TLS: connection_made comes after the handshake
        conn.write_timeout = self.settings.idle_timeout
        conn.on_open = self._serve
        return conn

    def _serve(self, conn: Connection) -> None:
        if not self.accepting:
            assert conn.transport is not None
            conn.transport.write(SHUTDOWN_BYE)
            conn.close()
            return
        session = Session(
            conn,
            self.store,
            self.authenticator,
            self.settings,
            tls_context=self.tls_context,
            sid=new_queue_id(),
            slots=self.slots,
        )
        task = asyncio.get_running_loop().create_task(self._run(session, conn))
        self.sessions[session] = task

    async def _run(self, session: Session, conn: Connection) -> None:
        try:
            await session.run()
        except ConnectionClosed:
            pass
        except ssl.SSLError as e:
            session.log.info("TLS failure: %s", e.reason)
        except OSError as e:
            session.log.info("connection error: %s", e)
        except asyncio.CancelledError:
            conn.write(SHUTDOWN_BYE)
            await _quiet_flush(conn)
            raise
        except Exception:
            session.log.exception("internal error")  # details stay in the log
            conn.write(INTERNAL_BYE)
            await _quiet_flush(conn)
        finally:
            session.end()
            conn.close()
            self.sessions.pop(session, None)

    async def stop(self, grace: float) -> None:
        """Stop listening; give running commands up to `grace`; BYE every session."""
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
