#!/usr/bin/env python3
"""What the journal milter costs the primary: Postfix's acceptance rate without and with mailstandby's milter.

Usage (as root: Postfix's master needs it; run with the venv's python so that
`python -m mailstandby` works):

    /tmp/venv/bin/python bench/milter.py                       # 2,000 x 5 KiB, 10 sessions
    /tmp/venv/bin/python bench/milter.py --messages 500 --sessions 4 --size 1024

The last line printed is `ratio=<msgs/s with the milter / msgs/s without>` (2
decimals; 1.00 means the milter costs nothing); the lines before it give each
run's rate and the number of journal copies filed. Exit status 1 when a message
was refused or a journal copy is missing, 2 on a setup problem.

What is measured: `smtp-source` against a private Postfix (tests/support/primary.py)
that delivers to Dovecot over LMTP, first with no milter, then with
`smtpd_milters` pointing at a mailstandby subprocess in journal mode (each
message copied into the recipient's standby INBOX, group-committed, before
Postfix gets its answer). Wall clock from start to exit of smtp-source: every
message got its 250 from Postfix, which in the second run means its journal copy
is on disk.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.database import query  # noqa: E402
from tests.support.primary import Primary  # noqa: E402
from tests.support.standby import Standby  # noqa: E402

RECIPIENT = "alice@corp.test"


def smtp_source(primary: Primary, args: argparse.Namespace) -> float:
    argv = ["smtp-source", "-s", str(args.sessions), "-m", str(args.messages), "-l", str(args.size)]
    argv += ["-f", "sender@ext.test", "-t", RECIPIENT, "-M", "client.ext.test", "-4"]
    argv.append(f"{primary.host}:{primary.smtp_port}")
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=args.timeout, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0 or proc.stdout.strip() or proc.stderr.strip():
        raise SystemExit(f"bench: smtp-source failed (rc={proc.returncode}): {(proc.stdout + proc.stderr)[-2000:]}")
    return seconds


def journal_copies(standby: Standby) -> int:
    [(count,)] = query(standby.data_dir, "SELECT count(*) FROM mail WHERE journaled = 1")
    return int(count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--size", type=int, default=5120)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--mode", default="journal", help="milter mode; `redirect` outside an outage stores nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="msb-bench-milter-") as tmp:
        root = Path(tmp)
        try:
            primary = Primary(root / "primary", users={RECIPIENT: "pw"})
            primary.start()
        except Exception as e:
            print(f"bench: cannot start the primary: {e}", file=sys.stderr)
            return 2
        try:
            bare = smtp_source(primary, args)
            print(f"postfix: {args.messages} msgs in {bare:.2f} s = {args.messages / bare:.0f} msgs/s", flush=True)
            standby = Standby(
                root / "standby",
                primary_port=primary.smtp_port,
                milter={"listen": ["127.0.0.1:0"], "mode": args.mode},
                journal={"enabled": False},
            )
            with standby:
                primary.set_milters(f"inet:127.0.0.1:{standby.listeners['milter']}")
                filtered = smtp_source(primary, args)
                copies = journal_copies(standby)
            print(
                f"postfix+milter: {args.messages} msgs in {filtered:.2f} s = {args.messages / filtered:.0f} msgs/s"
                f" ({copies} journal copies)",
                flush=True,
            )
            if copies != (args.messages if args.mode != "redirect" else 0):
                print(f"bench: FAILED: {copies} journal copies for {args.messages} messages", file=sys.stderr)
                return 1
            print(f"ratio={bare / filtered:.2f}")
            return 0
        finally:
            primary.close()


if __name__ == "__main__":
    sys.exit(main())
