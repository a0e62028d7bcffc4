"""IMAP listeners: plain (with STARTTLS) and implicit TLS; a Session per connection; graceful shutdown.

Mirrors `pop3.server`: the byte-level connection is `transport.Connection`
(bounded buffers, timeouts, STARTTLS without pipelined plaintext); `sessions`
holds every live session and its task; `stop(grace)` stops listening and ends
every session with `* BYE server shutting down` (CONTRIBUTING.md, Shutdown).
"""

from __future__ import annotations

import logging
import ssl

from mailstandby.auth import Authenticator, SessionSlots
from mailstandby.config import IMAPSettings
from mailstandby.core.model import new_queue_id
from mailstandby.imap.fetching import StructureCache
from mailstandby.imap.session import SHUTDOWN_BYE, Session, State
from mailstandby.listeners import Listeners
from mailstandby.store.mailbox import MailboxStore
from mailstandby.transport import Connection

log = logging.getLogger(__name__)

INTERNAL_BYE = b"* BYE Internal error occurred.\r\n"
SESSION_TOO_LONG_BYE = b"* BYE Session time limit reached; reconnect.\r\n"
# RFC 5530 §3 UNAVAILABLE: temporary; Dovecot refuses extra connections with a BYE too (RELIABILITY X2)
TOO_MANY_BYE = b"* BYE [UNAVAILABLE] Too many connections, try again later.\r\n"
TOO_MANY_FROM_CLIENT_BYE = b"* BYE [UNAVAILABLE] Too many connections from your address, try again later.\r\n"
LOGIN_TIMEOUT_BYE = b"* BYE Disconnected for inactivity during authentication.\r\n"  # Dovecot's words


class IMAPServer(Listeners):
    """Runs a Session per connection on each configured listener."""

    goodbye = SHUTDOWN_BYE
    internal_error = INTERNAL_BYE
    too_long = SESSION_TOO_LONG_BYE
    too_many = TOO_MANY_BYE
    too_many_from_client = TOO_MANY_FROM_CLIENT_BYE
    login_too_slow = LOGIN_TIMEOUT_BYE

    def __init__(
        self,
        settings: IMAPSettings,
        store: MailboxStore,
        authenticator: Authenticator,
        *,
        tls_context: ssl.SSLContext | None,
    ) -> None:
        super().__init__(
            settings.listen,
            settings.listen_tls,
            tls_context,
            write_timeout=settings.idle_timeout,
            max_session_time=settings.max_session_time,
            max_connections=settings.max_connections,
            max_connections_per_client=settings.max_connections_per_client,
            login_timeout=settings.login_timeout,
            min_rate=settings.min_data_rate,
            rate_window=settings.data_rate_window,
        )
        self.settings = settings
        self.store = store
        self.authenticator = authenticator
        self.slots = SessionSlots(settings.max_connections_per_user)
        self.structures = StructureCache()  # shared by every session on this store

    def make_session(self, conn: Connection) -> Session:
        return Session(
            conn,
            self.store,
            self.authenticator,
            self.settings,
            tls_context=self.tls_context,
            sid=new_queue_id(),
            slots=self.slots,
            structures=self.structures,
        )

    def session_ended(self, session: Session) -> None:
        session.end()

    def logged_in(self, session: Session) -> bool:
        return session.state is not State.NOT_AUTHENTICATED
