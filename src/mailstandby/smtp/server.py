"""SMTP listeners (MX and submission): a Session per connection, 421 on shutdown.

Sockets, session tasks and the graceful stop are `mailstandby.listeners.Listeners`,
shared with the IMAP and POP3 servers.
"""

from __future__ import annotations

import logging
import ssl

from mailstandby.config import SMTPSettings
from mailstandby.core.model import new_queue_id
from mailstandby.limits import MemoryBudget, networks
from mailstandby.listeners import Listeners
from mailstandby.ratelimit import ClientRate, ClientRates
from mailstandby.smtp import codes
from mailstandby.smtp.session import Intake, Login, Session
from mailstandby.transport import Connection

log = logging.getLogger(__name__)


class SMTPServer(Listeners):
    """Runs a Session per connection on each configured listener (MX, or submission with a Login)."""

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
        super().__init__(
            settings.listen,
            listen_tls or [],
            tls_context,
            write_timeout=settings.command_timeout,
            handshake_timeout=settings.command_timeout,
            max_session_time=settings.max_session_time,
            max_connections=settings.max_connections,
            max_connections_per_client=settings.max_connections_per_client,
            min_rate=settings.min_data_rate,
            rate_window=settings.data_rate_window,
        )
        self.settings = settings
        self.intake = intake
        self.hostname = hostname
        self.login = login  # submission: AUTH offered and required
        self.data_budget = MemoryBudget(settings.max_data_memory)  # shared by this listener's sessions
        self.rates = rates_for(settings)  # per client, shared by this listener's sessions (Postfix anvil)
        self.goodbye = codes.C421_SHUTTING_DOWN.wire(enhanced=False)
        self.too_many = codes.C421_TOO_MANY_CONNECTIONS.wire(enhanced=False)
        self.too_many_from_client = codes.C421_TOO_MANY_FROM_CLIENT.wire(enhanced=False)

    def make_session(self, conn: Connection) -> Session:
        return Session(
            conn,
            self.intake,
            self.settings,
            hostname=self.hostname,
            tls_context=self.tls_context,
            sid=new_queue_id(),
            login=self.login,
            data_budget=self.data_budget,
            rates=self.rates,
        )

    def connection_rate_ok(self, host: str) -> bool:
        return self.rates.connections.allow(host)

    def goodbye_for(self, session: Session) -> bytes:
        return codes.C421_SHUTTING_DOWN.wire(enhanced=session.esmtp)

    def too_long_for(self, session: Session) -> bytes:
        return codes.C421_TIMEOUT.wire(enhanced=session.esmtp)

    def internal_error_for(self, session: Session) -> bytes:
        return codes.C451_LOCAL_ERROR.wire(enhanced=session.esmtp)


def rates_for(settings: SMTPSettings) -> ClientRates:
    exempt = networks(settings.rate_limit_exceptions)

    def rate(limit: int) -> ClientRate:
        return ClientRate(limit, window=settings.rate_time_unit, exempt=exempt)

    return ClientRates(
        rate(settings.client_connection_rate_limit),
        rate(settings.client_message_rate_limit),
        rate(settings.client_recipient_rate_limit),
    )
