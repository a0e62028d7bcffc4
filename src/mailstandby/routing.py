"""Where each recipient's copy goes, decided at delivery time.

`choose_route` is pure. Routing is decided when a delivery is attempted, not
when mail is accepted, so a message queued for the primary when the primary
fails is delivered to the standby instead. The failover coordinator sets the
mode and the users in scope with `Router.apply`; the queue asks `route()` for
every recipient of every attempt.

During FAILING_BACK new mail goes to the primary again: the primary is back,
and the failback sync brings the outage mail over beside it.

Mail for other domains goes to the smarthost when one is configured. Without
one it goes to the primary, except while failed over or failing back with
direct MX delivery on (the default): then it goes straight to the
destination's MX hosts (RFC 5321 §5.1), so notices about the outage reach
users' alternate addresses while the primary cannot pass them on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mailstandby.core.model import Address, Mode
from mailstandby.directory.base import Directory, User


class Route(StrEnum):
    PRIMARY = "primary"  # relay to the primary mail system
    STANDBY = "standby"  # file in the user's standby mailbox
    OUTBOUND = "outbound"  # the smarthost, for other domains
    DIRECT = "direct"  # the destination domain's MX hosts, for other domains during an outage


class Reason(StrEnum):
    PRIMARY_HEALTHY = "primary-healthy"
    FAILED_OVER = "failed-over"  # the user is in the outage's scope
    NOT_IN_SCOPE = "not-in-outage-scope"  # per-address outage that does not cover this user
    FAILING_BACK = "failing-back"  # the primary is back: new mail goes there
    OUTBOUND_VIA_PRIMARY = "outbound-via-primary"  # not our user, and no smarthost configured
    OUTBOUND_SMARTHOST = "outbound-smarthost"  # not our user: the configured smarthost
    OUTBOUND_DIRECT_MX = "outbound-direct-mx"  # not our user, no smarthost, the primary out: the domain's MX
    OUR_DOMAIN_UNKNOWN = "our-domain-not-in-directory"  # e.g. a list or role address only the primary knows


@dataclass(frozen=True, slots=True)
class Decision:
    route: Route
    reason: Reason


def choose_route(
    mode: Mode,
    scope: frozenset[str] | None,
    user: User | None,
    *,
    smarthost: bool = False,
    direct_mx: bool = False,
    our_domain: bool = False,
) -> Decision:
    """`scope`: the users failed over (None: everyone); `our_domain`: the recipient's domain is one we serve."""
    if user is None and our_domain:
        # Never out to the Internet (its MX is us or the primary): the primary knows its own domains.
        return Decision(Route.PRIMARY, Reason.OUR_DOMAIN_UNKNOWN)
    if user is None:
        if smarthost:
            return Decision(Route.OUTBOUND, Reason.OUTBOUND_SMARTHOST)
        if direct_mx and mode in (Mode.FAILED_OVER, Mode.FAILING_BACK):
            return Decision(Route.DIRECT, Reason.OUTBOUND_DIRECT_MX)
        return Decision(Route.PRIMARY, Reason.OUTBOUND_VIA_PRIMARY)
    if mode is Mode.FAILED_OVER:
        if scope is None or user.address in scope:
            return Decision(Route.STANDBY, Reason.FAILED_OVER)
        return Decision(Route.PRIMARY, Reason.NOT_IN_SCOPE)
    if mode is Mode.FAILING_BACK:
        return Decision(Route.PRIMARY, Reason.FAILING_BACK)
    return Decision(Route.PRIMARY, Reason.PRIMARY_HEALTHY)


class Router:
    def __init__(self, directory: Directory, *, smarthost: bool = False, direct_mx: bool = False) -> None:
        self.directory = directory
        self.smarthost = smarthost
        self.direct_mx = direct_mx  # deliver other domains' mail by MX while the primary is out
        self.mode = Mode.NORMAL
        self.scope: frozenset[str] | None = None

    def apply(self, mode: Mode, scope: frozenset[str] | None) -> None:
        """Follow the failover state (called by the coordinator, before it reroutes the queue)."""
        self.mode, self.scope = mode, scope

    def user(self, rcpt: str) -> User | None:
        """The user `rcpt` belongs to, if it is one of ours."""
        try:
            return self.directory.lookup(Address.parse(rcpt))
        except ValueError:
            return None

    def user_of(self, rcpt: str) -> str | None:
        """The primary address of the user `rcpt` belongs to, if it is one of ours."""
        user = self.user(rcpt)
        return user.address if user is not None else None

    def route(self, rcpt: str) -> Decision:
        try:
            address = Address.parse(rcpt)
        except ValueError:
            return choose_route(self.mode, self.scope, None, smarthost=self.smarthost, direct_mx=self.direct_mx)
        user = self.directory.lookup(address)
        ours = user is None and self.directory.serves(address.domain)
        return choose_route(
            self.mode, self.scope, user, smarthost=self.smarthost, direct_mx=self.direct_mx, our_domain=ours
        )
