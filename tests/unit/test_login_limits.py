"""Pure parts of the login limits: client networks, reserve/release, trusted networks; the password policy."""

from __future__ import annotations

import pytest

from mailstandby.auth import PasswordRefused, hash_password, password_problem
from mailstandby.throttle import Attempts, LoginGate, client_network


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("peer", "network"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("fe80::1%eth0", "fe80::/64"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_client_network(peer: str, network: str) -> None:
    assert client_network(peer) == network


def test_an_attempt_counts_from_its_start_and_a_success_is_forgiven() -> None:
    clock = Clock()
    gate = LoginGate(3, 100, 300.0, clock=clock)
    first = gate.reserve("192.0.2.1", "alice")
    second = gate.reserve("192.0.2.1", "alice")
    assert first is not None and second is not None
    gate.succeeded(first)
    assert gate.reserve("192.0.2.1", "alice") is not None  # the success gave its attempt back
    assert gate.reserve("192.0.2.1", "alice") is not None
    assert gate.reserve("192.0.2.1", "alice") is None  # three counted: the network is full
    assert gate.reserve("2001:db8::1", "alice") is not None  # another network is not
    clock.now += 301
    assert gate.reserve("192.0.2.1", "alice") is not None  # the window moved on


def test_one_ipv6_prefix_is_one_network() -> None:
    gate = LoginGate(2, 100, 300.0)
    assert gate.reserve("2001:db8::1", "a") and gate.reserve("2001:db8::2", "b")
    assert gate.reserve("2001:db8::ffff:3", "c") is None
    assert gate.network_full("2001:db8::99")


def test_a_full_account_still_lets_in_a_network_it_logged_in_from() -> None:
    clock = Clock()
    gate = LoginGate(10, 2, 300.0, clock=clock)
    home = gate.reserve("192.0.2.1", "alice")
    assert home is not None
    gate.succeeded(home)
    assert gate.reserve("198.51.100.1", "alice") and gate.reserve("198.51.100.2", "alice")
    assert gate.reserve("198.51.100.3", "alice") is None  # the account is out of attempts
    assert gate.reserve("198.51.100.3", "bob") is not None  # other accounts are not
    assert gate.reserve("192.0.2.1", "alice") is not None  # its own network still is
    clock.now += 2 * 86400  # trust fades (and the old failures with it)
    assert gate.reserve("198.51.100.1", "alice") and gate.reserve("198.51.100.2", "alice")
    assert gate.reserve("192.0.2.1", "alice") is None


def test_attempts_keep_a_bounded_number_of_keys() -> None:
    clock = Clock()
    attempts = Attempts(1, 300.0, max_keys=3, clock=clock)
    for key in "abc":
        attempts.add(key)
    clock.now += 1
    attempts.add("d")
    assert attempts.count("a") == 0 and attempts.full("d") and attempts.full("c")


@pytest.mark.parametrize(
    ("password", "account", "why"),
    [
        ("1", "", "too short"),
        ("elevenchars", "", "too short"),
        ("x" * 1025, "", "too long"),
        ("Password1234", "", "most common"),
        ("Summer2024!!", "", "most common"),
        ("qwertyuiopas", "", "most common"),
        ("234567890123", "", "most common"),
        ("abababababab", "", "too few different"),
        ("ALICE@corp.test", "alice@corp.test", "user name"),
        ("alice@corp.test2026!", "alice@corp.test", "user name"),
        ("operations-team1", "operations-team@corp.test", "user name"),
        ("operations-admin", "operations-admin", "user name"),
    ],
)
def test_weak_passwords_are_refused_with_the_reason(password: str, account: str, why: str) -> None:
    problem = password_problem(password, account=account)
    assert problem is not None and why in problem
    with pytest.raises(PasswordRefused, match=why):
        hash_password(password, account=account)


@pytest.mark.parametrize(
    ("password", "account"),
    [
        ("correct horse battery staple", "admin"),
        ("plum tart on tuesday", "alice@corp.test"),
        ("alice standby password 2026", "alice@corp.test"),  # holding the name is not being the name
    ],
)
def test_good_passwords_pass(password: str, account: str) -> None:
    assert password_problem(password, account=account) is None


def test_the_minimum_length_is_configurable() -> None:
    assert password_problem("tenletters", min_length=10) is None
    assert password_problem("tenletters", min_length=12) is not None
