"""The health model's weights and flap damping, the scope of rotation addresses, the re-check choice. Pure."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mailstandby.config import MonitorSettings
from mailstandby.monitor.health import Health, Observation, Status, Thresholds, hold, observe, penalty
from mailstandby.monitor.rotation import Plan, Rotation
from mailstandby.monitor.verdict import Scope, Why, decide

OK, HARD, SOFT = Observation.OK, Observation.FAILED, Observation.SOFT_FAILED


def defaults() -> Thresholds:
    s = MonitorSettings()
    return Thresholds(
        s.down_after, s.up_after, s.min_dwell, s.hard_weight, s.soft_weight, s.flap_penalty, s.flap_half_life
    )


def timeline(limits: Thresholds, seconds: int, up: Callable[[int], bool], every: int = 1) -> tuple[Health, int]:
    """Observe once every `every` seconds; returns the final health and the number of status changes."""
    h, changes = Health(), 0
    for t in range(0, seconds, every):
        after = observe(h, OK if up(t) else HARD, float(t), limits)
        changes += after.status is not h.status and h.status is not Status.UNKNOWN
        h = after
    return h, changes


def test_hard_and_soft_failures_weigh_as_configured() -> None:
    limits = Thresholds(down_after=2, hard_weight=2, soft_weight=1, min_dwell=0.0)
    up = observe(Health(), OK, 0.0, limits)
    assert observe(up, HARD, 1.0, limits).status is Status.DOWN  # one refused connection is enough
    soft = observe(up, SOFT, 1.0, limits)
    assert soft.status is Status.UP and soft.failures == 1  # one timeout is not
    assert observe(soft, SOFT, 2.0, limits).status is Status.DOWN


def test_alternating_failures_never_reach_down_after() -> None:
    h, changes = timeline(defaults(), 600, lambda t: t % 2 == 0)
    assert h.status is Status.UP and changes == 0


def test_each_flap_adds_to_the_hold_and_the_penalty_decays() -> None:
    limits = Thresholds(down_after=1, up_after=1, min_dwell=10.0, flap_penalty=20.0, flap_half_life=100.0)
    h = observe(observe(Health(), OK, 0.0, limits), HARD, 10.0, limits)
    assert h.status is Status.DOWN and h.outages == 1
    assert hold(h, 10.0, limits) == pytest.approx(30.0)  # min_dwell + one flap
    assert penalty(h, 110.0, limits) == pytest.approx(10.0)  # a half-life later
    h = observe(observe(h, OK, 110.0, limits), OK, 130.0, limits)
    assert h.status is Status.UP  # it answered for 20 s >= 10 + 10
    h = observe(h, HARD, 140.0, limits)
    assert h.status is Status.DOWN and h.outages == 2
    assert hold(h, 140.0, limits) == pytest.approx(10.0 + 20.0 * (1 + 0.5**1.3), rel=1e-3)


def test_a_primary_down_20s_of_every_minute_is_one_outage_with_the_defaults() -> None:
    h, changes = timeline(defaults(), 20 * 60, lambda t: t < 60 or t % 60 >= 20)
    assert h.outages == 1 and changes == 1 and h.status is Status.DOWN


def test_a_single_outage_recovers_after_min_dwell_plus_one_penalty() -> None:
    limits = defaults()
    h, _ = timeline(limits, 400, lambda t: not 100 <= t < 130)
    assert h.status is Status.UP and h.outages == 1
    assert 130 + limits.min_dwell <= h.changed_at <= 130 + limits.min_dwell + limits.flap_penalty + 1


WATCHED = frozenset({"canary@x"})


@pytest.mark.parametrize(
    ("scope", "outage", "why"),
    [
        (Scope.ALL_ON_ANY, False, Why.UNWATCHED_DOWN),
        (Scope.ALL_ON_FRACTION, False, Why.FRACTION_BELOW),
        (Scope.PER_ADDRESS, True, Why.ADDRESSES_DOWN),
    ],
)
def test_a_rotation_address_down_fails_over_its_user_alone(scope: Scope, outage: bool, why: Why) -> None:
    statuses = {"canary@x": Status.UP, "a@x": Status.UP, "b@x": Status.DOWN, "c@x": Status.UP}
    v = decide(Status.UP, statuses, scope, fraction=0.5, watched=WATCHED)
    assert (v.outage, v.why, v.down) == (outage, why, ("b@x",))
    if outage:
        assert v.users == frozenset({"b@x"})


def test_a_watched_address_down_still_fails_everyone_over_on_any() -> None:
    v = decide(Status.UP, {"canary@x": Status.DOWN, "a@x": Status.UP}, Scope.ALL_ON_ANY, watched=WATCHED)
    assert (v.outage, v.users, v.why) == (True, None, Why.ADDRESS_DOWN)


def test_the_recheck_takes_failing_addresses_and_down_ones_due_again() -> None:
    health = {
        "fine@x": Health(Status.UP, checked_at=99.0),
        "failing@x": Health(Status.UP, failures=1, checked_at=99.5),
        "down-recent@x": Health(Status.DOWN, failures=3, checked_at=95.0),
        "down-due@x": Health(Status.DOWN, failures=3, checked_at=85.0),
        "new@x": Health(Status.UNKNOWN, failures=1, checked_at=99.0),
    }
    plan = Plan("127.0.0.1", 25, "h", False, 5.0, 300.0, 50, 500, 1.0, 10.0)
    rotation = Rotation(plan, None, addresses=list, health=lambda: health, report=None, trouble=print)  # type: ignore[arg-type]
    assert sorted(rotation.due(100.0)) == ["down-due@x", "failing@x", "new@x"]
