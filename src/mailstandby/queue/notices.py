"""Queueing the DSNs the queue runner decides on (RFC 3461, RFC 3464): failures, successes, delays.

A DSN is a new message from the null reverse-path, accepted into the store
like any other and delivered by the same runner. Never one about a message
that itself had a null reverse-path or was a DSN (RFC 5321 §6.1): no loops.

A failure DSN is queued before the failure is recorded (at least once); a
success report after the delivery is recorded (at most once). A delay notice
is queued with its recipients marked as reported in the same store
transaction, so each recipient's sender gets exactly one, restart or not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mailstandby.config import QueueSettings
from mailstandby.core.events import Event
from mailstandby.core.model import Envelope, new_queue_id
from mailstandby.queue.dsn import DELAYED, Failure, Original, build_dsn, wanted
from mailstandby.store.base import MailStore, NewMessage, Origin, QueuedMessage, QueuedRecipient

log = logging.getLogger(__name__)


class Notices:
    def __init__(
        self,
        store: MailStore,
        settings: QueueSettings,
        *,
        hostname: str,
        clock: Callable[[], float],
        submit: Callable[[QueuedMessage], None],
    ) -> None:
        self.store = store
        self.settings = settings
        self.hostname = hostname
        self.clock = clock
        self.submit = submit  # hands a queued DSN to the runner

    def delay_due(self, message: QueuedMessage, r: QueuedRecipient, now: float) -> bool:
        """Whether a recipient just deferred gets its one delay notice now: deferred for
        `delay_warning_time` (Postfix's delay_warning_time) and NOTIFY has DELAY or is unset
        (RFC 3461 §4.1; Postfix warns on an unset NOTIFY too)."""
        warn_after = self.settings.delay_warning_time
        return (
            warn_after > 0
            and not r.delay_reported
            and now - message.received_at >= warn_after
            and wanted(r.notify, DELAYED)
            and message.sender != ""
            and message.origin is not Origin.DSN
        )

    async def report_delay(self, message: QueuedMessage, delays: list[Failure], body: bytes) -> None:
        """One delay notice for `delays`, marked reported with it; when it cannot be queued, the
        recipients' next deferral tries again."""
        if await self.send(message, delays, body, reports_delay=tuple((message.id, f.rcpt) for f in delays)):
            now = self.clock()
            for r in message.recipients:
                if any(f.rcpt == r.rcpt for f in delays):
                    r.delay_reported = now

    async def send(
        self,
        message: QueuedMessage,
        failures: list[Failure],
        body: bytes,
        *,
        reports_delay: tuple[tuple[str, str], ...] = (),
    ) -> bool:
        """Queue one DSN about `failures` (all of one kind); False when it could not be queued."""
        if message.sender == "" or message.origin is Origin.DSN:
            log.info("%s: id=%s (null sender: no bounce for a bounce)", Event.QUEUE_DSN_SUPPRESSED, message.id)
            return True
        try:
            original = Original(message.id, message.sender, message.received_at, body, message.ret, message.envid)
            dsn = build_dsn(
                hostname=self.hostname, bounce_from=self.settings.bounce_from, original=original, failures=failures
            )
            envelope = Envelope(sender="", recipients=[message.sender], smtputf8=not message.sender.isascii())
            notice = NewMessage(new_queue_id(), envelope, dsn, self.clock(), Origin.DSN, reports_delay=reports_delay)
            queued = await self.store.accept(notice)
        except Exception:
            log.exception("cannot queue a DSN for %s; its recipients stay queued or are reported later", message.id)
            return False
        action = failures[0].action
        log.info(
            "%s: id=%s dsn=%s to=<%s> action=%s", Event.QUEUE_DSN_SENT, message.id, queued.id, message.sender, action
        )
        self.submit(queued)
        return True
