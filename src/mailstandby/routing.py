"""Where each recipient's copy goes, decided at delivery time.

`choose_route` is pure. Routing is decided when a delivery is attempted, not
when mail is accepted, so a message queued for the primary when the primary
fails can be delivered to the standby instead (the failover controller will
change the mode; today it is always NORMAL).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mailstandby.core.model import Address
from mailstandby.directory.base import Directory, User


class Mode(StrEnum):
    NORMAL = "normal"


class Route(StrEnum):
    PRIMARY = "primary"  # relay to the primary mail system
    OUTBOUND = "outbound"  # the smarthost, for other domains


class Reason(StrEnum):
    PRIMARY_HEALTHY = "primary-healthy"
    OUTBOUND_VIA_PRIMARY = "outbound-via-primary"  # not our user, and no smarthost configured
    OUTBOUND_SMARTHOST = "outbound-smarthost"  # not our user: the configured smarthost


@dataclass(frozen=True, slots=True)
class Decision:
    route: Route
    reason: Reason


def choose_route(mode: Mode, user: User | None, *, smarthost: bool = False) -> Decision:
    if user is None:
        if smarthost:
            return Decision(Route.OUTBOUND, Reason.OUTBOUND_SMARTHOST)
        return Decision(Route.PRIMARY, Reason.OUTBOUND_VIA_PRIMARY)
    return Decision(Route.PRIMARY, Reason.PRIMARY_HEALTHY)


class Router:
    def __init__(self, directory: Directory, *, smarthost: bool = False) -> None:
        self.directory = directory
        self.smarthost = smarthost
        self.mode = Mode.NORMAL

    def user_of(self, rcpt: str) -> str | None:
        """The primary address of the user `rcpt` belongs to, if it is one of ours."""
        try:
            user = self.directory.lookup(Address.parse(rcpt))
        except ValueError:
            return None
        return user.address if user is not None else None

    def route(self, rcpt: str) -> Decision:
        try:
            user = self.directory.lookup(Address.parse(rcpt))
        except ValueError:
            user = None
        return choose_route(self.mode, user, smarthost=self.smarthost)
