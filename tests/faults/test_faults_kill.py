"""kill -9 at random points of the inbound and delivery paths, many times, under load
(RELIABILITY D1, D2, D12; issue 14 item 4).

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
from tests.support.faults import Load, count, fast_standby, kill_during, primary_copies, settle_at_primary
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
