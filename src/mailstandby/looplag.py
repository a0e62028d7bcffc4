"""How late the event loop runs what is due: the scheduling delay every session feels.

One task sleeps `interval` seconds again and again; how much later than asked
it wakes is the lag, which only CPU work on the loop (or a starved process)
causes. Each measure goes to the `mailstandby_event_loop_lag_seconds`
histogram; one past `warn_after` is logged (at most one warning per
`WARN_EVERY` seconds, with the worst lag seen since the last one), so a
regression of "nothing CPU-heavy on the event loop" (docs/security.md,
"Attacker input and the event loop") shows in the metrics and the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Histogram

from mailstandby.core.events import Event

log = logging.getLogger(__name__)

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
WARN_EVERY = 10.0  # seconds between two lag warnings


class LoopLagMonitor:
    def __init__(
        self,
        registry: CollectorRegistry | None,
        *,
        warn_after: float,
        interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.warn_after = warn_after
        self.clock = clock
        self.histogram = Histogram(
            "mailstandby_event_loop_lag_seconds",
            "How much later than scheduled the event loop woke a timer (CPU work on the loop)",
            buckets=BUCKETS,
            registry=registry,
        )
        self.worst = 0.0  # since start
        self._pending = 0.0  # worst lag not yet reported in a warning
        self._warned_at = float("-inf")

    async def run(self) -> None:
        while True:
            started = self.clock()
            await asyncio.sleep(self.interval)
            self.observe(max(0.0, self.clock() - started - self.interval))

    def observe(self, lag: float) -> None:
        self.histogram.observe(lag)
        self.worst = max(self.worst, lag)
        if lag <= self.warn_after:
            return
        self._pending = max(self._pending, lag)
        now = self.clock()
        if now - self._warned_at >= WARN_EVERY:
            log.warning(
                "%s: the event loop ran %.3fs late (warning past %.3fs): CPU work on the loop?",
                Event.LOOP_LAG,
                self._pending,
                self.warn_after,
            )
            self._warned_at, self._pending = now, 0.0
