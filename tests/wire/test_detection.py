"""Outage detection against the real primary (Postfix + Dovecot): fast confirmation, every directory
address in rotation, flap damping, and a primary that turns connections away without being down.

Periods are scaled down through the [monitor] settings so each test stays short; the real-length
scenarios and the timings are in bench/detection.py. Waits are bounded by what the settings promise
plus slack for a loaded machine; nothing here asserts a duration.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.primary import Primary
from tests.support.proxy import GatedProxy
from tests.support.standby import Standby
from tests.wire.test_failover import (
    ADMIN_PW,
    SLACK,
    send,
    subjects_in_standby,
    wait_mode,
)


@contextlib.contextmanager
def proxied(primary: Primary, gate: Callable[[int, float], bool]) -> Iterator[GatedProxy]:
    proxy = GatedProxy(primary.smtp_port, gate)
    try:
        yield proxy
    finally:
        proxy.close()


def health(api: httpx.Client) -> dict[str, Any]:
    return dict(api.get("/api/v1/status").json()["health"])


def with_alternates(standby: Standby, users: list[str]) -> None:
    """Give `users` an alternate address, so that an outage notice to them is recorded."""
    config = standby.config_path.read_text()
    for user in users:
        name = user.split("@")[0]
        config = config.replace(f'address = "{user}"\n', f'address = "{user}"\nalternates = ["{name}@home.test"]\n', 1)
    standby.config_path.write_text(config)


def test_with_the_defaults_a_dead_postfix_is_declared_down_and_mail_rerouted(tmp_path: Path, primary: Primary) -> None:
    """No mail flows: only the probes can see the outage. The time it takes is bench/detection.py's."""
    standby = Standby(tmp_path / "standby", primary_port=primary.smtp_port, failover={"control": "automatic"})
    with standby:
        standby.add_admin("admin", ADMIN_PW)
        with standby.api(password=ADMIN_PW) as api:
            standby.wait_until(lambda: health(api)["primary"]["status"] == "up", SLACK, "the primary up")
            primary.stop_smtp()
            wait_mode(standby, "failed-over", 60)
            send(standby, ["alice@corp.test"], "while Postfix is down")
            standby.wait_until(lambda: subjects_in_standby(standby, "alice@corp.test") == ["while Postfix is down"])
            # The flap penalty the outage earned is visible in the status and the metrics.
            seen = health(api)["primary"]
            assert seen["outages"] == 1 and seen["flap_penalty"] > 0 and seen["hold"] > seen["flap_penalty"]
            metrics = api.get("/metrics").text
            assert 'mailstandby_primary_outages_total{target="primary"} 1.0' in metrics
            assert 'mailstandby_primary_flap_penalty_seconds{target="primary"}' in metrics
    assert standby.transitions()[0]["reason"].startswith("primary-down")


def test_one_failure_is_confirmed_at_once_not_at_the_next_round(tmp_path: Path, primary: Primary) -> None:
    """Rounds an hour apart: the queue's trouble with one message wakes a round that fails, and the
    re-probe `fast_interval` later confirms the outage; nothing waits for the next scheduled round."""
    monitor = {"interval": 3600.0, "fast_interval": 0.2, "timeout": 2.0, "rotation": False}
    standby = Standby(
        tmp_path / "standby", primary_port=primary.smtp_port, failover={"control": "automatic"}, monitor=monitor
    )
    with standby:
        standby.add_admin("admin", ADMIN_PW)
        with standby.api(password=ADMIN_PW) as api:
            standby.wait_until(lambda: health(api)["primary"]["status"] == "up", SLACK, "the primary up")
            primary.stop_smtp()
            send(standby, ["bob@corp.test"], "runs into the outage")
            wait_mode(standby, "failed-over", SLACK)
            standby.wait_until(lambda: subjects_in_standby(standby, "bob@corp.test") == ["runs into the outage"])


def test_a_primary_refusing_every_other_connection_causes_no_failover_and_no_notice(
    tmp_path: Path, primary: Primary
) -> None:
    """Rounds every 0.2 s with the watched addresses and the rotation (every 0.5 s) sharing the proxy:
    the proxy refuses connection 1, 3, 5, ... for 15 s."""
    monitor = {
        "interval": 0.2,
        "fast_interval": 0.1,
        "timeout": 2.0,
        "down_after": 2,
        "min_dwell": 1.0,
        "flap_penalty": 1.0,
        "watch": ["alice@corp.test", "carol@corp.test"],
        "rotation_period": 0.5,
    }
    with proxied(primary, lambda n, _t: n % 2 == 0) as proxy:
        standby = Standby(
            tmp_path / "standby", primary_port=proxy.port, failover={"control": "automatic"}, monitor=monitor
        )
        with_alternates(standby, ["alice@corp.test", "bob@corp.test"])
        with standby:
            standby.add_admin("admin", ADMIN_PW)
            with standby.api(password=ADMIN_PW) as api:
                standby.wait_until(lambda: health(api)["primary"]["status"] == "up", SLACK, "the primary up")
                end = time.monotonic() + 15
                while time.monotonic() < end:  # the load under test is the passage of time itself
                    time.sleep(1)
                    assert standby.failover_state()["mode"] == "normal", standby.transitions()
                seen = health(api)
                notices = api.get("/api/v1/notifications").json()
    assert standby.transitions() == [] and notices == []
    assert seen["primary"]["status"] == "up" and seen["primary"]["outages"] == 0
    assert seen["rounds"] > 50 and proxy.refused > 50  # the refusals really were there, round after round


def test_a_primary_down_a_third_of_every_period_causes_one_outage(tmp_path: Path, primary: Primary) -> None:
    """The bench's "down 20 s of every minute" at a tenth of the scale (down 2 s of every 6 s), with
    min_dwell and the flap penalty scaled alike: one failover, held while the primary keeps flapping."""
    monitor = {
        "interval": 0.3,
        "fast_interval": 0.1,
        "timeout": 1.0,
        "down_after": 2,
        "up_after": 3,
        "min_dwell": 3.0,
        "flap_penalty": 3.0,
        "flap_half_life": 90.0,
        "rotation": False,
    }
    up_first = 3.0  # up for a while before the pattern starts

    def gate(_n: int, t: float) -> bool:
        return t < up_first or (t - up_first) % 6.0 >= 2.0

    with proxied(primary, gate) as proxy:
        standby = Standby(
            tmp_path / "standby", primary_port=proxy.port, failover={"control": "automatic"}, monitor=monitor
        )
        with standby:
            standby.wait_until(lambda: time.monotonic() - proxy.started > up_first + 3 * 6.0, 60, "three periods")
            transitions = standby.transitions()
            state = standby.failover_state()
    outages = [t for t in transitions if t["from_mode"] == "normal" and t["to_mode"] == "failed-over"]
    assert len(outages) == 1, transitions
    assert state["mode"] == "failed-over"  # not trusted again while it keeps failing a third of the time
    assert proxy.refused > 0 and proxy.accepted > 0


def rcpt_users(n: int) -> dict[str, str]:
    return {f"user{i:04d}@corp.test": f"pw-{i}" for i in range(n)}


def add_directory_users(standby: Standby, users: list[str]) -> None:
    text = "".join(f'[[directory.users]]\naddress = "{u}"\n\n' for u in users)
    standby.config_path.write_text(standby.config_path.read_text() + "\n" + text)


@pytest.fixture
def many_users(tmp_path: Path) -> Iterator[Primary]:
    """A primary with 300 mailboxes that logs every RCPT TO it is given."""
    p = Primary(tmp_path / "primary", users=rcpt_users(300), log_recipients=True)
    try:
        p.start()
        yield p
    finally:
        p.close()


def test_every_directory_address_is_probed_within_the_configured_rate(tmp_path: Path, many_users: Primary) -> None:
    """300 directory users, a period of 2 s and at most 60 RCPT a second: the rate binds, and the
    primary's own log shows every address asked and never more than the rate (10,000: the bench)."""
    primary, rate = many_users, 60.0
    monitor = {"rotation_period": 2.0, "rotation_rate": rate, "rotation_batch": 40, "rotation_session": 100}
    standby = Standby(tmp_path / "standby", primary_port=primary.smtp_port, monitor=monitor)
    add_directory_users(standby, sorted(primary.users))
    with standby:
        standby.add_admin("admin", ADMIN_PW)
        with standby.api(password=ADMIN_PW) as api:
            standby.wait_until(
                lambda: set(primary.users) <= {a for _, a in primary.logged_recipients()}, 60, "every user asked"
            )
            standby.wait_until(lambda: health(api)["counts"]["up"] >= 300, SLACK, "every address up")
    asked = primary.logged_recipients()
    assert set(primary.users) <= {a for _, a in asked}
    per_second: dict[int, int] = {}
    for at, _ in asked:
        per_second[int(at)] = per_second.get(int(at), 0) + 1
    window = 3  # whole seconds of the log's time stamps: at most rate * window RCPTs, plus one at an edge
    for start in range(min(per_second), max(per_second) + 1):
        count = sum(per_second.get(s, 0) for s in range(start, start + window))
        assert count <= rate * window + 1, (start, count)


def test_a_mailbox_answering_4xx_fails_over_its_user_alone_and_back(tmp_path: Path, primary: Primary) -> None:
    """bob's mailbox database is dismounted: Postfix answers 452 4.2.1 to RCPT TO for him alone (an
    administrator's check_recipient_access entry). With the per-address scope bob alone fails over
    within two rotation periods, is told so, and fails back when the entry goes; nobody else is touched."""
    period = 2.0
    monitor = {
        "interval": 0.5,
        "fast_interval": 0.2,
        "timeout": 2.0,
        "min_dwell": 1.0,
        "flap_penalty": 1.0,
        "rotation_period": period,
    }
    standby = Standby(
        tmp_path / "standby",
        primary_port=primary.smtp_port,
        failover={"control": "automatic", "scope": "per-address"},
        monitor=monitor,
    )
    with_alternates(standby, ["alice@corp.test", "bob@corp.test", "carol@corp.test"])
    with standby:
        standby.add_admin("admin", ADMIN_PW)
        with standby.api(password=ADMIN_PW) as api:
            standby.wait_until(lambda: health(api)["counts"]["up"] >= 3, SLACK, "the directory probed healthy")
            primary.set_recipient_access("bob@corp.test", "452 4.2.1 mailbox database dismounted")
            standby.wait_until(
                lambda: standby.failover_state()["mode"] == "failed-over", 2 * period + SLACK, "bob failed over"
            )
            assert api.get("/api/v1/status").json()["failover"]["users"] == ["bob@corp.test"]
            assert health(api)["addresses"]["bob@corp.test"]["detail"].startswith("452 4.2.1")
            send(standby, ["alice@corp.test", "bob@corp.test", "carol@corp.test"], "one mailbox down")
            standby.wait_until(lambda: subjects_in_standby(standby, "bob@corp.test") == ["one mailbox down"])
            primary.wait_for_messages("alice@corp.test", 1)
            primary.wait_for_messages("carol@corp.test", 1)

            primary.set_recipient_access("bob@corp.test", None)
            wait_mode(standby, "normal", 2 * period + SLACK)
            notices = api.get("/api/v1/notifications").json()
    assert subjects_in_standby(standby, "alice@corp.test") == subjects_in_standby(standby, "carol@corp.test") == []
    assert {n["user"] for n in notices} == {"bob@corp.test"}
    assert {n["kind"] for n in notices} >= {"failover"}
    steps = [(t["from_mode"], t["to_mode"], t["users"]) for t in standby.transitions()]
    assert steps[0] == ("normal", "failed-over", '["bob@corp.test"]'), steps
