"""Mail routed to the standby during an outage: filed in the users' standby mailboxes, its outcomes
committed with the copies (all or nothing), after the users' outage forwarding was queued.

The runner hands over the recipients its router sent to Route.STANDBY; a recipient that cannot be
filed (no standby mailboxes, a store error) is deferred with the queue's backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from mailstandby.config import QueueSettings
from mailstandby.core.events import Event
from mailstandby.core.reply import Reply
from mailstandby.directory.base import User
from mailstandby.queue.dsn import DELIVERED, Failure, wanted
from mailstandby.queue.notices import Notices
from mailstandby.queue.outcomes import backoff
from mailstandby.routing import Decision, Route, Router
from mailstandby.store.base import MailStore, Outcome, QueuedMessage, QueuedRecipient, RcptState, StoreError

log = logging.getLogger(__name__)


class Journal(Protocol):
    """Files journal copies in standby mailboxes, atomically with the delivery outcomes."""

    def journal_copies(self, users: list[str], body: bytes, internal_date: float) -> Callable[[Any], Any]:
        """A function for the store to run in the transaction that records the outcomes."""
        ...

    def standby_copies(self, users: list[str], body: bytes, internal_date: float) -> Callable[[Any], Any]:
        """The same for mail delivered to the standby (an outage): the delivery itself."""
        ...

    def published(self, result: Any) -> None:
        """Called with that function's result once it is committed (to wake IDLE sessions)."""
        ...


class Forwarding(Protocol):
    """Outage forwarding to users' alternate addresses and modes (idempotent per message and user)."""

    async def forward(self, user: User, raw: bytes, envelope_sender: str, *, message_id: str) -> Any: ...


class StandbyFiling:
    def __init__(
        self,
        store: MailStore,
        router: Router,
        settings: QueueSettings,
        notices: Notices,
        standby: Journal | None,
        forwarding: Forwarding | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.router = router
        self.settings = settings
        self.notices = notices
        self.standby = standby  # the standby mailboxes, if configured
        self.forwarding = forwarding  # outage forwarding to the users' alternate addresses, if configured
        self.clock = clock

    async def file(
        self, message: QueuedMessage, rcpts: list[QueuedRecipient], decisions: dict[str, Decision], body: bytes
    ) -> None:
        """Deliver into standby mailboxes: the copies and the outcomes commit together or not at all."""
        now = self.clock()
        owners = {u.address: u for r in rcpts if (u := self.router.user(r.rcpt)) is not None}
        users = list(owners)
        reply = "250 2.0.0 filed in the standby mailbox"
        outcomes = [
            Outcome(message.id, r.rcpt, RcptState.DELIVERED, r.attempts + 1, 0.0, reply, Route.STANDBY.value)
            for r in rcpts
        ]
        try:
            if self.standby is None:
                raise StoreError("no standby mailboxes configured")
            for user in owners.values():  # queued first, idempotently: a retry after a crash adds nothing
                if self.forwarding is not None:
                    await self.forwarding.forward(user, body, message.sender, message_id=message.id)
            filed = self.standby.standby_copies(users, body, message.received_at)
            result = await self.store.record(outcomes, also=filed, atomic=True)
        except Exception as e:
            for r in rcpts:
                r.attempts += 1
                r.next_attempt = now + backoff(self.settings, r.attempts)
                log.warning(
                    "%s: id=%s to=<%s> route=standby attempts=%d: cannot file: %s",
                    Event.QUEUE_DEFERRED,
                    message.id,
                    r.rcpt,
                    r.attempts,
                    e,
                )
            return
        self.standby.published(result)
        reply_250 = Reply(250, "2.0.0", "filed in the standby mailbox")
        delivered = [
            Failure(r.rcpt, reply_250, action=DELIVERED, orcpt=r.orcpt) for r in rcpts if wanted(r.notify, DELIVERED)
        ]
        if delivered:
            await self.notices.send(message, delivered, body)
        for r in rcpts:
            log.info(
                "%s: id=%s to=<%s> route=standby reason=%s attempts=%d",
                Event.QUEUE_DELIVERED,
                message.id,
                r.rcpt,
                decisions[r.rcpt].reason,
                r.attempts + 1,
            )
        done = {r.rcpt for r in rcpts}
        message.recipients = [r for r in message.recipients if r.rcpt not in done]
