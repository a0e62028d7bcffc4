"""kill -9 under load, many times, seeded: is every acknowledged message in the primary mailbox once?

Sets up a private Postfix + Dovecot primary and mailstandby relaying to it (LMTP into Dovecot by
default, `--protocol smtp` for Postfix) with the sync's IMAP access configured, so deliveries in
doubt are looked up in the primary INBOX before they are sent again (docs/mail-path.md). Then:

1. relay: `--messages` messages from 4 SMTP clients; the standby is killed (SIGKILL) and restarted
   `--iterations` minus `--sync-kills` times, each after a seeded random number of further
   acknowledgements (inbound sessions in DATA, deliveries in flight to the primary);
2. failback sync: `--sync-kills` times, an outage is declared by hand, `--outage-messages` are
   filed in the standby mailbox, the failback is declared and the standby is killed a seeded
   random moment into its failback sync, restarted (the sync resumes) and waited for NORMAL.

Counts, per queue id in our Received header (tests/support/faults.py): `lost` acknowledged messages
in no mailbox, `dup` extra copies not explained by a client that sent again after never seeing its
250 (the inbound RFC 1047 window, reported as `resent_dup`). The last line is
`iterations=<n> acked=<n> lost=<n> dup=<n>`; the exit status is 1 unless lost = dup = 0.

    sudo PYTHONPATH=$PWD/src python bench/crash.py [--iterations 20] [--seed 14] [--keep]
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import BenchError, run_in_workdir
from tests.support.faults import (
    ADMIN_PASSWORD,
    Counts,
    Load,
    count,
    fast_standby,
    kill_during,
    message,
    primary_copies,
    settle_at_primary,
    standby_subjects,
    wait_for,
)
from tests.support.primary import Primary, PrimaryError
from tests.support.standby import Standby

USERS = {"alice@corp.test": "pw-alice", "bob@corp.test": "pw-bob", "carol@corp.test": "pw-carol"}


def relay_phase(args: argparse.Namespace, standby: Standby, primary: Primary, rng: random.Random) -> tuple[int, Counts]:
    load = Load(standby, args.messages, prefix="relay", timeout=args.timeout).start()
    kills = kill_during(standby, load, rng, args.iterations - args.sync_kills, most=max(2, args.messages // 40))
    load.join(args.timeout)
    settle_at_primary(standby, primary, load.acked, timeout=args.timeout)
    return kills, count(load.acked, primary_copies(primary), load.resent)


def admin(standby: Standby, *command: str) -> None:
    done = standby.cli(*command, "--reason", "bench/crash.py", password=ADMIN_PASSWORD)
    if done.returncode != 0:
        raise BenchError(f"mailstandby {' '.join(command)}: {done.stderr.strip()}")


def mode_is(standby: Standby, mode: str) -> bool:
    return standby.failover_state()["mode"] == mode


def sync_phase(
    args: argparse.Namespace, standby: Standby, primary: Primary, rng: random.Random, acked: list[str]
) -> int:
    """Outages whose failback sync is killed part-way; returns the kills done."""
    import smtplib

    kills = 0
    for round_ in range(args.sync_kills):
        admin(standby, "failover")
        wait_for("failed-over", lambda: mode_is(standby, "failed-over"), 30, standby.log)
        subjects = [f"outage{round_}-{n}" for n in range(args.outage_messages)]
        with smtplib.SMTP(*standby.address, timeout=30) as client:
            for subject in subjects:
                client.sendmail("load@ext.test", ["alice@corp.test"], message(subject))
                acked.append(subject)
        wait_for(
            "outage mail in the standby mailbox",
            lambda subjects=subjects: all(standby_subjects(standby)[s] for s in subjects),
            args.timeout,
            standby.log,
        )
        admin(standby, "failback")
        time.sleep(rng.uniform(0.0, args.sync_kill_within))  # the seeded kill point inside the sync
        standby.kill()
        kills += 1
        standby.start()
        wait_for("NORMAL after the resumed sync", lambda: mode_is(standby, "normal"), args.timeout, standby.log)
    return kills


def run(args: argparse.Namespace, root: Path) -> int:
    rng = random.Random(args.seed)
    with Primary(root / "primary", users=dict(USERS)) as primary:
        standby = fast_standby(root / "standby", primary, protocol=args.protocol, extra={"node": {"log_level": "INFO"}})
        standby.start()
        try:
            standby.add_admin("admin", ADMIN_PASSWORD)
            started = time.monotonic()
            kills, relay = relay_phase(args, standby, primary, rng)
            outage: list[str] = []
            kills += sync_phase(args, standby, primary, rng, outage)
            settle_at_primary(standby, primary, outage, timeout=args.timeout)
            synced = count(outage, primary_copies(primary), collections.Counter())
            found = sum("queue.looked-up:" in ln and "found=True" in ln for ln in standby.log_lines())
        finally:
            standby.kill()
    lost = relay.lost + synced.lost
    dup = relay.dup - relay.explained + synced.dup - synced.explained
    print(f"# seed={args.seed} protocol={args.protocol} seconds={time.monotonic() - started:.0f}")
    print(f"# relay: kills={kills - args.sync_kills} {relay.line()} found_after_crash={found}")
    print(f"# failback sync: kills={args.sync_kills} {synced.line()}")
    print(f"# resent_dup={relay.explained} (clients that never saw a 250 and sent again)")
    for problem in relay.missing[:5] + relay.unexplained[:5] + synced.missing[:5] + synced.unexplained[:5]:
        print(f"# problem: {problem}")
    print(f"iterations={kills} acked={relay.acked + synced.acked} lost={lost} dup={dup}")
    if lost or dup:
        raise BenchError(f"lost={lost} dup={dup}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=20, help="kill -9 in all (default 20)")
    p.add_argument("--sync-kills", type=int, default=4, help="of which during a failback sync (default 4)")
    p.add_argument("--messages", type=int, default=2000, help="messages sent during the relay kills")
    p.add_argument("--outage-messages", type=int, default=200, help="messages filed per outage")
    p.add_argument("--sync-kill-within", type=float, default=1.0, help="kill within this many s of failback")
    p.add_argument("--protocol", choices=["lmtp", "smtp"], default="lmtp", help="to the primary")
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--timeout", type=float, default=600.0, help="bound on each wait (s)")
    p.add_argument("--tmpdir", help="where the work directory goes")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args()
    if not 0 <= args.sync_kills <= args.iterations:
        p.error("--sync-kills must be between 0 and --iterations")
    return run_in_workdir(args, "msb-crash-", run, setup_errors=(PrimaryError,), root_for="Postfix and Dovecot")


if __name__ == "__main__":
    sys.exit(main())
