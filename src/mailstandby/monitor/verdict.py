"""From health to a verdict: is there an outage, and whom does it cover? Pure.

The addresses are those of `monitor.watch`, probed every round, and every
directory address the rotation probes. Scope policies (config `failover.scope`):
- `all-on-any`: the primary down, or any address of `monitor.watch` down ->
  everyone fails over (one full mailbox elsewhere in the directory does not
  fail the whole company over);
- `all-on-fraction`: the primary down, or more than `fraction` of all the
  probed addresses down -> everyone;
- `per-address`: the primary down -> everyone; otherwise exactly the users
  whose addresses are down are intercepted.

A verdict carries its reason from a closed set; it is logged, counted and shown
by the admin API.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

from mailstandby.monitor.health import Status


class Scope(StrEnum):
    ALL_ON_ANY = "all-on-any"
    ALL_ON_FRACTION = "all-on-fraction"
    PER_ADDRESS = "per-address"


class Why(StrEnum):
    HEALTHY = "primary-healthy"
    UNKNOWN = "health-unknown"  # nothing observed yet: no opinion
    PRIMARY_DOWN = "primary-down"
    ADDRESS_DOWN = "watched-address-down"
    FRACTION_DOWN = "watched-fraction-down"
    FRACTION_BELOW = "watched-fraction-below-threshold"  # some addresses down, not enough to act
    ADDRESSES_DOWN = "watched-addresses-down"  # per-address interception
    UNWATCHED_DOWN = "rotation-addresses-down"  # all-on-any: addresses down, none of them in monitor.watch


@dataclass(frozen=True, slots=True)
class Verdict:
    outage: bool | None  # None: no opinion yet (health unknown)
    users: frozenset[str] | None  # None: everyone; else the users intercepted
    why: Why
    down: tuple[str, ...] = ()  # the watched addresses that are down


def decide(
    system: Status,
    addresses: Mapping[str, Status],
    scope: Scope,
    *,
    fraction: float = 0.5,
    owners: Mapping[str, str] | None = None,
    watched: Collection[str] | None = None,
) -> Verdict:
    """`addresses`: probed address -> status; `owners`: address -> its user (default: itself);
    `watched`: the addresses `all-on-any` looks at (default: all of them)."""
    down = tuple(sorted(a for a, s in addresses.items() if s is Status.DOWN))
    if system is Status.DOWN:
        return Verdict(True, None, Why.PRIMARY_DOWN, down)
    if system is Status.UNKNOWN:
        return Verdict(None, None, Why.UNKNOWN, down)
    if not down:
        return Verdict(False, None, Why.HEALTHY)
    if scope is Scope.ALL_ON_ANY:
        if watched is None or any(a in watched for a in down):
            return Verdict(True, None, Why.ADDRESS_DOWN, down)
        return Verdict(False, None, Why.UNWATCHED_DOWN, down)
    if scope is Scope.ALL_ON_FRACTION:
        if len(down) / len(addresses) > fraction:
            return Verdict(True, None, Why.FRACTION_DOWN, down)
        return Verdict(False, None, Why.FRACTION_BELOW, down)
    owner = owners or {}
    return Verdict(True, frozenset(owner.get(a, a) for a in down), Why.ADDRESSES_DOWN, down)
