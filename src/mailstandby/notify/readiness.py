"""Who cannot be reached in an outage: a readiness report over the directory and who has a password (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from mailstandby.directory.base import NoticeKind, User
from mailstandby.notify.compose import Mode, destinations


class Gap(StrEnum):
    NO_ALTERNATE = "no-alternate-contact"  # no address, SMS gateway or URL outside the primary
    NO_DEVICE = "no-device"  # no phone or pager known
    NO_PASSWORD = "no-standby-password"  # never set up the standby: cannot read mail there
    NOTICES_OFF = "notifications-off"  # turned off the failover notice


@dataclass(frozen=True, slots=True)
class UserReadiness:
    address: str
    modes: dict[str, int]
    devices: int
    has_password: bool
    gaps: tuple[Gap, ...]


def assess(users: Iterable[User], with_password: set[str]) -> list[UserReadiness]:
    out = []
    for user in users:
        if not user.enabled:
            continue
        dests = destinations(user)
        modes = {m.value: sum(1 for d in dests if d.mode is m) for m in Mode}
        gaps = []
        if not dests:
            gaps.append(Gap.NO_ALTERNATE)
        if not user.devices:
            gaps.append(Gap.NO_DEVICE)
        if user.address not in with_password:
            gaps.append(Gap.NO_PASSWORD)
        if NoticeKind.FAILOVER not in user.preferences.notify:
            gaps.append(Gap.NOTICES_OFF)
        out.append(UserReadiness(user.address, modes, len(user.devices), user.address in with_password, tuple(gaps)))
    return out


def report(users: Iterable[User], with_password: set[str]) -> dict[str, Any]:
    """Plain data: per user, and the count of users with each gap."""
    rows = assess(users, with_password)
    counts = {g.value: sum(1 for r in rows if g in r.gaps) for g in Gap}
    return {
        "users": [{**asdict(r), "gaps": [g.value for g in r.gaps]} for r in rows],
        "gaps": counts,
        "total": len(rows),
        "unreachable": sum(1 for r in rows if Gap.NO_ALTERNATE in r.gaps),
    }
