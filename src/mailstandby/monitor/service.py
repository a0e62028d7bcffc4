"""The monitor: probe rounds on a timer, every directory address in rotation, health with
hysteresis and flap damping, a verdict whenever something changes.

Each round runs the system probe (TCP or SMTP), the RCPT probes of the
`monitor.watch` addresses and, when configured, the end-to-end probe. The
next round comes `interval` seconds after a good one and `fast_interval`
seconds after one that failed while the primary was not yet DOWN (HAProxy's
`inter` and `fastinter`): a dead primary is confirmed within a second or two of
the first failed round, and a single failure is cleared as fast.

The rotation (monitor/rotation.py) asks every directory address in turn at a
bounded rate and re-checks failing ones quickly; each answer updates that
address's health, and a change of status yields a verdict at once.

Delivery failures reported by the queue, and rotation sessions that cannot
talk to the primary at all, wake the monitor for an early round (at most one
every `fast_interval` seconds): trouble is confirmed by a probe before it
counts, so a single refused connection does not fail anyone over, but a real
outage is seen sooner than the next scheduled round.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from mailstandby.config import FailoverSettings, MonitorSettings, PrimarySettings
from mailstandby.core.events import Event
from mailstandby.core.signals import Trouble
from mailstandby.monitor import probes
from mailstandby.monitor.health import Health, Observation, Status, Thresholds, hold, observe, penalty
from mailstandby.monitor.rotation import Plan, Rotation
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
        directory: Callable[[], Sequence[str]] | None = None,
        trouble: Trouble | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`trouble`: evidence reported by the queue (`evidence()` for each, while running)."""
        self.settings = settings
        self.trouble = trouble
        self.primary = primary
        self.scope = Scope(failover.scope)
        self.fraction = failover.fraction
        self.hostname = primary.helo_name or hostname
        self.owner_of = owner_of
        self.on_verdict = on_verdict
        self.history = history
        self.clock = clock
        s = settings
        self.limits = Thresholds(
            s.down_after, s.up_after, s.min_dwell, s.hard_weight, s.soft_weight, s.flap_penalty, s.flap_half_life
        )
        self.system = Health()
        self.watched = frozenset(s.watch)
        self.addresses: dict[str, Health] = {a: Health() for a in s.watch}
        self.rounds = 0
        self.last_round = 0.0
        self.latency: dict[str, float] = {}  # probe name -> seconds, last round
        self.observers: list[Callable[[str, Health, float], None]] = []  # metrics
        self.pacer = probes.Pacer(s.rotation_rate)
        self._unknown: set[str] = set()  # rotation addresses the primary does not know (logged once)
        self._wake = asyncio.Event()
        self._e2e: probes.EndToEnd | None = self._end_to_end()
        self.rotation: Rotation | None = None
        if s.rotation and directory is not None:
            self.rotation = Rotation(
                self._plan(),
                self.pacer,
                addresses=lambda: self._rotating(directory()),
                health=lambda: self.addresses,
                report=self.addresses_seen,
                trouble=self._trouble,
                clock=clock,
            )

    def _plan(self) -> Plan:
        s, p = self.settings, self.primary
        return Plan(
            host=s.rcpt_host or p.host,
            port=s.rcpt_port or p.port,
            helo=self.hostname,
            lmtp=(s.rcpt_protocol or p.protocol) == "lmtp",
            timeout=s.timeout,
            period=s.rotation_period,
            batch=s.rotation_batch,
            session=s.rotation_session,
            fast_interval=s.fast_interval,
            down_interval=s.interval,
        )

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

    def _rotating(self, directory: Sequence[str]) -> list[str]:
        """This cycle's addresses; the health of addresses gone from the directory is forgotten."""
        current = [a for a in dict.fromkeys(a.lower() for a in directory) if a not in self.watched]
        keep = self.watched | set(current)
        for gone in [a for a in self.addresses if a not in keep]:
            del self.addresses[gone]
        return current

    # -- the loop ----------------------------------------------------------------------------
    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._rounds(), name="monitor-rounds")
            if self.trouble is not None:
                tasks.create_task(self._listen(self.trouble), name="monitor-evidence")
            if self.rotation is not None:
                tasks.create_task(self.rotation.run(), name="monitor-addresses")

    async def _listen(self, trouble: Trouble) -> None:
        while True:
            self.evidence(False, await trouble.wait())

    async def _rounds(self) -> None:
        while True:
            try:
                await self.round()
            except Exception:
                log.exception("monitor round failed; next round as scheduled")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.next_round())
                early = min(self.settings.interval / 2, self.settings.fast_interval)
                await asyncio.sleep(max(0.0, self.last_round + early - self.clock()))
            except TimeoutError:
                pass

    def next_round(self) -> float:
        """Seconds to the next round: `fast_interval` while a failure waits to be confirmed or cleared."""
        s = self.settings
        if self.system.failures and self.system.status is not Status.DOWN:
            return min(s.fast_interval, s.interval)
        return s.interval

    def evidence(self, ok: bool, detail: str) -> None:
        """A delivery result from the queue (the primary's trouble, or a mailbox it calls
        unavailable): trouble wakes the monitor for an early round, whose probes decide."""
        if not ok and self.settings.queue_evidence:
            self._trouble(f"queue: {detail}")

    def _trouble(self, detail: str) -> None:
        if self.system.status is not Status.DOWN and not self._wake.is_set():
            log.info("%s; probing now", detail)
            self._wake.set()

    async def round(self) -> Verdict:
        """One probe round; returns (and hands on) the verdict."""
        s, p = self.settings, self.primary
        self.last_round = now = self.clock()
        self.rounds += 1
        # The system probe first and alone: its connection is not raced by the others' (a primary that
        # turns away every other connection must not see the system probe's retry take the refused turn).
        if s.probe == "tcp":
            system = await probes.tcp(p.host, p.port, s.timeout)
        else:
            system = await probes.smtp(p.host, p.port, self.hostname, s.timeout, lmtp=p.protocol == "lmtp")
        jobs: dict[str, Awaitable[Any]] = {}
        if self.watched:
            plan = self._plan()
            jobs["rcpt"] = probes.rcpt(
                plan.host, plan.port, plan.helo, sorted(self.watched), s.timeout, lmtp=plan.lmtp, pacer=self.pacer
            )
        if self._e2e is not None:
            jobs["end-to-end"] = probes.end_to_end(self._e2e, s.timeout + s.end_to_end_deadline)
        results = dict(zip(jobs, await asyncio.gather(*jobs.values()), strict=True))
        self.latency["system"] = system.latency
        seen, detail = system.seen, system.detail
        e2e: probes.Result | None = results.get("end-to-end")
        if e2e is not None:
            self.latency["end-to-end"] = e2e.latency
            if seen is Observation.OK:  # the MTA answers; whether mail gets through is the last word
                seen, detail = e2e.seen, e2e.detail
        await self._update(SYSTEM, seen, now, detail)
        session: probes.Session | None = results.get("rcpt")
        for address, result in (session.results if session else {}).items():
            self.latency["rcpt"] = result.latency
            await self._update(address, result.seen, now, result.detail)
        verdict = self.verdict()
        log.debug("%s: %s (%s)", Event.MONITOR_VERDICT, verdict.why, ", ".join(verdict.down))
        await self.on_verdict(verdict)
        return verdict

    async def addresses_seen(self, results: Mapping[str, probes.Result]) -> None:
        """Answers from the rotation; a verdict follows when an address changed status."""
        now, changed = self.clock(), False
        for address, result in results.items():
            self.latency["rcpt"] = result.latency
            changed |= await self._update(address, result.seen, now, result.detail)
        if changed and self.system.status is not Status.UNKNOWN:
            verdict = self.verdict()
            log.info("%s: %s (%s)", Event.MONITOR_VERDICT, verdict.why, ", ".join(verdict.down))
            await self.on_verdict(verdict)

    def verdict(self) -> Verdict:
        statuses = {a: h.status for a, h in self.addresses.items()}
        owners = {a: self.owner_of(a) or a for a, st in statuses.items() if st is Status.DOWN}
        return decide(
            self.system.status, statuses, self.scope, fraction=self.fraction, owners=owners, watched=self.watched
        )

    async def _update(self, target: str, seen: Observation, now: float, detail: str) -> bool:
        """Fold one observation into a target's health; True when its status changed."""
        before = self.system if target == SYSTEM else self.addresses.get(target, Health())
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
            return True
        if seen is Observation.INCONCLUSIVE and target != SYSTEM and "5.1." in detail:
            if target in self.watched:
                log.warning("watched address %s is unknown to the primary (%s): check monitor.watch", target, detail)
            elif target not in self._unknown:
                self._unknown.add(target)
                log.info("directory address %s is unknown to the primary (%s)", target, detail)
        return False

    # -- status ----------------------------------------------------------------------------
    def _one(self, h: Health, now: float) -> dict[str, Any]:
        return {
            "status": h.status.value,
            "failures": h.failures,
            "successes": h.successes,
            "changed_at": h.changed_at,
            "checked_at": h.checked_at,
            "detail": h.detail,
            "outages": h.outages,
            "flap_penalty": round(penalty(h, now, self.limits), 3),
            "hold": round(hold(h, now, self.limits), 3),
        }

    def snapshot(self) -> dict[str, Any]:
        """The watched addresses and every address down or failing are listed; all are counted."""
        now = self.clock()
        counts = {st.value: 0 for st in Status}
        for h in self.addresses.values():
            counts[h.status.value] += 1
        shown = {a: h for a, h in self.addresses.items() if a in self.watched or h.status is Status.DOWN or h.failures}
        rotation = self.rotation
        return {
            "primary": self._one(self.system, now),
            "addresses": {a: self._one(h, now) for a, h in sorted(shown.items())},
            "counts": counts,
            "rounds": self.rounds,
            "latency": dict(self.latency),
            "rcpts": self.pacer.sent,
            "rotation": None
            if rotation is None
            else {"addresses": rotation.size, "cycles": rotation.cycles, "last_cycle": round(rotation.last_cycle, 3)},
        }
