#!/usr/bin/env python3
"""Three mailstandby nodes on one PostgreSQL store: mail through all of them, the leader killed twice.

Sets up what it needs: a private PostgreSQL cluster (initdb on a free port), a private Postfix +
Dovecot primary, three nodes on 127.0.0.1 (ephemeral ports) in automatic failover control. Then:

1. `--messages` messages streamed through the three nodes at once (`--sessions` SMTP senders in
   turn on each node); `msgs_s` is what the cluster acknowledged per second, the primary up;
2. Postfix stops; once the outage is recorded the leader is killed (SIGKILL); `takeover_s` is the
   longer of this and the next takeover: from the kill until another node leads in a newer term;
3. outage mail through the surviving nodes, into the standby mailboxes;
4. Postfix returns; once the failback sync started the leader is killed again; the last node
   finishes the failback;
5. every message acknowledged is looked up in the primary: `lost` (missing) and `dup` (copies beyond
   one) must both be 0.

The last line is `nodes=3 msgs_s=<n> takeover_s=<s> lost=<n> dup=<n>`.

    sudo PYTHONPATH=$PWD/src python bench/cluster.py [--messages 600] [--sessions 6] [--keep]
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.database import query_dicts  # noqa: E402
from tests.support.postgres import PostgresCluster  # noqa: E402
from tests.support.primary import Primary  # noqa: E402
from tests.support.standby import Standby  # noqa: E402
from tests.wire.conftest import PRIMARY_ALIASES, PRIMARY_USERS  # noqa: E402
from tests.wire.test_failover import FAST, send, subjects_at_primary  # noqa: E402

CLUSTER = {"lease": 6.0, "renew_interval": 1.5, "follow_interval": 0.5}
WAIT = 120.0


def make_nodes(root: Path, primary: Primary, url: str) -> list[Standby]:
    secret = root / "master.pw"
    secret.write_text(primary.master_password + "\n")
    sync = {
        "imap_host": primary.host,
        "imap_port": primary.imap_port,
        "imap_tls": "none",
        "master_user": primary.master_user,
        "password_file": str(secret),
    }
    return [
        Standby(
            root / f"n{n}",
            primary_port=primary.smtp_port,
            store={"url": url},
            node={"id": f"n{n}"},
            cluster=dict(CLUSTER),
            failover={"control": "automatic"},
            monitor=dict(FAST),
            sync=sync,
        )
        for n in (1, 2, 3)
    ]


def leader(alive: list[Standby], after: int) -> tuple[Standby, int]:
    by_name = {n.root.name: n for n in alive}
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        (row,) = query_dicts(alive[0].data_dir, "SELECT term, node FROM cluster_leader", url=alive[0].store_url)
        if row["term"] > after and row["node"] in by_name:
            return by_name[row["node"]], row["term"]
        time.sleep(0.05)
    raise SystemExit(f"no node leads after term {after}")


def stream(nodes: list[Standby], subjects: list[str], sessions: int) -> float:
    """Send every subject (round robin over the nodes, `sessions` at once); the seconds it took."""
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(sessions) as pool:
        list(pool.map(lambda i: send(nodes[i % len(nodes)], ["alice@corp.test"], subjects[i]), range(len(subjects))))
    return time.monotonic() - started


def kill_leader(alive: list[Standby], term: int) -> tuple[Standby, int, float]:
    current, _ = leader(alive, term - 1)
    killed_at = time.monotonic()
    current.kill()
    alive.remove(current)
    nxt, new_term = leader(alive, term)
    return nxt, new_term, time.monotonic() - killed_at


def run(root: Path, messages: int, sessions: int) -> str:
    pg = PostgresCluster()  # its own directory under /tmp, which the postgres user can reach
    primary = Primary(root / "primary", users=dict(PRIMARY_USERS), aliases=dict(PRIMARY_ALIASES))
    nodes: list[Standby] = []
    try:
        pg.start()
        primary.start()
        nodes = make_nodes(root, primary, pg.fresh_database())
        for node in nodes:
            node.start()
        alive = list(nodes)
        first, term = leader(alive, 0)
        before = [f"steady {n}" for n in range(messages)]
        msgs_s = messages / stream(alive, before, sessions)
        primary.wait_for_messages("alice@corp.test", messages, WAIT)

        primary.stop_smtp()
        first.wait_until(lambda: first.failover_state()["mode"] == "failed-over", WAIT, "the failover")
        second, term, takeover1 = kill_leader(alive, term)
        outage = [f"outage {n}" for n in range(messages // 4)]
        stream(alive, outage, sessions)

        primary.start_smtp()
        second.wait_until(
            lambda: any(
                e["term"] == term
                for e in query_dicts(second.data_dir, "SELECT term FROM leader_log", url=second.store_url)
            ),
            WAIT,
            "the failback sync",
        )
        third, term, takeover2 = kill_leader(alive, term)
        third.wait_until(lambda: third.failover_state()["mode"] == "normal", WAIT, "the failback")

        counts = collections.Counter(subjects_at_primary(primary, "alice@corp.test"))
        sent = before + outage
        lost = sum(1 for s in sent if counts[s] == 0)
        dup = sum(counts[s] - 1 for s in sent if counts[s] > 1)
        takeover = max(takeover1, takeover2)
        return f"nodes=3 msgs_s={msgs_s:.0f} takeover_s={takeover:.1f} lost={lost} dup={dup}"
    finally:
        for node in nodes:
            node.kill()
        primary.close()
        pg.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=600, help="messages streamed with the primary up")
    ap.add_argument("--sessions", type=int, default=6, help="SMTP senders at once")
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="msb-cluster-", dir="/tmp"))
    try:
        line = run(root, args.messages, args.sessions)
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(line, flush=True)
    return 0 if line.endswith("lost=0 dup=0") else 1


if __name__ == "__main__":
    sys.exit(main())
