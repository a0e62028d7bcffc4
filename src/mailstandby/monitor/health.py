"""The health model: observations in, a status with hysteresis and flap damping out. Pure.

Each target (the primary as a whole, or one address) keeps a weighted count
of consecutive failures and a count of consecutive successes (HAProxy's
`fall` and `rise`):

- it is declared DOWN once its consecutive failures weigh `down_after`: a
  hard failure (connection refused, 5xx to a known mailbox) weighs
  `hard_weight`, a soft one (timeout, 4xx) `soft_weight`; both weigh 1 by
  default, so `down_after` counts failed observations in a row;
- a DOWN target is declared UP after `up_after` successes in a row that have
  also lasted its *hold*: `min_dwell` plus its flap penalty (below);
- a target that recovered (UP after DOWN) may not go DOWN again within
  `min_dwell` seconds of its recovery.

Flap damping (after BGP route flap damping, RFC 2439): each time a target goes
DOWN it scores one flap; the score halves every `flap_half_life` seconds, and
the penalty is `flap_penalty` seconds per flap of score. A target that fails
and recovers repeatedly must answer for longer and longer before it is trusted
again, so it causes one long outage instead of a storm of failovers and
notices; a target that stays healthy earns its quick recovery back.

A target starts UNKNOWN; the first success makes it UP at once (a healthy
primary at start-up needs no waiting), `down_after` failures make it DOWN.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class Status(StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


class Observation(StrEnum):
    """What one probe or delivery said about a target."""

    OK = "ok"
    FAILED = "failed"  # hard: refused, 5xx to a known mailbox; counts `hard_weight` towards DOWN
    SOFT_FAILED = "soft-failed"  # soft: timeout, 4xx; counts `soft_weight` towards DOWN
    INCONCLUSIVE = "inconclusive"  # e.g. the address is unknown to the primary: a config problem, not an outage

    @property
    def failed(self) -> bool:
        return self in (Observation.FAILED, Observation.SOFT_FAILED)


@dataclass(frozen=True, slots=True)
class Thresholds:
    down_after: int = 2
    up_after: int = 3
    min_dwell: float = 30.0
    hard_weight: int = 1
    soft_weight: int = 1
    flap_penalty: float = 30.0  # seconds of hold per flap of score
    flap_half_life: float = 900.0  # seconds for the flap score to halve


@dataclass(frozen=True, slots=True)
class Health:
    status: Status = Status.UNKNOWN
    failures: int = 0  # consecutive, weighted
    successes: int = 0  # consecutive
    changed_at: float = 0.0
    checked_at: float = 0.0
    detail: str = ""  # what the last observation said
    healthy_since: float = 0.0  # when the current run of successes began
    flaps: float = 0.0  # flap score as of `flapped_at` (decays)
    flapped_at: float = 0.0
    outages: int = 0  # times declared DOWN since start (never decays)


def flap_score(health: Health, now: float, limits: Thresholds) -> float:
    """The flap score now: every DOWN counted 1, halving every `flap_half_life` seconds."""
    if health.flaps <= 0.0:
        return 0.0
    age = max(0.0, now - health.flapped_at)
    return float(health.flaps * 0.5 ** (age / limits.flap_half_life))


def penalty(health: Health, now: float, limits: Thresholds) -> float:
    """Seconds added to `min_dwell` before a DOWN target is trusted again."""
    return limits.flap_penalty * flap_score(health, now, limits)


def hold(health: Health, now: float, limits: Thresholds) -> float:
    """Seconds a DOWN target must answer without a failure before it is declared UP."""
    return limits.min_dwell + penalty(health, now, limits)


def observe(health: Health, seen: Observation, now: float, limits: Thresholds, detail: str = "") -> Health:
    """The target's health after one more observation."""
    if seen is Observation.INCONCLUSIVE:
        return replace(health, checked_at=now, detail=detail)
    if seen is Observation.OK:
        return _succeeded(health, now, limits, detail)
    return _failed(health, seen, now, limits, detail)


def _succeeded(health: Health, now: float, limits: Thresholds, detail: str) -> Health:
    since = health.healthy_since if health.successes else now
    after = replace(health, failures=0, successes=health.successes + 1, checked_at=now, detail=detail)
    after = replace(after, healthy_since=since)
    if health.status is Status.UNKNOWN:
        return replace(after, status=Status.UP, changed_at=now)
    if health.status is Status.DOWN and after.successes >= limits.up_after and now - since >= hold(health, now, limits):
        return replace(after, status=Status.UP, changed_at=now)
    return after


def _failed(health: Health, seen: Observation, now: float, limits: Thresholds, detail: str) -> Health:
    weight = limits.hard_weight if seen is Observation.FAILED else limits.soft_weight
    after = replace(health, failures=health.failures + weight, successes=0, checked_at=now, detail=detail)
    if health.status is Status.DOWN or after.failures < limits.down_after:
        return after
    if health.status is Status.UP and health.outages and now - health.changed_at < limits.min_dwell:
        return after
    return replace(
        after,
        status=Status.DOWN,
        changed_at=now,
        flaps=flap_score(health, now, limits) + 1.0,
        flapped_at=now,
        outages=health.outages + 1,
    )
