"""Milter listeners: one Session per connection from the MTA, on the shared `Listeners` base.

The milter protocol has no goodbye: a connection ended by shutdown is simply
closed, and the MTA applies its `milter_default_action` to a message in
progress (`tempfail` keeps it with the sender). A session storing a message
at end of body is `busy`, and the stop gives it the grace period to finish.
A peer that breaks the protocol is logged and disconnected.
"""

from __future__ import annotations

import logging

from mailstandby.config import MilterSettings
from mailstandby.core.model import new_queue_id
from mailstandby.limits import networks
from mailstandby.listeners import Listeners
from mailstandby.milter.codec import ProtocolError
from mailstandby.milter.session import Routing, Session, Sink
from mailstandby.transport import Connection

log = logging.getLogger(__name__)


class ProtocolSession(Session):
    async def run(self) -> None:
        try:
            await super().run()
        except ProtocolError as e:
            self.log.warning("milter protocol error, closing: %s", e)
        except TimeoutError:
            self.log.info("no packet from the MTA in %.0fs, closing", self.settings.timeout)


class MilterServer(Listeners):
    goodbye = b""
    internal_error = b""

    def __init__(self, settings: MilterSettings, routing: Routing, sink: Sink, *, hostname: str, max_size: int) -> None:
        super().__init__(
            settings.listen,
            [],
            None,
            write_timeout=settings.timeout,
            # Closing is the only refusal the protocol has; the MTA applies milter_default_action.
            max_connections=settings.max_connections,
            allowed_peers=networks(settings.allowed_peers),
        )
        self.settings = settings
        self.routing = routing
        self.sink = sink
        self.hostname = hostname
        self.max_size = settings.max_message_size or max_size

    def make_session(self, conn: Connection) -> Session:
        return ProtocolSession(
            conn,
            self.settings,
            self.routing,
            self.sink,
            hostname=self.hostname,
            sid=new_queue_id(),
            max_size=self.max_size,
        )
