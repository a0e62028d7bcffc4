"""The failover coordinator: turns the machine's steps into effects.

One transition at a time (a lock). For each step: persist the new state with
the transition and an audit entry, point the router at it, then carry out the
actions through its `Effects` (queue reroute, notices, the failback sync, DNS),
given whole by the composition root when the coordinator is built. An effect
that fails is logged; it never undoes a transition that is already recorded:
routing (the part that decides where mail goes) has already followed it.

At start-up the recorded state is applied again. Several nodes may share the
store; only the leader (core.leadership) decides and acts, and each state it
records carries its fencing term (a write of a lost term is refused: the node
steps down). A follower re-reads the recorded state every `follow_interval`
and routes as the leader decided. Each time a node takes the lead it reads the
state afresh and re-runs its level-triggered actions: notifications are
idempotent per outage, and an interrupted failback sync resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from mailstandby.core.events import Event
from mailstandby.core.leadership import Lead, Leadership, NotLeading
from mailstandby.core.model import Mode
from mailstandby.directory.base import NoticeKind
from mailstandby.failover.machine import (
    Action,
    Announce,
    Command,
    Declared,
    Observed,
    Reroute,
    RestoreDns,
    StartSync,
    State,
    Step,
    StopSync,
    SwitchDns,
    SyncFinished,
    step,
)
from mailstandby.monitor.verdict import Verdict

log = logging.getLogger(__name__)

SYNC_RETRY = 30.0  # seconds before a failed failback sync is tried again
RESUME_NOTICES = 3600.0  # after a restart, failback notices are completed only for an outage this recent


class FailoverStore(Protocol):
    async def load(self) -> State: ...

    async def save(self, before: State, after: State, *, term: int, actor: str, reason: str, peer: str = "") -> None:
        """Record `after` if `term` is still the current term, else raise NotLeading."""
        ...

    async def transitions(self, limit: int = 100) -> list[dict[str, Any]]: ...


class RoutingTarget(Protocol):
    def apply(self, mode: Mode, scope: frozenset[str] | None) -> None: ...


Announcer = Callable[[NoticeKind, frozenset[str] | None, str], Awaitable[None]]
UserDone = Callable[[str], Awaitable[None]]  # a user's outage mail is all in the primary now
# (users or None for everyone, the term it runs in, whom to tell as each user is done) -> messages left unsynchronized
SyncRunner = Callable[[frozenset[str] | None, Lead, UserDone], Awaitable[int]]


class DnsSwitch(Protocol):
    async def switch(self) -> object: ...
    async def restore(self) -> object: ...


@dataclass(frozen=True, slots=True)
class Effects:
    """What the coordinator's decisions do besides routing.

    `sync` None: no automatic failback sync is configured, so a failback ends at once and the
    outage mail waits for `mailstandby sync run`; `dns` None: `[dns]` switching is off."""

    reroute: Callable[[], None]  # every queued recipient due now, to go where routing says
    announce: Announcer
    sync: SyncRunner | None
    dns: DnsSwitch | None


class Coordinator:
    def __init__(
        self,
        store: FailoverStore,
        router: RoutingTarget,
        leadership: Leadership,
        effects: Effects,
        *,
        automatic: bool = True,
        follow_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.router = router
        self.leadership = leadership
        self.follow_interval = follow_interval
        self._led = 0  # the term whose state this node read after taking the lead (0: following)
        self._run_task: asyncio.Task[None] | None = None
        self._resume_task: asyncio.Task[None] | None = None
        self.automatic = automatic
        self.clock = clock
        self.state = State()
        self.last_verdict: Verdict | None = None
        self._lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self.effects = effects
        self.transitions = 0  # since start, this node's and those it followed (the metric)
        self._sync_task: asyncio.Task[None] | None = None
        # Users failed back on their own during this outage (per-user scope): synchronized, and told
        # their mail is back, while the others stay failed over; the final failback syncs them too.
        self._released: frozenset[str] = frozenset()

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Route as recorded; lead now if this node leads (actions resumed before returning), and
        from then on follow the recorded state whenever another node leads."""
        self.state = await self.store.load()
        self.router.apply(self.state.mode, self.state.users)
        log.info("failover state: %s (outage %d)", self.state.mode, self.state.seq)
        term = self.leadership.term
        if term:
            await self._take_lead(term)
        self._run_task = asyncio.create_task(self._run(term), name="failover-leadership")

    async def _run(self, term: int) -> None:
        while True:
            if not term:
                term = await self._follow()
                self._resume_task = asyncio.create_task(self._take_lead(term), name="failover-take-lead")
            await self.leadership.wait_lost(term)
            self._led = 0
            await _cancel(self._resume_task)
            await self._stop_sync()
            log.warning("failover: %s no longer leads (term %d): following the recorded state", self._node, term)
            term = 0

    async def _follow(self) -> int:
        """Route as the leader recorded until this node leads; returns the term it leads in."""
        while not (term := self.leadership.term):
            await self._reload()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.follow_interval):
                    await self.leadership.wait_leading()
        return term

    async def _reload(self) -> None:
        try:
            state = await self.store.load()
        except Exception:
            log.exception("failover: cannot read the recorded state; trying again")
            return
        async with self._lock:
            if state == self.state or self._led:
                return
            before, self.state = self.state, state
            self.router.apply(state.mode, state.users)
            log.warning("failover: following the leader: %s -> %s (outage %d)", before.mode, state.mode, state.seq)
            self.effects.reroute()
            self.transitions += 1
        async with self._changed:
            self._changed.notify_all()

    async def _take_lead(self, term: int) -> None:
        """Read the state the previous leader left (after the term changed: nothing of theirs follows)
        and carry out its level-triggered actions."""
        async with self._lock:
            before, self.state = self.state, await self.store.load()
            self.router.apply(self.state.mode, self.state.users)
            self._led = term
            if before != self.state:
                self.effects.reroute()
        log.warning("failover: %s leads (term %d): %s (outage %d)", self._node, term, self.state.mode, self.state.seq)
        async with self._changed:
            self._changed.notify_all()
        if self.state.mode is Mode.FAILED_OVER:
            await self._act(Announce(NoticeKind.FAILOVER, self.state.users, f"failover-{self.state.seq}"), term)
            released = await self._released_before_restart()
            if released:  # their failback sync (and notice) may have been cut short: resumed
                await self._act(StartSync(released), term)
        elif self.state.mode is Mode.FAILING_BACK:
            await self._act(StartSync(self.state.users), term)
        elif self.state.seq and self.clock() - self.state.since < RESUME_NOTICES:
            # A "mail is back" notice interrupted by a crash is still sent (once per user).
            await self._act(Announce(NoticeKind.FAILBACK, self.state.users, f"failback-{self.state.seq}"), term)

    @property
    def _node(self) -> str:
        return self.leadership.node

    async def _released_before_restart(self) -> frozenset[str]:
        """Users of this per-user outage who failed back on their own, from the recorded transitions."""
        s = self.state
        if s.users is None:
            return frozenset()
        seen: set[str] = set()
        for t in await self.store.transitions(1000):
            if t["seq"] == s.seq and t["users"] is not None:
                seen.update(t["users"])
        return frozenset(seen) - s.users

    async def stop(self) -> None:
        await _cancel(self._run_task)
        await _cancel(self._resume_task)
        await self._stop_sync()

    # -- events ------------------------------------------------------------------------------
    async def observe(self, verdict: Verdict) -> Step | None:
        """The monitor's verdict; acted on in automatic control, only reported in manual."""
        self.last_verdict = verdict
        if not self.automatic:
            if verdict.outage is not None and verdict.outage != (self.state.mode is Mode.FAILED_OVER):
                log.warning(
                    "%s: monitor says %s; manual control: waiting for an administrator",
                    Event.FAILOVER_IGNORED,
                    verdict.why,
                )
            return None
        return await self._handle(Observed(verdict), actor="monitor")

    async def declare(
        self, command: Command, actor: str, reason: str, users: frozenset[str] | None = None, *, peer: str = ""
    ) -> Step | None:
        """An administrator's transition; None when it does not apply in the current state."""
        return await self._handle(Declared(command, actor, reason, users), actor=actor, peer=peer)

    async def sync_finished(self, remaining: int) -> Step | None:
        return await self._handle(SyncFinished(remaining), actor="sync")

    async def wait_for(self, mode: Mode) -> State:
        async with self._changed:
            await self._changed.wait_for(lambda: self.state.mode is mode)
            return self.state

    # -- the one place a transition happens ------------------------------------------------
    async def _handle(self, event: Any, *, actor: str, peer: str = "") -> Step | None:
        async with self._lock:
            term = self.leadership.term
            if not term or term != self._led:
                log.debug("failover: %s does not lead: %s not acted on", self._node, type(event).__name__)
                return None
            before = self.state
            done = step(before, event, self.clock())
            if done is None:
                return None
            try:
                await self.store.save(before, done.state, term=term, actor=actor, reason=done.reason, peer=peer)
            except NotLeading as e:
                log.warning("failover: %s: %s -> %s not recorded: %s", self._node, before.mode, done.state.mode, e)
                self.leadership.step_down(term)
                return None
            if done.state.seq != before.seq:
                self._released = frozenset()  # a new outage: nobody has failed back from it yet
            self.state = done.state
            self.router.apply(done.state.mode, done.state.users)
            scope = "everyone" if done.state.users is None else f"{len(done.state.users)} users"
            log.warning(
                "%s: %s -> %s (outage %d, %s) by %s in term %d: %s",
                Event.FAILOVER_TRANSITION,
                before.mode,
                done.state.mode,
                done.state.seq,
                scope,
                actor,
                term,
                done.reason,
            )
            self.transitions += 1
            for action in done.actions:
                await self._act(action, term)
        async with self._changed:
            self._changed.notify_all()
        return done

    async def _act(self, action: Action, term: int) -> None:
        try:
            if self.leadership.term != term:
                raise NotLeading(f"{self._node} no longer leads in term {term}")
            match action:
                case Reroute():
                    self.effects.reroute()
                case Announce(kind, users, occurrence):
                    await self.effects.announce(kind, users, occurrence)
                case StartSync(users):
                    await self._stop_sync()
                    self._sync_task = asyncio.create_task(self._start_sync(users, term), name="failback-sync")
                case StopSync():
                    await self._stop_sync()
                case SwitchDns():
                    if self.effects.dns is not None:
                        await self.effects.dns.switch()
                case RestoreDns():
                    if self.effects.dns is not None:
                        await self.effects.dns.restore()
        except NotLeading as e:
            log.warning("failover action %s not carried out: %s", type(action).__name__, e)
            self.leadership.step_down(term)
        except Exception:
            log.exception("failover action %s failed; the transition stands", type(action).__name__)

    async def _start_sync(self, users: frozenset[str] | None, term: int) -> None:
        """The failback sync of the whole outage (FAILING_BACK), or of the users who failed back on
        their own while the others stay failed over (each then told their mail is back)."""
        if self.state.mode is Mode.FAILED_OVER:
            self._released = (self._released | (users or frozenset())) - (self.state.users or frozenset())
            released = self._released
            await self._sync_until_done(released, term)
            self._sync_task = None
            await self._act(Announce(NoticeKind.FAILBACK, released, f"failback-{self.state.seq}"), term)
            return
        if users is not None:
            users |= self._released
        remaining = await self._sync_until_done(users, term)
        self._sync_task = None  # finished: the transition below must not cancel this task
        self._released = frozenset()
        await self.sync_finished(remaining)

    async def _sync_until_done(self, users: frozenset[str] | None, term: int) -> int:
        """Run the failback sync until it completes; after a failure, try again a little later
        (the monitor fails over again meanwhile if the primary is really gone). A sync whose term
        is over stops: the next leader resumes it."""
        remaining = 0
        sync = self.effects.sync
        occurrence = f"failback-{self.state.seq}"

        async def mail_is_back(user: str) -> None:  # told at once, once per outage; the rest when it ends
            await self.effects.announce(NoticeKind.FAILBACK, frozenset({user}), occurrence)

        while sync is not None:
            try:
                remaining = await sync(users, Lead(self.leadership, term), mail_is_back)
                break
            except asyncio.CancelledError:
                raise
            except NotLeading as e:
                log.warning("failback sync stopped: %s", e)
                self.leadership.step_down(term)
                await self.leadership.wait_lost(term)  # cancelled with the term
            except Exception:
                log.exception("failback sync failed; trying again in %.0fs", SYNC_RETRY)
                await asyncio.sleep(SYNC_RETRY)
        return remaining

    async def _stop_sync(self) -> None:
        task, self._sync_task = self._sync_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def snapshot(self) -> dict[str, Any]:
        s, v = self.state, self.last_verdict
        return {
            "mode": s.mode.value,
            "users": None if s.users is None else sorted(s.users),
            "outage": s.seq,
            "since": s.since,
            "held": s.held,
            "control": "automatic" if self.automatic else "manual",
            "node": self._node,
            "leader": bool(self._led),
            "term": self._led,
            "verdict": None if v is None else {"outage": v.outage, "why": v.why.value, "down": list(v.down)},
        }


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None and task is not asyncio.current_task() and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
