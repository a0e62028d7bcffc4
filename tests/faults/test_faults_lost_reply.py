"""The primary misbehaving at the end of data, on the wire: a proxy in front of the real Dovecot
LMTP or Postfix SMTP loses the reply to the final dot, or hangs in the middle of the data
(RELIABILITY D10, D11; issue 14 item 4).

A lost reply is a delivery in doubt: the primary committed, we never heard it. With the sync's
IMAP access the next attempt finds the message in the primary INBOX and sends nothing: one copy.
Without it the message is sent again and the primary holds two copies with the same queue id,
each one logged as "no reply to the end of data" (the documented window). A hang in the data
never reaches the primary's commit: after the data timeout the look-up finds nothing and the
message is sent again, once.
"""

from __future__ import annotations

import collections
import re
import smtplib
from pathlib import Path

import pytest
from tests.support.faults import count, fast_standby, message, primary_copies, settle_at_primary
from tests.support.primary import Primary
from tests.support.proxy import DataFaultProxy

MESSAGES = 4
IN_DOUBT = re.compile(r"id=(\w+) .*no reply to the end of data")


def run(tmp_path: Path, primary: Primary, protocol: str, fault: str, *, lookup: bool) -> tuple[object, list[str]]:
    target = primary.lmtp_port if protocol == "lmtp" else primary.smtp_port
    proxy = DataFaultProxy(target, fault, times=2)
    standby = fast_standby(
        tmp_path / "standby",
        primary,
        protocol=protocol,
        lookup=lookup,
        extra={
            "queue": {"concurrency": 1, "retry_initial": 1.0},
            "primary": {"port": proxy.port, "data_timeout": 2.0, "command_timeout": 3.0},
        },
    )
    standby.start()
    try:
        acked = []
        with smtplib.SMTP(*standby.address, timeout=30) as client:
            for n in range(MESSAGES):
                subject = f"{fault}-{protocol}-{n}"
                client.sendmail("sender@ext.test", ["alice@corp.test"], message(subject))
                acked.append(subject)
        settle_at_primary(standby, primary, acked, timeout=60)
        lines = standby.log_lines()
        in_doubt = frozenset(m.group(1) for line in lines if (m := IN_DOUBT.search(line)))
        counts = count(acked, primary_copies(primary), collections.Counter(), in_doubt)
        found = sum("queue.looked-up:" in line and "found=True" in line for line in lines)
        print(f"faults {fault} {protocol} lookup={lookup} faults={proxy.faults} found={found} {counts.line()}")
        assert proxy.faults == 2
        return counts, lines
    finally:
        standby.kill()
        proxy.close()


@pytest.mark.parametrize("protocol", ["lmtp", "smtp"])
def test_a_lost_reply_to_the_dot_is_looked_up_and_not_sent_again(
    tmp_path: Path, primary: Primary, protocol: str
) -> None:
    counts, lines = run(tmp_path, primary, protocol, "drop-after-dot", lookup=True)
    counts.check()
    assert counts.dup == 0
    assert sum("queue.looked-up:" in line and "found=True" in line for line in lines) == 2


def test_without_the_lookup_a_lost_reply_is_the_documented_duplicate(tmp_path: Path, primary: Primary) -> None:
    counts, _ = run(tmp_path, primary, "lmtp", "drop-after-dot", lookup=False)
    counts.check()  # every duplicate is one logged "no reply to the end of data"
    assert counts.dup == 2


@pytest.mark.parametrize("protocol", ["lmtp", "smtp"])
def test_a_hang_in_the_data_is_sent_again_once(tmp_path: Path, primary: Primary, protocol: str) -> None:
    counts, lines = run(tmp_path, primary, protocol, "hang-mid-data", lookup=True)
    counts.check()
    assert counts.dup == 0
    assert sum("queue.looked-up:" in line and "found=False" in line for line in lines) == 2
