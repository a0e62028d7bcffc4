"""Deliveries in doubt: marked in flight before they are sent, looked up before they are sent again.

The one duplicate a store-and-forward relay cannot rule out by itself is a
delivery the primary accepted while we lost its answer: we were killed between
the end of data and the outcome's commit, or the primary never answered the
end of data (RFC 5321 §6.1, §4.5.3.2.6; RELIABILITY D11, D12). Postfix resends
such mail. Here, when the sync's IMAP access to the primary is configured:

1. every recipient relayed to the primary is marked in flight, durably, before
   the transaction starts (`MailStore.mark_sent`), and the mark stays until an
   outcome that is known is recorded (a lost reply to the end of data keeps it);
2. the next attempt for a marked recipient first searches the user's primary
   INBOX for our queue id (`Lookup`: our Received header carries it); found, it
   is recorded as delivered (with its journal copy) and nothing is sent; not
   found, or the search cannot tell, it is sent as before (at least once).

Messages without our Received header (nothing to search for) are not marked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from mailstandby.core.events import Event
from mailstandby.core.reply import Reply
from mailstandby.smtp.relay import UNANSWERED
from mailstandby.store.base import MailStore, QueuedMessage, QueuedRecipient, StoreError

log = logging.getLogger(__name__)

FOUND = Reply(250, "2.0.0", "found in the primary mailbox: an earlier attempt delivered it")
NOT_MARKED = Reply(451, "4.3.0", "cannot mark the delivery in flight; not sent")


class Lookup(Protocol):
    async def delivered(self, user: str, queue_id: str) -> bool:
        """Whether `user`'s primary mailbox holds the message; raises when it cannot tell."""
        ...


def unanswered(reply: Reply) -> bool:
    """A temporary reply meaning the primary may have taken the message (its answer was lost)."""
    return 400 <= reply.code < 500 and UNANSWERED in reply.text


def has_trace(body: bytes, queue_id: str) -> bool:
    """Our Received header with this queue id is in the message's header section."""
    end = body.find(b"\r\n\r\n")
    head = body if end < 0 else body[:end]
    return b"(mailstandby)" in head and b" id " + queue_id.encode("ascii", "replace") in head


class InDoubt:
    def __init__(
        self, store: MailStore, lookup: Lookup, user_of: Callable[[str], str | None], clock: Callable[[], float]
    ) -> None:
        self.store = store
        self.lookup = lookup
        self.user_of = user_of  # recipient address -> the user whose mailbox to search
        self.clock = clock

    async def prepare(
        self, message: QueuedMessage, rcpts: list[QueuedRecipient], body: bytes
    ) -> tuple[dict[str, Reply], list[QueuedRecipient]]:
        """Replies for recipients settled without sending (found in the mailbox, or not markable)
        and the recipients to send now, each marked in flight."""
        settled: dict[str, Reply] = {}
        for r in rcpts:
            if r.sent_at and await self._found(message.id, r.rcpt):
                settled[r.rcpt] = FOUND
        send = [r for r in rcpts if r.rcpt not in settled]
        if not send or not has_trace(body, message.id):
            return settled, send
        now = self.clock()
        try:
            await self.store.mark_sent(message.id, [r.rcpt for r in send], now)
        except StoreError as e:  # unmarked, a crash would leave no trace of the doubt: do not send
            log.warning("%s: id=%s: cannot mark in flight (%s); deferred", Event.QUEUE_DEFERRED, message.id, e)
            return settled | dict.fromkeys((r.rcpt for r in send), NOT_MARKED), []
        for r in send:
            r.sent_at = now
        return settled, send

    async def _found(self, queue_id: str, rcpt: str) -> bool:
        user = self.user_of(rcpt) or rcpt
        try:
            found = await self.lookup.delivered(user, queue_id)
        except Exception as e:  # unknown stays unknown: at least once, as without a look-up
            log.warning("%s: id=%s to=<%s>: %s; sending again", Event.QUEUE_LOOKUP_FAILED, queue_id, rcpt, e)
            return False
        log.info("%s: id=%s to=<%s> user=%s found=%s", Event.QUEUE_LOOKED_UP, queue_id, rcpt, user, found)
        return found
