"""The monitor: probe rounds on a timer, health with hysteresis, a verdict each round.

Each round runs the system probe (TCP or SMTP), the RCPT probes of the
watched addresses and, when configured, the end-to-end probe; observations
update the health of the primary and of each watched address; the scope
policy turns health into a verdict, handed to the failover coordinator.

Delivery failures reported by the queue wake the monitor for an early round
(at most one every `interval / 2` seconds): the queue's trouble is confirmed
by a probe before it counts, so a single refused connection does not fail
anyone over, but a real outage is seen sooner than the next scheduled round.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from mailstandby.config import FailoverSettings, MonitorSettings, PrimarySettings
from mailstandby.core.events import Event
from mailstandby.monitor import probes
from mailstandby.monitor.health import Health, Observation, Status, Thresholds, observe
from mailstandby.monitor.verdict import Scope, Verdict, decide

log = logging.getLogger(__name__)

SYSTEM = "primary"  # the target name of the primary as a whole


class HealthLog(Protocol):
    async def record_health(self, target: str, status: str, detail: str) -> None: ...


class Monitor:
    def __init__(
        self,
        settings: MonitorSettings,
        primary: PrimarySettings,
        failover: FailoverSettings,
        *,
        hostname: str,
        owner_of: Callable[[str], str | None],
        on_verdict: Callable[[Verdict], Awaitable[Any]],
        history: HealthLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.primary = primary
        self.scope = Scope(failover.scope)
        self.fraction = failover.fraction
        self.hostname = primary.helo_name or hostname
        self.owner_of = owner_of
        self.on_verdict = on_verdict
        self.history = history
        self.clock = clock
        self.limits = Thresholds(settings.down_after, settings.up_after, settings.min_dwell)
        self.system = Health()
        self.addresses: dict[str, Health] = {a: Health() for a in settings.watch}
        self.rounds = 0
        self.last_round = 0.0
        self.latency: dict[str, float] = {}  # probe name -> seconds, last round
        self.observers: list[Callable[[str, Health, float], None]] = []  # metrics
        self._wake = asyncio.Event()
        self._e2e: probes.EndToEnd | None = self._end_to_end()

    def _end_to_end(self) -> probes.EndToEnd | None:
        s = self.settings
        if not s.end_to_end or s.probe_password_file is None:
            return None
        password = Path(s.probe_password_file).read_text(encoding="utf-8").strip()
        return probes.EndToEnd(
            self.primary.host,
            self.primary.port,
            self.hostname,
            s.probe_address,
            password,
            s.imap_host or self.primary.host,
            s.imap_port,
            s.imap_tls_verify,
            s.end_to_end_deadline,
        )

    # -- the loop ----------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            try:
                await self.round()
            except Exception:
                log.exception("monitor round failed; next round as scheduled")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.interval)
                await asyncio.sleep(max(0.0, self.last_round + self.settings.interval / 2 - self.clock()))
            except TimeoutError:
                pass

    def evidence(self, ok: bool, detail: str) -> None:
        """A delivery result from the queue (the primary's trouble, or a mailbox it calls
        unavailable): trouble wakes the monitor for an early round, whose probes decide."""
        if not ok and self.settings.queue_evidence and self.system.status is not Status.DOWN:
            log.info("queue reports trouble (%s); probing now", detail)
            self._wake.set()

    async def round(self) -> Verdict:
        """One probe round; returns (and hands on) the verdict."""
        s, p = self.settings, self.primary
        self.last_round = now = self.clock()
        self.rounds += 1
        lmtp = (s.rcpt_protocol or p.protocol) == "lmtp"
        jobs: dict[str, Awaitable[Any]] = {
            "system": probes.tcp(p.host, p.port, s.timeout)
            if s.probe == "tcp"
            else probes.smtp(p.host, p.port, self.hostname, s.timeout, lmtp=p.protocol == "lmtp"),
        }
        if self.addresses:
            host, port = s.rcpt_host or p.host, s.rcpt_port or p.port
            jobs["rcpt"] = probes.rcpt(host, port, self.hostname, list(self.addresses), s.timeout, lmtp=lmtp)
        if self._e2e is not None:
            jobs["end-to-end"] = probes.end_to_end(self._e2e, s.timeout + s.end_to_end_deadline)
        results = dict(zip(jobs, await asyncio.gather(*jobs.values()), strict=True))
        system: probes.Result = results["system"]
        self.latency["system"] = system.latency
        seen, detail = system.seen, system.detail
        e2e: probes.Result | None = results.get("end-to-end")
        if e2e is not None:
            self.latency["end-to-end"] = e2e.latency
            if seen is Observation.OK:  # the MTA answers; whether mail gets through is the last word
                seen, detail = e2e.seen, e2e.detail
        await self._update(SYSTEM, seen, now, detail)
        for address, result in results.get("rcpt", {}).items():
            self.latency["rcpt"] = result.latency
            await self._update(address, result.seen, now, result.detail)
        verdict = self.verdict()
        log.debug("%s: %s (%s)", Event.MONITOR_VERDICT, verdict.why, ", ".join(verdict.down))
        await self.on_verdict(verdict)
        return verdict

    def verdict(self) -> Verdict:
        owners = {a: self.owner_of(a) or a for a in self.addresses}
        statuses = {a: h.status for a, h in self.addresses.items()}
        return decide(self.system.status, statuses, self.scope, fraction=self.fraction, owners=owners)

    async def _update(self, target: str, seen: Observation, now: float, detail: str) -> None:
        before = self.system if target == SYSTEM else self.addresses[target]
        after = observe(before, seen, now, self.limits, detail)
        if target == SYSTEM:
            self.system = after
        else:
            self.addresses[target] = after
        for observer in self.observers:
            observer(target, after, self.latency.get("system", 0.0))
        if after.status is not before.status:
            log.warning("%s: %s is %s (%s)", Event.MONITOR_HEALTH, target, after.status, detail)
            if self.history is not None:
                try:
                    await self.history.record_health(target, after.status.value, detail)
                except Exception:
                    log.exception("cannot record the health change of %s", target)
        elif seen is Observation.INCONCLUSIVE and target != SYSTEM and "5.1." in detail:
            log.warning("watched address %s is unknown to the primary (%s): check monitor.watch", target, detail)

    def snapshot(self) -> dict[str, Any]:
        def one(h: Health) -> dict[str, Any]:
            return {
                "status": h.status.value,
                "failures": h.failures,
                "successes": h.successes,
                "changed_at": h.changed_at,
                "checked_at": h.checked_at,
                "detail": h.detail,
            }

        return {
            "primary": one(self.system),
            "addresses": {a: one(h) for a, h in self.addresses.items()},
            "rounds": self.rounds,
            "latency": dict(self.latency),
        }
