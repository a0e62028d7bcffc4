"""Per-client rates as anvil counts them, on a stepped clock."""

from __future__ import annotations

from mailstandby.limits import networks
from mailstandby.ratelimit import ClientRate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limit_per_window_then_a_new_window() -> None:
    clock = Clock()
    rate = ClientRate(3, window=60, clock=clock)
    assert [rate.allow("192.0.2.1") for _ in range(5)] == [True, True, True, False, False]
    clock.now += 59.9
    assert not rate.allow("192.0.2.1")  # refused events count: the window does not slide
    clock.now += 0.1  # 60 s after the window opened
    assert rate.allow("192.0.2.1") and rate.count("192.0.2.1") == 1


def test_clients_are_counted_apart_ipv6_by_its_64() -> None:
    rate = ClientRate(1, clock=Clock())
    assert rate.allow("192.0.2.1") and rate.allow("192.0.2.2")
    assert rate.allow("2001:db8:0:1::1")
    assert not rate.allow("2001:db8:0:1::ffff")  # the same /64
    assert rate.allow("2001:db8:0:2::1")
    assert not rate.allow("::ffff:192.0.2.1")  # IPv4-mapped is the IPv4 client


def test_no_limit_and_exempt_networks() -> None:
    unlimited = ClientRate(0, clock=Clock())
    assert all(unlimited.allow("192.0.2.1") for _ in range(1000))
    rate = ClientRate(1, clock=Clock(), exempt=networks(["127.0.0.0/8", "::1"]))
    assert all(rate.allow("127.0.0.5") for _ in range(10)) and all(rate.allow("::1") for _ in range(10))
    assert rate.allow("192.0.2.1") and not rate.allow("192.0.2.1")


def test_memory_is_bounded() -> None:
    clock = Clock()
    rate = ClientRate(1, clock=clock, max_clients=100)
    for i in range(1000):
        rate.allow(f"10.0.{i // 256}.{i % 256}")
    assert len(rate._windows) <= 100
    clock.now += 61
    rate.allow("192.0.2.9")  # expired windows go first
    assert len(rate._windows) == 1
