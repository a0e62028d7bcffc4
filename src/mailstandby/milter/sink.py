"""Where the milter puts messages: the queue (takeover during an outage) and the standby mailboxes (journal).

A takeover goes through the normal intake path: `store.accept()` makes it
durable (fsync'd) and the queue runner delivers it, into the standby mailbox
while the user's route is STANDBY (or to the primary, should it be back first).
Journal copies are filed in one store transaction; they are marked journaled
(the primary has the message), so failback never syncs them back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from mailstandby.core.model import Envelope, new_queue_id
from mailstandby.store.base import MailStore, NewMessage, QueuedMessage

log = logging.getLogger(__name__)


class JournalBoxes(Protocol):
    def journal_copies(self, users: list[str], body: bytes, internal_date: float) -> Callable[[Any], Any]: ...

    def published(self, result: Any) -> None: ...


class StandbySink:
    def __init__(self, store: MailStore, mailboxes: JournalBoxes, on_accepted: Callable[[QueuedMessage], None]) -> None:
        self.store = store
        self.mailboxes = mailboxes
        self.on_accepted = on_accepted

    async def take_over(self, envelope: Envelope, message: bytes, received_at: float) -> str:
        queued = await self.store.accept(NewMessage(new_queue_id(), envelope, message, received_at))
        self.on_accepted(queued)
        return queued.id

    async def journal(self, users: list[str], message: bytes, received_at: float) -> bool:
        try:
            result = await self.store.record([], also=self.mailboxes.journal_copies(users, message, received_at))
        except Exception:
            log.exception("journal copies for %d user(s) failed", len(users))
            return False
        if result is None:  # the store undid the filing and logged why
            return False
        self.mailboxes.published(result)
        return True
