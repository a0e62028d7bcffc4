#!/usr/bin/env python3
"""Memory per idle connection: mailstandby beside Dovecot (IMAP, POP3) and Postfix (SMTP), measured alike.

Usage (as root: Dovecot's master needs it, and reading other processes' memory; with the venv's python):

    .venv/bin/python bench/idle_memory.py                  # 90 (Dovecot, Postfix) and 450 (mailstandby) each
    .venv/bin/python bench/idle_memory.py --connections 20 --standby-connections 100

For each server and protocol: the server's memory is read, N connections are opened and
brought to the idle state (IMAP: logged in, INBOX selected, in IDLE; POP3: logged in; SMTP: after EHLO),
the memory is read again once every one of them has had its answer, and the difference is divided by the
number of connections. They stay open while the next protocol is measured, and are closed only when the
server is done, so that no protocol's figure is memory another one freed. Memory is the proportional set size (PSS, from
/proc/PID/smaps_rollup) summed over the server's processes: mailstandby is one process; Dovecot and
Postfix run a process (or two) per connection, whose shared pages PSS counts once, not once per process.
Connections are spread over source addresses 127.0.0.2 and up and over three users, so that no per-client
or per-user limit of either server refuses them. N is `--connections` (90) for Dovecot and Postfix, under
their default process limit of 100, and `--standby-connections` (450) for mailstandby, under its default
`max_connections` of 500: a Python process first reuses memory it freed earlier (start-up leaves some),
which a few dozen connections fit in; more connections measure what each one really adds.

Printed: one line per server and protocol, then last
`connections=N standby_connections=M imap_kib=… dovecot_imap_kib=… pop3_kib=… dovecot_pop3_kib=… smtp_kib=…
postfix_smtp_kib=…` (one line)
(KiB per idle connection). Exit status 2 on a setup problem.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.harness import BenchError, run_in_workdir  # noqa: E402
from tests.support.primary import Primary, PrimaryError, _pids_using  # noqa: E402
from tests.support.standby import Standby  # noqa: E402

HOST = "127.0.0.1"
USERS = {f"{name}@corp.test": f"idle-bench-{name}-pw" for name in ("alice", "bob", "carol")}
PER_ADDRESS = 5  # connections per (user, source address): under both servers' per-user-and-client caps
TIMEOUT = 30.0
MAX_CONNECTIONS = PER_ADDRESS * len(USERS) * 250  # source addresses 127.0.0.2 to 127.0.0.251


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total


class Client:
    """One raw connection: send a line, read until a line starting with `until`."""

    def __init__(self, port: int, source: str) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=TIMEOUT, source_address=(source, 0))
        self.buf = b""

    def read_until(self, until: bytes) -> None:
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                if line.startswith(until):
                    return
                if line.startswith((b"-ERR", b"a NO", b"a BAD", b"4", b"5")) and not until.startswith(line[:1]):
                    raise BenchError(f"refused: {line!r}")
            chunk = self.sock.recv(4096)
            if not chunk:
                raise BenchError(f"closed while waiting for {until!r}")
            self.buf += chunk

    def say(self, line: str, until: bytes) -> None:
        self.sock.sendall(line.encode() + b"\r\n")
        self.read_until(until)


def imap_idle(c: Client, user: str) -> None:
    c.read_until(b"* OK")
    c.say(f'a LOGIN "{user}" "{USERS[user]}"', b"a OK")
    c.say("b SELECT INBOX", b"b OK")
    c.say("c IDLE", b"+ ")


def pop3_logged_in(c: Client, user: str) -> None:
    c.read_until(b"+OK")
    c.say(f"USER {user}", b"+OK")
    c.say(f"PASS {USERS[user]}", b"+OK")


def smtp_after_ehlo(c: Client, user: str) -> None:
    c.read_until(b"220 ")
    c.say("EHLO idle.example.test", b"250 ")


@contextlib.contextmanager
def idle_connections(port: int, count: int, bring: Callable[[Client, str], None]) -> Iterator[None]:
    clients: list[Client] = []
    try:
        for i in range(count):
            combo = i // PER_ADDRESS
            user = list(USERS)[combo % len(USERS)]
            source = f"127.0.0.{2 + combo // len(USERS)}"
            clients.append(Client(port, source))
            bring(clients[-1], user)
        yield
    finally:
        for c in clients:
            c.sock.close()


PROTOCOLS: dict[str, Callable[[Client, str], None]] = {
    "imap": imap_idle,
    "pop3": pop3_logged_in,
    "smtp": smtp_after_ehlo,
}


def per_connection(
    held: contextlib.ExitStack, port: int, count: int, protocol: str, pids: Callable[[], list[int]]
) -> float:
    """KiB each of `count` new idle connections adds; they stay open (in `held`) until the server is done."""
    before = pss_kib(pids())
    held.enter_context(idle_connections(port, count, PROTOCOLS[protocol]))
    return (pss_kib(pids()) - before) / count


def run(args: argparse.Namespace, root: Path) -> int:
    print(
        f"# idle connections per protocol: {args.connections} (Dovecot, Postfix), {args.standby_connections} "
        f"(mailstandby); {os.cpu_count()} CPUs",
        flush=True,
    )
    primary = Primary(root / "primary", users=dict(USERS))
    loopback = {"listen": [f"{HOST}:0"], "allow_plaintext_auth_on_loopback": True}
    overrides: dict[str, dict[str, object]] = {
        "imap": dict(loopback),
        "pop3": dict(loopback),
        "node": {"log_level": "WARNING"},
        "journal": {"enabled": False},
    }
    standby = Standby(root / "standby", primary_port=free_port(), **overrides)  # type: ignore[arg-type]
    figures: dict[str, float] = {}
    try:
        primary.start()
        for user, password in USERS.items():
            standby.set_password(user, password)
        standby.start()
        assert standby.proc is not None
        ours = [standby.proc.pid]
        theirs = {"imap": primary.imap_port, "pop3": primary.pop3_port, "smtp": primary.smtp_port}
        names = {"imap": "dovecot_imap", "pop3": "dovecot_pop3", "smtp": "postfix_smtp"}
        with contextlib.ExitStack() as held:  # nothing closed until every protocol is measured: no memory reused
            for protocol in PROTOCOLS:
                kib = per_connection(
                    held, standby.listeners[protocol], args.standby_connections, protocol, lambda: ours
                )
                figures[f"{protocol}_kib"] = kib
                print(f"mailstandby {protocol}: {kib:.1f} KiB per idle connection", flush=True)
        with contextlib.ExitStack() as held:
            for protocol in PROTOCOLS:
                kib = per_connection(
                    held, theirs[protocol], args.connections, protocol, lambda: _pids_using(primary.base)
                )
                figures[f"{names[protocol]}_kib"] = kib
                print(f"{names[protocol].replace('_', ' ')}: {kib:.0f} KiB per idle connection", flush=True)
    finally:
        try:
            standby.kill()
        finally:
            primary.close()
    counts = f"connections={args.connections} standby_connections={args.standby_connections}"
    print(counts + "".join(f" {k}={v:.0f}" for k, v in figures.items()))
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Memory per idle IMAP/POP3/SMTP connection: mailstandby vs Dovecot and Postfix.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--connections", "-n", type=int, default=90, help="idle connections per protocol, Dovecot/Postfix")
    p.add_argument("--standby-connections", type=int, default=450, help="idle connections per protocol, mailstandby")
    p.add_argument("--tmpdir", type=Path, help="parent of the bench's temp dir (default: the system's)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, stores)")
    args = p.parse_args(argv)
    if not 1 <= args.connections <= MAX_CONNECTIONS or not 1 <= args.standby_connections <= MAX_CONNECTIONS:
        p.error(f"--connections, --standby-connections: 1 to {MAX_CONNECTIONS}")
    return args


def main(argv: list[str] | None = None) -> int:
    errors = (PrimaryError, AssertionError, subprocess.SubprocessError, OSError, ConnectionError)
    return run_in_workdir(
        parse_args(argv), "mailstandby-idlemem-", run, setup_errors=errors, root_for="Dovecot's master needs it"
    )


if __name__ == "__main__":
    sys.exit(main())
