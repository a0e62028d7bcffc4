"""Delivery outcomes: when a deferred recipient is tried again (`backoff`), and their way to the store:
recorded at once, or held in memory and retried.

When the store cannot take them (disk full, the database away), the runner's schedule goes on as if
they were recorded: a recipient the primary accepted must not be sent again because bookkeeping
failed. Only a crash before a retry succeeds can repeat such a delivery. While outcomes are held, the
node keeps its queue claims (no other node may send those recipients again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from mailstandby.config import QueueSettings
from mailstandby.store.base import MailStore, Outcome, StoreError

log = logging.getLogger(__name__)


def backoff(settings: QueueSettings, attempts: int) -> float:
    """Delay before the next attempt after `attempts` failed ones (exponential, capped)."""
    exponent = min(max(0, attempts - 1), 62)  # a week-long outage must not overflow a float
    return min(settings.retry_max, settings.retry_initial * 2**exponent)


class Recorder:
    def __init__(self, store: MailStore, retry_after: float, published: Callable[[Any], None] | None = None) -> None:
        self.store = store
        self.retry_after = retry_after  # seconds between tries while the store refuses
        self.published = published  # told the result of an `also` function once it is committed
        self.unrecorded: list[Outcome] = []
        self._retry: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def holding(self) -> bool:
        """Outcomes the store has not taken yet are held here."""
        return bool(self.unrecorded)

    async def record(self, outcomes: list[Outcome], *, also: Callable[[Any], Any] | None = None) -> None:
        """Record `outcomes` (with what was held before, and `also` in the same transaction); when the
        store cannot, hold them and try again every `retry_after` seconds."""
        try:
            result = await self.store.record(self.unrecorded + outcomes, also=also)
            self.unrecorded.clear()
            if also is not None and self.published is not None:
                self.published(result)
        except StoreError as e:
            if not self.unrecorded:
                log.error("cannot record delivery outcomes (%s); holding them in memory and retrying", e)
            self.unrecorded = self.unrecorded + outcomes
            if self._retry is None and not self._stopping:
                self._retry = asyncio.get_running_loop().call_later(self.retry_after, self._try_again)

    async def stop(self) -> None:
        """No more timed tries; one last one for what is held (the rest is retried after a restart)."""
        self._stopping = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self.unrecorded:
            await self.record([])

    def _try_again(self) -> None:
        self._retry = None
        if self.unrecorded:
            task = asyncio.get_running_loop().create_task(self.record([]))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
