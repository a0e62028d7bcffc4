#!/usr/bin/env python3
"""Failback sync throughput into Dovecot: mailstandby's sync engine vs mbsync, same messages, same run.

Usage (as root: Dovecot's master needs it; run with the venv's python so that
`python -m mailstandby` works):

    /tmp/venv/bin/python bench/sync.py                               # 5,000 msgs over 4 users, best of 3
    /tmp/venv/bin/python bench/sync.py --messages 1000 --repeat 1    # quick run

The last line printed is `ratio=<mailstandby msgs/s / mbsync msgs/s>` (2 decimals;
higher is better for mailstandby, the goal is > 1); the two lines before it give
each side's best round. Exit status 1 when a copy is incomplete or wrong (a
message missing, or its count off), 2 on a setup problem.

What is measured
----------------
`--messages` generated messages (the mix of bench/imap_fetch.py: 1-50 KiB,
plain and multipart, some \\Seen/\\Flagged) are filed as outage mail in the
standby INBOXes of `--users` users (round-robin), through the mailbox store
(`SQLiteMailboxStore.append`, journaled = 0), as the standby files mail during
an outage. Then, per round, both tools copy all of them into the same private
Dovecot (tests/support/primary.py: maildir, `mail_fsync = never`):

* mailstandby: `SyncEngine.run()` in this process (`[sync]` concurrency =
  `--users`: one IMAP connection per user, MULTIAPPEND + LITERAL+ batches of
  `--batch` messages), logging in with Dovecot's master user (`user*admin`), into
  the user of the same name; the time is that of `run()` (reading the store,
  planning, APPENDing, recording every message durably in SQLite);
* mbsync (isync): one process per user, all at once, each copying that user's
  messages into Dovecot user `mb-<user>` (master login as well), `Sync Pull
  New`, `Create Near`; the time is from spawning the first process to the exit
  of the last. Its source (`--mbsync-source`) is by default the kind of place
  mailstandby's engine reads from, files on the local disk: a Maildir per user
  (`MaildirStore`), written beforehand with the same messages, flags (in the
  file names) and dates (the files' times), untimed. Other sources, each a flag:
  `dovecot`, Dovecot accounts `src-<user>` in the same Dovecot holding the same
  messages (IMAP to IMAP, mbsync reading through a server), or `standby`, a
  running Standby's IMAP server on the same store (the path a phone takes).

Before every round both targets are emptied (Dovecot is stopped, the target
users' maildirs removed, Dovecot started) and the sync records are cleared, so every
round copies everything. Rounds alternate which tool goes first; the best round
of each is reported. Each round checks that every target INBOX holds its
users' message count.

Everything lives in one temp dir, removed at the end unless --keep; servers are
stopped on exit, error or Ctrl-C (SIGTERM too).
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.harness import BenchError, run_in_workdir  # noqa: E402
from bench.imap_fetch import make_messages  # noqa: E402
from tests.support.database import change  # noqa: E402
from tests.support.primary import Primary, PrimaryError  # noqa: E402
from tests.support.standby import Standby  # noqa: E402

from mailstandby.auth import hash_password  # noqa: E402
from mailstandby.config import PrimarySettings, StoreSettings, SyncSettings  # noqa: E402
from mailstandby.store.sqlite import SQLiteStore  # noqa: E402
from mailstandby.store.sqlite_mailbox import SQLiteMailboxStore  # noqa: E402
from mailstandby.store.sqlite_sync import SQLiteSyncRecords  # noqa: E402
from mailstandby.sync.engine import SyncEngine  # noqa: E402
from mailstandby.sync.records import RunLock  # noqa: E402

HOST = "127.0.0.1"
PASSWORD = "bench-pw-long"
SYSTEM_FLAGS = {"\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=5000, help="messages in all (default 5000)")
    p.add_argument("--users", type=int, default=4, help="users the messages are spread over (default 4)")
    p.add_argument("--batch", type=int, default=64, help="mailstandby: messages per MULTIAPPEND (default 64)")
    p.add_argument(
        "--no-multiappend", action="store_true", help="mailstandby: one APPEND per message, pipelined (LITERAL+)"
    )
    p.add_argument("--repeat", type=int, default=3, help="rounds; the best of each side counts (default 3)")
    p.add_argument(
        "--mbsync-source",
        choices=["maildir", "dovecot", "standby"],
        default="maildir",
        help="where mbsync copies from: a local Maildir per user holding the same messages (default, like "
        "mailstandby's local store), Dovecot accounts holding them, or the Standby's IMAP",
    )
    p.add_argument("--seed", type=int, default=1, help="message generator seed")
    p.add_argument("--tmpdir", type=Path, default=None, help="where the temp dir goes")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    return p.parse_args(argv)


async def file_outage(data_dir: Path, users: list[str], messages: list[tuple[bytes, tuple[str, ...]]]) -> None:
    store = SQLiteStore(data_dir, StoreSettings())
    await store.open()
    try:
        mailboxes = SQLiteMailboxStore(store)

        async def one(n: int, user: str) -> None:
            await mailboxes.ensure_user(user)
            await mailboxes.set_password_hash(user, hash_password(PASSWORD))
            for i in range(n, len(messages), len(users)):
                raw, flags = messages[i]
                system = frozenset(f for f in flags if f in SYSTEM_FLAGS)
                await mailboxes.append(user, "INBOX", raw, system, internal_date=1_740_000_000 + i)

        await asyncio.gather(*(one(n, u) for n, u in enumerate(users)))
    finally:
        await store.close()


def counts(primary: Primary, users: list[str]) -> dict[str, int]:
    out = {}
    for user in users:
        client = primary.imap_login(user, as_master=True)
        try:
            typ, data = client.select("INBOX", readonly=True)
            out[user] = int(data[0] or b"0") if typ == "OK" else 0
        finally:
            client.logout()
    return out


def reset_targets(primary: Primary, data_dir: Path, targets: list[str]) -> None:
    """Empty the target users' mailboxes (their maildirs go; a source account stays) and the sync records."""
    primary.stop_imap()
    for user in targets:
        local, domain = user.split("@")
        shutil.rmtree(primary.mail_dir / domain / local, ignore_errors=True)
    primary.start_imap()
    change(data_dir, "DELETE FROM sync_items")


def load_source(primary: Primary, users: list[str], messages: list[tuple[bytes, tuple[str, ...]]]) -> None:
    """`--mbsync-source dovecot`: the same messages in Dovecot accounts `src-<user>` (untimed)."""
    for n, user in enumerate(users):
        client = primary.imap_login(f"src-{user}", as_master=True)
        try:
            for i in range(n, len(messages), len(users)):
                raw, flags = messages[i]
                system = " ".join(f for f in flags if f in SYSTEM_FLAGS)
                typ, data = client.append("INBOX", f"({system})", imaplib.Time2Internaldate(1_740_000_000 + i), raw)
                if typ != "OK":
                    raise BenchError(f"loading the mbsync source: {typ} {data!r}")
        finally:
            client.logout()


MAILDIR_FLAGS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}


def write_maildirs(root: Path, users: list[str], messages: list[tuple[bytes, tuple[str, ...]]]) -> None:
    """`--mbsync-source maildir`: the same messages in a Maildir per user (flags in the names, dates as mtimes)."""
    for n, user in enumerate(users):
        inbox = root / "maildir" / user / "INBOX"
        for sub in ("cur", "new", "tmp"):
            (inbox / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n, len(messages), len(users)):
            raw, flags = messages[i]
            letters = "".join(sorted(MAILDIR_FLAGS[f] for f in flags if f in MAILDIR_FLAGS))
            path = inbox / "cur" / f"{1_740_000_000 + i}.M{i}P1.bench:2,{letters}"
            path.write_bytes(raw)
            os.utime(path, (1_740_000_000 + i, 1_740_000_000 + i))


def time_mailstandby(primary: Primary, data_dir: Path, users: list[str], batch: int, multiappend: bool) -> float:
    settings = SyncSettings(
        imap_host=HOST,
        imap_port=primary.imap_port,
        imap_tls="none",
        master_user=primary.master_user,
        concurrency=len(users),
        batch_messages=batch,
        multiappend=multiappend,
    )

    async def go() -> float:
        records = SQLiteSyncRecords(data_dir)
        engine = SyncEngine(records, RunLock(data_dir), settings, PrimarySettings(), password=primary.master_password)
        try:
            await engine.status()  # open the records outside the timed part, as a running service has them
            started = time.perf_counter()
            report = await engine.run(users)
            seconds = time.perf_counter() - started
        finally:
            await engine.close()
        if not report.complete or report.failures:
            raise BenchError(f"mailstandby sync incomplete: {report}")
        return seconds

    return asyncio.run(go())


def mbsync_config(root: Path, source: str, standby: Standby, primary: Primary, user: str) -> Path:
    state = root / "mbsync-state" / user
    state.mkdir(parents=True, exist_ok=True)
    rc = root / f"mbsyncrc-{user}"
    if source == "maildir":
        maildir = root / "maildir" / user
        far = f"MaildirStore source\nPath {maildir}/\nInbox {maildir}/INBOX\n\n"
    else:
        if source == "standby":
            login = f"Port {standby.listeners['imap']}\nUser {user}\nPass {PASSWORD}\n"
        else:
            login = f"Port {primary.imap_port}\nUser src-{user}*{primary.master_user}\nPass {primary.master_password}\n"
        far = (
            f"IMAPAccount standby\nHost {HOST}\n{login}SSLType None\nAuthMechs LOGIN\n\n"
            "IMAPStore source\nAccount standby\n\n"
        )
    rc.write_text(
        far + f"IMAPAccount dovecot\nHost {HOST}\nPort {primary.imap_port}\nUser mb-{user}*{primary.master_user}\n"
        f"Pass {primary.master_password}\nSSLType None\nAuthMechs LOGIN\n\n"
        "IMAPStore dovecot-remote\nAccount dovecot\n\n"
        "Channel copy\nFar :source:\nNear :dovecot-remote:\nPatterns INBOX\nCreate Near\n"
        f"Sync Pull New\nSyncState {state}/\n"
    )
    return rc


def time_mbsync(root: Path, source: str, standby: Standby, primary: Primary, users: list[str]) -> float:
    shutil.rmtree(root / "mbsync-state", ignore_errors=True)
    configs = [mbsync_config(root, source, standby, primary, u) for u in users]
    env = {"HOME": str(root), "PATH": "/usr/bin:/bin"}
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            ["mbsync", "-q", "-c", str(rc), "copy"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        for rc in configs
    ]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    seconds = time.perf_counter() - started
    for p, out in zip(procs, outputs, strict=True):
        if p.returncode != 0:
            raise BenchError(f"mbsync exited with {p.returncode}: {out.decode(errors='replace')[-2000:]}")
    return seconds


def run(args: argparse.Namespace, root: Path) -> int:
    users = [f"user{n}@corp.test" for n in range(args.users)]
    messages = make_messages(args.messages, args.seed)
    size = sum(len(raw) for raw, _ in messages)
    per_user = {u: len(range(n, args.messages, args.users)) for n, u in enumerate(users)}
    print(f"# {args.messages} messages ({size / 2**20:.1f} MiB) over {args.users} users", flush=True)
    accounts = users + [f"mb-{u}" for u in users] + [f"src-{u}" for u in users]
    primary = Primary(root / "primary", users=dict.fromkeys(accounts, PASSWORD))
    csv = root / "users.csv"
    csv.write_text("address,aliases\n" + "".join(f"{u},\n" for u in users))
    standby = Standby(
        root / "standby",
        primary_port=1,
        imap={"listen": ["127.0.0.1:0"], "allow_plaintext_auth_on_loopback": True},
        journal={"enabled": False},
        directory={"csv": str(csv)},
    )
    best: dict[str, float] = {}
    try:
        primary.start()
        asyncio.run(file_outage(standby.data_dir, users, messages))
        if args.mbsync_source == "dovecot":
            load_source(primary, users, messages)
        elif args.mbsync_source == "maildir":
            write_maildirs(root, users, messages)
        standby.start()
        data_dir = standby.data_dir
        order = ["mailstandby", "mbsync"]
        for n in range(args.repeat):
            for name in order if n % 2 == 0 else order[::-1]:
                reset_targets(primary, data_dir, users + [f"mb-{u}" for u in users])
                if name == "mailstandby":
                    seconds = time_mailstandby(primary, data_dir, users, args.batch, not args.no_multiappend)
                    got = counts(primary, users)
                    want = per_user
                else:
                    seconds = time_mbsync(root, args.mbsync_source, standby, primary, users)
                    got = counts(primary, [f"mb-{u}" for u in users])
                    want = {f"mb-{u}": c for u, c in per_user.items()}
                if got != want:
                    raise BenchError(f"{name}: target counts {got}, want {want}")
                rate = args.messages / seconds
                best[name] = max(best.get(name, 0.0), rate)
                print(f"  round {n + 1}/{args.repeat} {name}: {seconds:.3f} s = {rate:.0f} msgs/s", flush=True)
    finally:
        try:
            standby.kill()
        finally:
            primary.close()
    for name in ("mailstandby", "mbsync"):
        print(
            f"{name}: {best[name]:.0f} msgs/s ({args.messages} messages, {args.users} users, best of {args.repeat}"
            + (f", from {args.mbsync_source}" if name == "mbsync" else "")
            + ")"
        )
    print(f"ratio={best['mailstandby'] / best['mbsync']:.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    errors = (PrimaryError, AssertionError, subprocess.SubprocessError, OSError)
    return run_in_workdir(
        parse_args(argv), "mailstandby-syncbench-", run, setup_errors=errors, root_for="Dovecot's master needs it"
    )


if __name__ == "__main__":
    sys.exit(main())
