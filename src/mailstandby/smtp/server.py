"""SMTP listeners: accept connections and run a Session on each; graceful shutdown.

The byte-level connection (bounded buffers, timeouts, STARTTLS) is
`mailstandby.transport.Connection`, shared with the IMAP and POP3 servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

from mailstandby.config import SMTPSettings, split_listen
from mailstandby.core.model import new_queue_id
from mailstandby.smtp import codes
from mailstandby.smtp.session import Intake, Login, Session
from mailstandby.transport import Connection, ConnectionClosed

log = logging.getLogger(__name__)


class SMTPServer:
    """Runs a Session per connection on each configured listener."""

    def __init__(
        self,
        settings: SMTPSettings,
        intake: Intake,
        *,
        hostname: str,
        tls_context: ssl.SSLContext | None,
        login: Login | None = None,
        listen_tls: list[str] | None = None,
    ) -> None:
        self.settings = settings
        self.intake = intake
        self.hostname = hostname
        self.tls_context = tls_context
        self.login = login  # submission: AUTH offered and required
        self.listen_tls = listen_tls or []  # implicit TLS (submissions, RFC 8314)
        self.servers: list[asyncio.Server] = []
        self.tls_servers: list[asyncio.Server] = []
        self.sessions: dict[Session, asyncio.Task[None]] = {}
        self.accepting = True

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for srv in self.servers for s in srv.sockets]

    @property
    def tls_addresses(self) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for srv in self.tls_servers for s in srv.sockets]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for listen in self.settings.listen:
            host, port = split_listen(listen)
            srv = await loop.create_server(self._new_connection, host, port, reuse_address=True, backlog=512)
            self.servers.append(srv)
        for listen in self.listen_tls:
            if self.tls_context is None:
                raise ValueError("implicit-TLS listeners need a certificate")
            host, port = split_listen(listen)
            srv = await loop.create_server(
                lambda: self._new_connection(tls=True),
                host,
                port,
                ssl=self.tls_context,
                reuse_address=True,
                backlog=512,
                ssl_handshake_timeout=self.settings.command_timeout,
            )
            self.tls_servers.append(srv)

    def _new_connection(self, *, tls: bool = False) -> Connection:
        conn = Connection()
        conn.tls_active = tls
        conn.write_timeout = self.settings.command_timeout
        conn.on_open = self._serve
        return conn

    def _serve(self, conn: Connection) -> None:
        if not self.accepting or len(self.sessions) >= self.settings.max_connections:
            reply = codes.C421_SHUTTING_DOWN if not self.accepting else codes.C421_TOO_MANY_CONNECTIONS
            assert conn.transport is not None
            conn.transport.write(reply.wire(enhanced=False))
            conn.close()
            return
        session = Session(
            conn,
            self.intake,
            self.settings,
            hostname=self.hostname,
            tls_context=self.tls_context,
            sid=new_queue_id(),
            login=self.login,
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
            conn.write(codes.C421_SHUTTING_DOWN.wire(enhanced=session.esmtp))
            await _quiet_flush(conn)
            raise
        except Exception:
            session.log.exception("internal error")  # details stay in the log
            conn.write(codes.C451_LOCAL_ERROR.wire(enhanced=session.esmtp))
            await _quiet_flush(conn)
        finally:
            conn.close()
            self.sessions.pop(session, None)

    async def stop(self, grace: float) -> None:
        """Stop listening; let messages in DATA finish up to `grace`; 421 the rest."""
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
