"""kill -9 at random points of the inbound and delivery paths, many times, under load
(RELIABILITY D1, D2, D12; issue 14 item 4); and of the local-delivery path, failed over, where
the queue files each message in the standby mailbox in the same transaction as its outcome.

The standby relays to the real primary; its queue marks each relay in flight and, after a
restart, looks a delivery in doubt up in the primary INBOX before sending it again
(queue/inflight.py). Counts: every acknowledged message is in the primary mailbox (lost = 0)
and the only extra copies are messages a client sent again because it never saw our 250
(the RFC 1047 window on the inbound side, which no server can close).
With LMTP a message is in the mailbox once accepted: exactly once. With SMTP the look-up
can miss a message still in Postfix's own queue; a restart takes longer than Postfix's
local delivery, so this run expects none, and a miss would show as an unexplained duplicate.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from tests.support.faults import (
    Load,
    count,
    fast_standby,
    kill_during,
    primary_copies,
    settle_at_primary,
    standby_copies,
)
from tests.support.primary import Primary

TOTAL = 400
LOOKUP = True


@pytest.mark.parametrize("protocol", ["lmtp", "smtp"])
def test_kill_9_on_the_inbound_and_delivery_paths(
    tmp_path: Path, primary: Primary, protocol: str, rng: random.Random, seed: int, iterations: int
) -> None:
    standby = fast_standby(tmp_path / "standby", primary, protocol=protocol, lookup=LOOKUP)
    standby.start()
    try:
        load = Load(standby, TOTAL).start()
        kills = kill_during(standby, load, rng, iterations)
        load.join(240)
        settle_at_primary(standby, primary, load.acked)
        counts = count(load.acked, primary_copies(primary), load.resent)
        found = sum("queue.looked-up:" in line and "found=True" in line for line in standby.log_lines())
        print(f"faults kill-9 {protocol} seed={seed} kills={kills} found_after_crash={found} {counts.line()}")
        assert kills == iterations and counts.acked == TOTAL
        counts.check()
    finally:
        standby.kill()


def test_kill_9_on_the_standby_mailbox_path(
    tmp_path: Path, primary: Primary, rng: random.Random, seed: int, iterations: int
) -> None:
    """Failed over: every acknowledged message is filed in the standby mailbox once, whatever the
    moment of the kill (the copy and the delivery outcome commit together or not at all)."""
    standby = fast_standby(tmp_path / "standby", primary, lookup=False, extra={"failover": {"control": "manual"}})
    standby.start()
    try:
        standby.add_admin("admin", "fault-admin-pw-1")
        done = standby.cli("failover", "--reason", "kill -9 run", password="fault-admin-pw-1")
        assert done.returncode == 0, done.stderr
        standby.wait_until(lambda: standby.failover_state()["mode"] == "failed-over", 30, "the failover")
        load = Load(standby, TOTAL).start()
        kills = kill_during(standby, load, rng, iterations)
        load.join(240)
        standby.wait_until(lambda: not standby.queued(), timeout=180, what="queue to drain")
        counts = count(load.acked, standby_copies(standby), load.resent)
        print(f"faults kill-9 standby-mailbox seed={seed} kills={kills} {counts.line()}")
        counts.check()
        assert kills >= 1
        assert not primary_copies(primary)  # all of it stayed on the standby, as routing said
    finally:
        standby.kill()
