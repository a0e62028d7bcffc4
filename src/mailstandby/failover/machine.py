"""The failover state machine: (state, event) -> step. Pure, no I/O.

    NORMAL --outage--> FAILED_OVER --healthy--> FAILING_BACK --sync finished--> NORMAL
                            ^                        |
                            +-------outage-----------+

Events come from the monitor (`Observed`, a verdict), from an administrator
(`Declared`) and from the failback sync (`SyncFinished`). A step lists the
actions the coordinator must carry out (reroute, announce, sync, DNS); the
coordinator persists the new state with the transition before acting.

Administrator override: a declared transition sets `held`. While held, a
verdict that disagrees with the state is ignored; the first verdict that
agrees clears `held` and the monitor is in charge again. So an administrator
can fail over for maintenance while the primary looks healthy, or fail back
while the monitor still sees trouble, and the monitor does not undo it.

Per-user scope: while FAILED_OVER for a set of users, a verdict naming a
different set moves the state to exactly that set: users added fail over
(and are told), users no longer named fail back on their own (routing
returns them to the primary and their outage mail is synchronized; the
coordinator tells each as their sync completes). An outage for everyone
(`users` None) is only ended as a whole.

`seq` numbers outages; it is the occurrence id of the notifications, so a
user is told once per outage however often the events repeat.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from mailstandby.core.model import Mode
from mailstandby.directory.base import NoticeKind
from mailstandby.monitor.verdict import Verdict


@dataclass(frozen=True, slots=True)
class State:
    mode: Mode = Mode.NORMAL
    users: frozenset[str] | None = None  # who is (in NORMAL: was last) failed over; None: everyone
    seq: int = 0  # the current (or last) outage's number
    since: float = 0.0  # when the mode last changed
    held: bool = False  # an administrator's transition the monitor has not yet agreed with

    def covers(self, user: str) -> bool:
        return self.users is None or user in self.users


class Command(StrEnum):
    FAILOVER = "failover"
    FAILBACK = "failback"
    END_FAILBACK = "end-failback"  # finish FAILING_BACK now; what is not synced is reported


# -- events --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Observed:
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class Declared:
    command: Command
    actor: str
    reason: str
    users: frozenset[str] | None = None  # FAILOVER only: None means everyone


@dataclass(frozen=True, slots=True)
class SyncFinished:
    remaining: int = 0  # messages that could not be synchronized (reported)


Event = Observed | Declared | SyncFinished


# -- actions -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Reroute:
    """Routing follows the new state; mail waiting for the primary is retried now."""


@dataclass(frozen=True, slots=True)
class Announce:
    kind: NoticeKind
    users: frozenset[str] | None  # None: everyone in scope
    occurrence: str


@dataclass(frozen=True, slots=True)
class StartSync:
    users: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class StopSync:
    pass


@dataclass(frozen=True, slots=True)
class SwitchDns:
    pass


@dataclass(frozen=True, slots=True)
class RestoreDns:
    pass


Action = Reroute | Announce | StartSync | StopSync | SwitchDns | RestoreDns


@dataclass(frozen=True, slots=True)
class Step:
    state: State
    actions: list[Action] = field(default_factory=list)
    reason: str = ""


def _merge(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    return None if a is None or b is None else a | b


def _fail_over(s: State, users: frozenset[str] | None, now: float, reason: str, held: bool) -> Step:
    seq = s.seq + 1
    state = State(Mode.FAILED_OVER, users, seq, now, held)
    actions: list[Action] = [Reroute(), StopSync()] if s.mode is Mode.FAILING_BACK else [Reroute()]
    actions += [SwitchDns(), Announce(NoticeKind.FAILOVER, users, f"failover-{seq}")]
    return Step(state, actions, reason)


def _widen(s: State, users: frozenset[str] | None, reason: str, held: bool) -> Step | None:
    """More users fail over during an outage (per-address scope, or an administrator adding some)."""
    merged = _merge(s.users, users)
    if merged == s.users:
        return None
    added = None if merged is None else merged - (s.users or frozenset())
    state = replace(s, users=merged, held=s.held or held)
    return Step(state, [Reroute(), Announce(NoticeKind.FAILOVER, added, f"failover-{s.seq}")], reason)


def _rescope(s: State, users: frozenset[str], reason: str) -> Step | None:
    """The monitor names exactly who is failed over: some fail over, others fail back on their own."""
    if s.users is None or users == s.users:
        return None
    added, released = users - s.users, s.users - users
    actions: list[Action] = [Reroute()]
    if added:
        actions.append(Announce(NoticeKind.FAILOVER, added, f"failover-{s.seq}"))
    if released:
        actions.append(StartSync(released))
    return Step(replace(s, users=users), actions, reason)


def _back(s: State) -> Announce:
    """Mail is back on the primary: the users of this outage are told so, once."""
    return Announce(NoticeKind.FAILBACK, s.users, f"failback-{s.seq}")


def _fail_back(s: State, now: float, reason: str, held: bool) -> Step:
    state = State(Mode.FAILING_BACK, s.users, s.seq, now, held)
    return Step(state, [Reroute(), RestoreDns(), StartSync(s.users)], reason)


def step(s: State, event: Event, now: float) -> Step | None:
    """The transition `event` causes in state `s`, or None when it causes none."""
    match event:
        case Observed(verdict):
            return _observed(s, verdict, now)
        case Declared(Command.FAILOVER, actor, reason, users):
            why = f"declared by {actor}: {reason}"
            if s.mode is Mode.FAILED_OVER:
                return _widen(s, users, why, True)
            return _fail_over(s, users, now, why, True)
        case Declared(Command.FAILBACK, actor, reason):
            if s.mode is not Mode.FAILED_OVER:
                return None
            return _fail_back(s, now, f"declared by {actor}: {reason}", True)
        case Declared(Command.END_FAILBACK, actor, reason):
            if s.mode is not Mode.FAILING_BACK:
                return None
            state = State(Mode.NORMAL, s.users, s.seq, now, False)
            return Step(state, [StopSync(), _back(s)], f"failback ended by {actor}: {reason}")
        case SyncFinished(remaining):
            if s.mode is not Mode.FAILING_BACK:
                return None
            why = "sync finished" + (f"; {remaining} messages could not be synchronized" if remaining else "")
            return Step(State(Mode.NORMAL, s.users, s.seq, now, s.held), [_back(s)], why)
    return None


def _observed(s: State, v: Verdict, now: float) -> Step | None:
    if v.outage is None:
        return None
    why = v.why.value + (f": {', '.join(v.down)}" if v.down else "")
    in_outage = s.mode is Mode.FAILED_OVER
    agrees = v.outage == in_outage if s.mode is not Mode.FAILING_BACK else not v.outage
    if s.held:
        if not agrees:
            return None
        if s.mode is Mode.FAILED_OVER and v.outage:
            # The monitor now agrees; it takes over, widening the scope if it sees more.
            widened = _widen(replace(s, held=False), v.users, why, False)
            return widened or Step(replace(s, held=False), [], f"monitor agrees: {why}")
        return Step(replace(s, held=False), [], f"monitor agrees: {why}")
    if v.outage:
        if s.mode is Mode.FAILED_OVER:
            if v.users is not None and s.users is not None:
                return _rescope(s, v.users, why)
            return _widen(s, v.users, why, False)
        return _fail_over(s, v.users, now, why, False)
    if s.mode is Mode.FAILED_OVER:
        return _fail_back(s, now, why, False)
    return None
