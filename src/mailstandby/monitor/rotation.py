"""Every directory address probed with `RCPT TO`, in rotation, at a rate the primary can bear.

A cycle asks every address once. Its addresses (each enabled directory user's
own address, less those of `monitor.watch`, which the rounds probe) are cut
into sessions of `rotation_session` recipients, `rotation_batch` per
transaction; the sessions start evenly spread over `rotation_period`, and
every RCPT takes a slot of the monitor's shared `Pacer`, so the primary never
sees more than `rotation_rate` RCPTs a second from us. When the addresses
cannot all be asked within the period at that rate, the cycle takes longer
(logged): the rate is the promise to the primary's administrator.

Between sessions, the re-check loop looks every `fast_interval` seconds for
addresses whose last answer was a failure but that are not yet DOWN (a
failing address is confirmed before it counts) and for DOWN addresses not
asked for `interval` seconds (so a mailbox that answers again is seen without
waiting for the rotation), and asks them in one session.

A session that cannot talk to the primary at all reports nothing about its
addresses (that is the system probe's business, which it wakes); one that
breaks off part way is resumed with the addresses it did not ask.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from mailstandby.monitor import probes
from mailstandby.monitor.health import Health, Status


@dataclass(frozen=True, slots=True)
class Plan:
    """Where and how the rotation asks."""

    host: str
    port: int
    helo: str
    lmtp: bool
    timeout: float
    period: float
    batch: int
    session: int
    fast_interval: float
    down_interval: float


log = logging.getLogger(__name__)

Report = Callable[[Mapping[str, probes.Result]], Awaitable[None]]


class Rotation:
    def __init__(
        self,
        plan: Plan,
        pacer: probes.Pacer,
        *,
        addresses: Callable[[], Sequence[str]],
        health: Callable[[], Mapping[str, Health]],
        report: Report,
        trouble: Callable[[str], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.plan = plan
        self.pacer = pacer
        self.addresses = addresses
        self.health = health
        self.report = report
        self.trouble = trouble
        self.clock = clock
        self.cycles = 0  # complete cycles
        self.last_cycle = 0.0  # seconds the last complete cycle took
        self.size = 0  # addresses in the current cycle

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._sweep(), name="monitor-rotation")
            tasks.create_task(self._recheck(), name="monitor-recheck")

    # -- the rotation ------------------------------------------------------------------------
    async def _sweep(self) -> None:
        while True:
            try:
                await self.cycle()
            except Exception:
                log.exception("address rotation failed; starting over")
                await asyncio.sleep(self.plan.fast_interval)

    async def cycle(self) -> None:
        """Ask every address once, sessions spread evenly over the period."""
        p = self.plan
        started = time.monotonic()
        addresses = list(self.addresses())
        self.size = len(addresses)
        chunks = [addresses[i : i + p.session] for i in range(0, len(addresses), p.session)]
        slot = p.period / max(1, len(chunks))
        for n, chunk in enumerate(chunks):
            await _until(started + n * slot)
            await self.ask(chunk)
        took = time.monotonic() - started
        if took > p.period * 1.05 and addresses:
            log.warning(
                "asking %d addresses took %.0fs, more than rotation_period (%.0fs): the rate (%.1f RCPT/s) binds",
                len(addresses),
                took,
                p.period,
                1.0 / self.pacer.spacing,
            )
        await _until(started + p.period)
        self.cycles += 1
        self.last_cycle = time.monotonic() - started

    async def ask(self, addresses: Sequence[str]) -> None:
        """RCPT TO for each address, in as many sessions as it takes; each answer is reported."""
        p = self.plan
        left = list(addresses)
        while left:
            session = await probes.rcpt(
                p.host, p.port, p.helo, left, p.timeout, lmtp=p.lmtp, batch=p.batch, pacer=self.pacer
            )
            if session.results:
                await self.report(session.results)
            if not session.failure:
                return
            if not session.results:  # no answer at all: the primary's trouble, not these mailboxes'
                self.trouble(session.failure)
                return
            left = [a for a in left if a not in session.results]

    # -- confirmation and recovery ------------------------------------------------------------
    async def _recheck(self) -> None:
        while True:
            await asyncio.sleep(self.plan.fast_interval)
            try:
                due = self.due(self.clock())
                if due:
                    await self.ask(due)
            except Exception:
                log.exception("address re-check failed")

    def due(self, now: float) -> list[str]:
        """Failing addresses not yet DOWN, and DOWN ones not asked for `down_interval` seconds."""

        def wanted(h: Health) -> bool:
            if h.status is Status.DOWN:
                return now - h.checked_at >= self.plan.down_interval
            return h.failures > 0

        return [address for address, h in self.health().items() if wanted(h)]


async def _until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
