"""Direct MX delivery: the pure decisions (route for other domains, MX order, null and implicit MX)."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from mailstandby.config import OutboundSettings
from mailstandby.core.model import Mode
from mailstandby.directory.base import User
from mailstandby.routing import Decision, Reason, Route, choose_route
from mailstandby.smtp.mx import C556_NULL_MX, MXReason, address_literal, plan_mx

ALICE = User("alice@corp.test")

OUTSIDER = [  # (mode, smarthost, direct_mx) -> decision for a recipient that is not our user
    (Mode.NORMAL, False, True, Decision(Route.PRIMARY, Reason.OUTBOUND_VIA_PRIMARY)),
    (Mode.FAILED_OVER, False, True, Decision(Route.DIRECT, Reason.OUTBOUND_DIRECT_MX)),
    (Mode.FAILING_BACK, False, True, Decision(Route.DIRECT, Reason.OUTBOUND_DIRECT_MX)),
    (Mode.FAILED_OVER, False, False, Decision(Route.PRIMARY, Reason.OUTBOUND_VIA_PRIMARY)),
    (Mode.FAILING_BACK, False, False, Decision(Route.PRIMARY, Reason.OUTBOUND_VIA_PRIMARY)),
    (Mode.NORMAL, True, True, Decision(Route.OUTBOUND, Reason.OUTBOUND_SMARTHOST)),
    (Mode.FAILED_OVER, True, True, Decision(Route.OUTBOUND, Reason.OUTBOUND_SMARTHOST)),
    (Mode.FAILING_BACK, True, False, Decision(Route.OUTBOUND, Reason.OUTBOUND_SMARTHOST)),
]


@pytest.mark.parametrize("mode,smarthost,direct_mx,want", OUTSIDER)
def test_other_domains_route(mode: Mode, smarthost: bool, direct_mx: bool, want: Decision) -> None:
    assert choose_route(mode, None, None, smarthost=smarthost, direct_mx=direct_mx) == want


@pytest.mark.parametrize("mode", list(Mode))
def test_direct_mx_never_changes_our_users_route(mode: Mode) -> None:
    for scope in (None, frozenset({ALICE.address}), frozenset({"bob@corp.test"})):
        assert choose_route(mode, scope, ALICE, direct_mx=True) == choose_route(mode, scope, ALICE)


def test_mx_records_in_preference_order() -> None:
    plan = plan_mx("ext.test", [(20, "b.ext.test"), (10, "a.ext.test."), (30, "c.ext.test")])
    assert plan.hosts == ("a.ext.test", "b.ext.test", "c.ext.test")
    assert plan.reason is MXReason.MX and plan.reply is None


def test_equal_preferences_are_shuffled_but_stay_within_their_rank() -> None:
    records = [(10, "x1"), (10, "x2"), (10, "x3"), (5, "first"), (20, "last")]
    orders = {plan_mx("d.test", records, random.Random(seed)).hosts for seed in range(40)}
    assert len(orders) > 1  # RFC 5321 §5.1: spread over equal hosts
    for hosts in orders:
        assert hosts[0] == "first" and hosts[-1] == "last"
        assert sorted(hosts[1:4]) == ["x1", "x2", "x3"]


def test_duplicate_hosts_are_tried_once() -> None:
    assert plan_mx("d.test", [(10, "mx.d.test"), (20, "MX.d.test.")]).hosts == ("mx.d.test",)


@pytest.mark.parametrize("records", [None, []])
def test_no_mx_means_the_domain_itself(records: list[tuple[int, str]] | None) -> None:
    plan = plan_mx("implicit.test", records)
    assert plan == plan.__class__(("implicit.test",), MXReason.IMPLICIT_MX)


@pytest.mark.parametrize("exchange", [".", ""])
def test_null_mx_is_a_permanent_failure(exchange: str) -> None:
    plan = plan_mx("null.test", [(0, exchange)])
    assert plan.hosts == () and plan.reason is MXReason.NULL_MX
    assert plan.reply == C556_NULL_MX and (plan.reply.code, plan.reply.status) == (556, "5.1.10")


def test_a_null_mx_beside_real_hosts_is_ignored() -> None:
    assert plan_mx("d.test", [(0, "."), (10, "mx.d.test")]).hosts == ("mx.d.test",)


@pytest.mark.parametrize(
    "domain,want",
    [
        ("[192.0.2.1]", "192.0.2.1"),
        ("[IPv6:2001:db8::1]", "2001:db8::1"),
        ("[ipv6:2001:DB8::1]", "2001:db8::1"),
        ("[not-an-address]", None),
        ("ext.test", None),
        ("[192.0.2.1", None),
    ],
)
def test_address_literal(domain: str, want: str | None) -> None:
    assert address_literal(domain) == want


@pytest.mark.parametrize("value", ["", "127.0.0.1:53", "[::1]:5353"])
def test_resolver_setting_accepts(value: str) -> None:
    assert OutboundSettings(resolver=value).resolver == value


@pytest.mark.parametrize("value", ["127.0.0.1", "dns.example:53", "127.0.0.1:0", "127.0.0.1:x"])
def test_resolver_setting_rejects(value: str) -> None:
    with pytest.raises(ValidationError, match="resolver"):
        OutboundSettings(resolver=value)


def test_direct_mx_defaults() -> None:
    s = OutboundSettings()
    assert (s.direct_mx, s.mx_port, s.resolver) == (True, 25, "")


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("smarthost", [False, True])
def test_an_address_of_our_domains_outside_the_directory_goes_to_the_primary(mode: Mode, smarthost: bool) -> None:
    """A role or list address only the primary knows: never out to the Internet, whose MX is us or the primary."""
    got = choose_route(mode, None, None, smarthost=smarthost, direct_mx=True, our_domain=True)
    assert got == Decision(Route.PRIMARY, Reason.OUR_DOMAIN_UNKNOWN)
