"""POP3 listeners: plain (with STLS) and implicit TLS; a Session per connection; graceful shutdown.

The byte-level connection (bounded buffers, timeouts, STLS without pipelined
plaintext) is `mailstandby.transport.Connection`, shared with SMTP and IMAP.
On shutdown every session gets `-ERR server shutting down` (POP3 has no other
goodbye, CONTRIBUTING.md); a session in the UPDATE state finishes first, up to the
grace period.
"""

from __future__ import annotations

import logging
import ssl

from mailstandby.auth import Authenticator, SessionSlots
from mailstandby.config import POP3Settings
from mailstandby.core.model import new_queue_id
from mailstandby.listeners import Listeners
from mailstandby.pop3 import codes
from mailstandby.pop3.session import Session, State
from mailstandby.store.mailbox import MailboxStore
from mailstandby.transport import Connection

log = logging.getLogger(__name__)


class POP3Server(Listeners):
    """Runs a Session per connection on each configured listener."""

    goodbye = codes.ERR_SHUTTING_DOWN.wire()
    internal_error = codes.ERR_SYS_TEMP_ERROR.wire()
    too_long = codes.ERR_SYS_TEMP_SESSION_TOO_LONG.wire()
    too_many = codes.ERR_SYS_TEMP_TOO_MANY.wire()
    too_many_from_client = codes.ERR_SYS_TEMP_TOO_MANY_FROM_CLIENT.wire()
    login_too_slow = codes.ERR_SYS_TEMP_LOGIN_TIMEOUT.wire()

    def __init__(
        self,
        settings: POP3Settings,
        store: MailboxStore,
        authenticator: Authenticator,
        *,
        hostname: str,
        tls_context: ssl.SSLContext | None,
    ) -> None:
        super().__init__(
            settings.listen,
            settings.listen_tls,
            tls_context,
            write_timeout=settings.timeout,
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
        self.hostname = hostname
        self.slots = SessionSlots(settings.max_connections_per_user)

    def make_session(self, conn: Connection) -> Session:
        return Session(
            conn,
            self.store,
            self.authenticator,
            self.settings,
            hostname=self.hostname,
            tls_context=self.tls_context,
            sid=new_queue_id(),
            slots=self.slots,
        )

    def session_ended(self, session: Session) -> None:
        session.end()

    def logged_in(self, session: Session) -> bool:
        return session.state is not State.AUTHORIZATION
