"""The health model: observations in, a status with hysteresis out. Pure.

Each target (the primary as a whole, or one watched address) keeps counts of
consecutive failures and successes. It is declared DOWN after `down_after`
failures in a row and UP after `up_after` successes in a row, and never
changes status again before `min_dwell` seconds have passed since its last
change: a primary that flaps every few seconds produces at most one change
per dwell period, not a storm of failovers.

A target starts UNKNOWN; the first success makes it UP at once (a healthy
primary at start-up needs no waiting), `down_after` failures make it DOWN.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


class Observation(StrEnum):
    """What one probe or delivery said about a target."""

    OK = "ok"
    FAILED = "failed"  # the target did not do its job: counts towards DOWN
    INCONCLUSIVE = "inconclusive"  # e.g. the address is unknown to the primary: a config problem, not an outage


@dataclass(frozen=True, slots=True)
class Thresholds:
    down_after: int = 2
    up_after: int = 3
    min_dwell: float = 30.0


@dataclass(frozen=True, slots=True)
class Health:
    status: Status = Status.UNKNOWN
    failures: int = 0  # consecutive
    successes: int = 0  # consecutive
    changed_at: float = 0.0
    checked_at: float = 0.0
    detail: str = ""  # what the last observation said


def observe(health: Health, seen: Observation, now: float, limits: Thresholds, detail: str = "") -> Health:
    """The target's health after one more observation."""
    if seen is Observation.INCONCLUSIVE:
        return Health(health.status, health.failures, health.successes, health.changed_at, now, detail)
    if seen is Observation.OK:
        failures, successes = 0, health.successes + 1
        wanted, enough = Status.UP, successes >= limits.up_after or health.status is Status.UNKNOWN
    else:
        failures, successes = health.failures + 1, 0
        wanted, enough = Status.DOWN, failures >= limits.down_after
    dwelt = health.status is Status.UNKNOWN or now - health.changed_at >= limits.min_dwell
    if health.status is not wanted and enough and dwelt:
        return Health(wanted, failures, successes, now, now, detail)
    return Health(health.status, failures, successes, health.changed_at, now, detail)
