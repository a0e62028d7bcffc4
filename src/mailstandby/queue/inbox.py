"""Accepted messages on their way to the queue runner.

Whoever accepts mail hands it in here: the SMTP and submission intakes, the
milter sink, the notifier's notices and forwards. The runner takes from the
inbox once it has started (and gives it up when it stops); what is handed in
before that waits here. The inbox is built before all of them, so the notifier,
which the runner forwards outage mail through, needs no runner, and the
runner needs no notifier built first: no part is wired to another after it
was built. Every message handed in is already durable in the store; the inbox
only says "schedule this now".
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from mailstandby.store.base import QueuedMessage


class Inbox:
    def __init__(self) -> None:
        self._waiting: deque[QueuedMessage] = deque()
        self._taker: Callable[[QueuedMessage], None] | None = None

    def submit(self, message: QueuedMessage) -> None:
        """Hand a durably accepted message to the queue."""
        if self._taker is None:
            self._waiting.append(message)
        else:
            self._taker(message)

    def take(self, taker: Callable[[QueuedMessage], None]) -> None:
        """The runner takes what waits and everything handed in from now on."""
        self._taker = taker
        while self._waiting:
            taker(self._waiting.popleft())

    def release(self) -> None:
        """The runner stops: what is handed in waits again (it is in the store for the next start)."""
        self._taker = None

    def __len__(self) -> int:
        return len(self._waiting)
