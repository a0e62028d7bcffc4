#!/usr/bin/env python3
"""Several IMAP sessions on one mailbox: protocol violations and commands per second, mailstandby
beside a private Dovecot, the same seeded program on each.

Usage (as root: Dovecot's master needs it; run with the venv's python so that
`python -m mailstandby` works):

    /tmp/venv/bin/python bench/imap_stress.py                        # 5 sessions, 20,000 commands each
    /tmp/venv/bin/python bench/imap_stress.py --commands 2000        # quick run

The program is tests/support/imapstress.py: `--sessions` raw-socket sessions on one new mailbox,
driven from one thread by a seeded RNG through APPEND, STORE (flags and keywords), EXPUNGE, COPY,
MOVE, FETCH, SEARCH, IDLE and NOOP, every untagged response checked against what its session was
told (sequence ranges, UID order, announced keywords, MODSEQ order, no EXPUNGE during FETCH/
STORE/SEARCH), with checkpoints where all sessions must agree and each message is \\Recent in
exactly one. Commands are sent one at a time, each read to its tagged response, so commands per
second measure the round trip of a command on a loaded mailbox (APPEND and STORE commit to disk:
Dovecot here runs with `mail_fsync = never`, mailstandby fsyncs every commit).

Printed: one line per server (`dovecot: ...`, `mailstandby: ...`: commands, seconds, commands/s,
NO answers, checkpoints, violations), the first violations if any, and last
`violations=<both servers together> ratio=<mailstandby commands/s / dovecot commands/s>`.
Exit status 1 when a server committed a violation, 2 on a setup problem.

The servers: tests/support/primary.py `Primary` (Postfix + Dovecot; only its IMAP listener is
used) and tests/support/standby.py `Standby` (SQLite store, journal off). Everything lives in one
temp dir, removed at the end unless --keep; both servers are stopped on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.harness import BenchError, run_in_workdir  # noqa: E402
from tests.support.imapstress import Stats, run_program  # noqa: E402
from tests.support.primary import Primary, PrimaryError  # noqa: E402
from tests.support.standby import Standby  # noqa: E402

HOST = "127.0.0.1"
USER = "alice@corp.test"
PASSWORD = "bench-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="IMAP sessions under a random program: violations and commands/s, mailstandby vs Dovecot.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--sessions", "-s", type=int, default=5, help="concurrent sessions on the mailbox")
    p.add_argument("--commands", "-c", type=int, default=20_000, help="random commands per server")
    p.add_argument("--seed", type=int, default=17, help="seed of the program (the same on both servers)")
    p.add_argument("--tmpdir", type=Path, help="parent of the bench's temp dir (default: the system's)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, stores)")
    args = p.parse_args(argv)
    if not 1 <= args.sessions <= 10:
        p.error("--sessions: 1 to 10 (Dovecot's mail_max_userip_connections)")
    if args.commands < 1:
        p.error("--commands must be >= 1")
    return args


def report(name: str, stats: Stats) -> None:
    print(
        f"{name}: {stats.commands} commands in {stats.elapsed:.1f} s = {stats.commands / stats.elapsed:.0f} commands/s"
        f"  ({stats.refused} NO, {stats.checkpoints} checkpoints, {len(stats.violations)} violations)",
        flush=True,
    )
    for line in stats.violations[:10]:
        print(f"#   {name}: {line}")


def run(args: argparse.Namespace, root: Path) -> int:
    print(
        f"# {args.sessions} sessions, {args.commands} random commands per server, seed {args.seed}; "
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    primary = Primary(root / "primary", users={USER: PASSWORD})
    overrides: dict[str, dict[str, object]] = {
        "imap": {"listen": [f"{HOST}:0"], "allow_plaintext_auth_on_loopback": True},
        "node": {"log_level": "WARNING"},
        "journal": {"enabled": False},
    }
    standby = Standby(root / "standby", primary_port=free_port(), **overrides)  # type: ignore[arg-type]
    results: dict[str, Stats] = {}
    try:
        primary.start()
        standby.set_password(USER, PASSWORD)
        standby.start()
        ports = {"dovecot": primary.imap_port, "mailstandby": standby.listeners["imap"]}
        for name, port in ports.items():
            box = f"Stress-{args.seed}-{time.time_ns()}"
            results[name] = run_program(
                HOST, port, USER, PASSWORD, box=box, seed=args.seed, sessions=args.sessions, steps=args.commands
            )
            report(name, results[name])
    finally:
        try:
            standby.kill()
        finally:
            primary.close()
    violations = sum(len(s.violations) for s in results.values())
    rate = {name: s.commands / s.elapsed for name, s in results.items()}
    print(f"violations={violations} ratio={rate['mailstandby'] / rate['dovecot']:.2f}")
    if violations:
        raise BenchError(f"{violations} protocol violations (listed above)")
    return 0


def main(argv: list[str] | None = None) -> int:
    errors = (PrimaryError, AssertionError, subprocess.SubprocessError, OSError, ConnectionError)
    return run_in_workdir(
        parse_args(argv), "mailstandby-imapstress-", run, setup_errors=errors, root_for="Dovecot's master needs it"
    )


if __name__ == "__main__":
    sys.exit(main())
