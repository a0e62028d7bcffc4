"""The failover state machine, the health model and the scope verdicts: pure, table-driven."""

from __future__ import annotations

import pytest

from mailstandby.core.model import Mode
from mailstandby.directory.base import NoticeKind
from mailstandby.failover.machine import (
    Announce,
    Command,
    Declared,
    Observed,
    Reroute,
    StartSync,
    State,
    StopSync,
    SyncFinished,
    step,
)
from mailstandby.monitor.health import Health, Observation, Status, Thresholds, observe
from mailstandby.monitor.verdict import Scope, Verdict, Why, decide

DOWN = Verdict(True, None, Why.PRIMARY_DOWN)
UP = Verdict(False, None, Why.HEALTHY)
UNKNOWN = Verdict(None, None, Why.UNKNOWN)


def run(events: list, state: State | None = None) -> State:
    s = state or State()
    for n, e in enumerate(events):
        got = step(s, e, float(n))
        s = got.state if got else s
    return s


def test_outage_then_recovery_then_sync_is_the_whole_cycle() -> None:
    s0 = State()
    down = step(s0, Observed(DOWN), 10.0)
    assert down is not None and down.state.mode is Mode.FAILED_OVER and down.state.seq == 1
    assert Reroute() in down.actions
    assert Announce(NoticeKind.FAILOVER, None, "failover-1") in down.actions
    up = step(down.state, Observed(UP), 20.0)
    assert up is not None and up.state.mode is Mode.FAILING_BACK and StartSync(None) in up.actions
    done = step(up.state, SyncFinished(), 30.0)
    assert done is not None and done.state.mode is Mode.NORMAL and done.state.seq == 1
    assert done.actions == [Announce(NoticeKind.FAILBACK, None, "failback-1")]  # mail is back: told once


@pytest.mark.parametrize("mode", list(Mode))
def test_unknown_health_never_moves_anything(mode: Mode) -> None:
    assert step(State(mode), Observed(UNKNOWN), 1.0) is None


def test_repeated_outage_verdicts_do_not_announce_again() -> None:
    s = run([Observed(DOWN)])
    assert step(s, Observed(DOWN), 5.0) is None


def test_primary_failing_again_during_failback_stops_sync_and_is_a_new_outage() -> None:
    s = run([Observed(DOWN), Observed(UP)])
    assert s.mode is Mode.FAILING_BACK
    again = step(s, Observed(DOWN), 9.0)
    assert again is not None and again.state.mode is Mode.FAILED_OVER
    assert StopSync() in again.actions and again.state.seq == 2
    assert Announce(NoticeKind.FAILOVER, None, "failover-2") in again.actions


def test_per_address_scope_widens_and_announces_only_to_the_new_users() -> None:
    first = Verdict(True, frozenset({"a@corp.test"}), Why.ADDRESSES_DOWN, ("a@corp.test",))
    second = Verdict(True, frozenset({"a@corp.test", "b@corp.test"}), Why.ADDRESSES_DOWN)
    s = run([Observed(first)])
    assert s.users == {"a@corp.test"}
    wider = step(s, Observed(second), 3.0)
    assert wider is not None and wider.state.users == {"a@corp.test", "b@corp.test"}
    assert Announce(NoticeKind.FAILOVER, frozenset({"b@corp.test"}), "failover-1") in wider.actions
    assert wider.state.seq == 1


def test_an_administrator_failover_holds_against_a_healthy_monitor() -> None:
    s = run([Observed(UP), Declared(Command.FAILOVER, "admin", "maintenance")])
    assert s.mode is Mode.FAILED_OVER and s.held
    assert step(s, Observed(UP), 5.0) is None  # the monitor disagrees: ignored
    agreed = step(s, Observed(DOWN), 6.0)
    assert agreed is not None and agreed.state.mode is Mode.FAILED_OVER and not agreed.state.held
    back = step(agreed.state, Observed(UP), 7.0)
    assert back is not None and back.state.mode is Mode.FAILING_BACK  # the monitor is in charge again


def test_an_administrator_failback_holds_against_a_failing_monitor() -> None:
    s = run([Observed(DOWN), Declared(Command.FAILBACK, "admin", "primary fixed")])
    assert s.mode is Mode.FAILING_BACK and s.held
    assert step(s, Observed(DOWN), 5.0) is None


def test_failback_and_end_failback_only_from_their_states() -> None:
    assert step(State(), Declared(Command.FAILBACK, "a", "r"), 1.0) is None
    assert step(State(), Declared(Command.END_FAILBACK, "a", "r"), 1.0) is None
    assert step(State(), SyncFinished(), 1.0) is None
    s = run([Observed(DOWN), Observed(UP)])
    ended = step(s, Declared(Command.END_FAILBACK, "admin", "good enough"), 3.0)
    assert ended is not None and ended.state.mode is Mode.NORMAL and StopSync() in ended.actions
    assert "admin" in ended.reason


def test_state_covers_users_in_scope() -> None:
    assert State(Mode.FAILED_OVER).covers("x@corp.test")
    assert not State(Mode.FAILED_OVER, frozenset({"a@corp.test"})).covers("x@corp.test")


# -- health -------------------------------------------------------------------------
LIMITS = Thresholds(down_after=2, up_after=3, min_dwell=30.0, flap_penalty=0.0)


def feed(seen: list[tuple[float, Observation]], h: Health | None = None) -> Health:
    h = h or Health()
    for t, o in seen:
        h = observe(h, o, t, LIMITS)
    return h


def test_first_success_is_up_at_once_and_failures_need_the_threshold() -> None:
    assert feed([(0, Observation.OK)]).status is Status.UP
    assert feed([(0, Observation.OK), (10, Observation.FAILED)]).status is Status.UP
    h = feed([(0, Observation.OK), (40, Observation.FAILED), (50, Observation.FAILED)])
    assert h.status is Status.DOWN and h.changed_at == 50


def test_recovery_needs_up_after_successes_in_a_row_lasting_min_dwell() -> None:
    h = feed([(0, Observation.FAILED), (10, Observation.FAILED)])
    assert h.status is Status.DOWN
    h = feed([(50, Observation.OK), (60, Observation.OK), (70, Observation.FAILED), (80, Observation.OK)], h)
    assert h.status is Status.DOWN
    h = feed([(90, Observation.OK), (100, Observation.OK)], h)
    assert h.status is Status.DOWN  # three in a row, but for 20 s only
    h = feed([(110, Observation.OK)], h)
    assert h.status is Status.UP and h.changed_at == 110


def test_a_flapping_target_changes_at_most_once_per_dwell() -> None:
    h, changes, last = Health(), 0, Status.UNKNOWN
    for n in range(120):  # up two seconds, down two seconds, for four minutes, probed every second
        h = observe(h, Observation.OK if (n // 2) % 2 == 0 else Observation.FAILED, float(n), LIMITS)
        if h.status is not last:
            changes, last = changes + 1, h.status
    assert changes <= 1 + 120 // 30


def test_inconclusive_observations_change_nothing() -> None:
    h = feed([(0, Observation.FAILED)])
    assert feed([(1, Observation.INCONCLUSIVE), (2, Observation.FAILED)], h).status is Status.DOWN


# -- verdicts -------------------------------------------------------------------------
WATCHED = {"a@x": Status.UP, "b@x": Status.DOWN, "c@x": Status.UP, "d@x": Status.UP}


@pytest.mark.parametrize(
    ("scope", "addresses", "outage", "users", "why"),
    [
        (Scope.ALL_ON_ANY, WATCHED, True, None, Why.ADDRESS_DOWN),
        (Scope.ALL_ON_FRACTION, WATCHED, False, None, Why.FRACTION_BELOW),
        (Scope.ALL_ON_FRACTION, {**WATCHED, "a@x": Status.DOWN, "c@x": Status.DOWN}, True, None, Why.FRACTION_DOWN),
        (Scope.PER_ADDRESS, WATCHED, True, frozenset({"b@x"}), Why.ADDRESSES_DOWN),
        (Scope.PER_ADDRESS, {"a@x": Status.UP}, False, None, Why.HEALTHY),
    ],
)
def test_scope_policies(scope: Scope, addresses: dict, outage: bool, users: frozenset | None, why: Why) -> None:
    v = decide(Status.UP, addresses, scope, fraction=0.5)
    assert (v.outage, v.users, v.why) == (outage, users, why)


def test_the_primary_down_means_everyone_whatever_the_scope() -> None:
    for scope in Scope:
        assert decide(Status.DOWN, WATCHED, scope) == Verdict(True, None, Why.PRIMARY_DOWN, ("b@x",))
    assert decide(Status.UNKNOWN, {}, Scope.ALL_ON_ANY).outage is None


def test_per_address_intercepts_the_owner_of_an_alias() -> None:
    v = decide(Status.UP, {"sales@x": Status.DOWN}, Scope.PER_ADDRESS, owners={"sales@x": "bob@x"})
    assert v.users == {"bob@x"}
