"""What the fault-injection runs share (tests/faults, bench/crash.py): load, kill points, counts.

The counts every run prints and checks: `acked` (messages that got a 250),
`lost` (acked and found nowhere), `dup` (extra copies in the mailboxes) and
`explained` (extra copies each matched to the one documented window: a client
that never saw our 250 and sent the message again, RFC 1047 / RELIABILITY D2).
A run passes with lost = 0 and dup = explained.
"""

from __future__ import annotations

import collections
import contextlib
import imaplib
import random
import re
import smtplib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.primary import Primary
from tests.support.standby import Standby

OUR_ID = re.compile(rb"\(mailstandby\)\s+with \S+ id (\w+)")
ADMIN_PASSWORD = "faults-admin-pw"


@dataclass
class Counts:
    acked: int = 0
    lost: int = 0
    dup: int = 0
    explained: int = 0
    missing: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"acked={self.acked} lost={self.lost} dup={self.dup} explained={self.explained}"

    def check(self) -> None:
        assert self.lost == 0, f"{self.line()}: lost e.g. {self.missing[:5]}"
        assert self.dup == self.explained, f"{self.line()}: unexplained duplicates {self.unexplained[:5]}"


Copies = collections.Counter[tuple[str, str]]  # (subject, our queue id) -> copies in the mailbox


def count(
    acked: list[str], copies: Copies, resent: collections.Counter[str], in_doubt: frozenset[str] = frozenset()
) -> Counts:
    """Lost and duplicate messages among `acked`.

    Two copies with one queue id are one acceptance delivered twice (a relay duplicate): explained
    only when that queue id is in `in_doubt` (logged "no reply to the end of data" and not looked up).
    Copies with different queue ids are the client's tries: explained up to the tries it made again."""
    c = Counts(acked=len(acked))
    wanted = set(acked) | set(resent)
    per_subject: collections.Counter[str] = collections.Counter()
    for (subject, qid), n in copies.items():
        if subject not in wanted:
            continue  # another run's mail in the same mailbox
        per_subject[subject] += 1
        if n > 1:
            c.dup += n - 1
            if qid in in_doubt:
                c.explained += n - 1
            else:
                c.unexplained.append(f"{subject} (id {qid}) x{n}")
    for subject, ids in per_subject.items():
        if ids > 1:
            c.dup += ids - 1
            c.explained += min(ids - 1, resent[subject])
            if ids - 1 > resent[subject]:
                c.unexplained.append(f"{subject}: {ids} acceptances, {resent[subject]} resends")
    c.missing = [s for s in acked if per_subject[s] == 0]
    c.lost = len(c.missing)
    return c


def message(subject: str, to: str = "alice@corp.test") -> bytes:
    return f"Subject: {subject}\r\nMessage-ID: <{subject}@ext.test>\r\nTo: <{to}>\r\n\r\nbody of {subject}\r\n".encode()


class Sender(threading.Thread):
    """Sends `count` messages, reconnecting to the standby's current port until each got a 250.

    A message whose first try failed after MAIL (no 250 seen) goes into `resent`: the standby may have
    stored that try, so a second copy of it is the documented window, not a fault."""

    def __init__(self, name: str, standby: Standby, count: int, deadline: float, to: str = "alice@corp.test") -> None:
        super().__init__(daemon=True)
        self.prefix, self.standby, self.count, self.deadline, self.to = name, standby, count, deadline, to
        self.acked: list[str] = []
        self.resent: collections.Counter[str] = collections.Counter()  # subject -> tries after a failed one
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # reported by the test
            self.error = e

    def _run(self) -> None:
        client: smtplib.SMTP | None = None
        for i in range(self.count):
            subject = f"{self.prefix}-{i}"
            while True:
                if time.monotonic() > self.deadline:
                    raise TimeoutError(f"sender {self.prefix} stuck at {subject}")
                try:
                    if client is None:
                        client = smtplib.SMTP(*self.standby.address, timeout=20)
                    client.sendmail("load@ext.test", [self.to], message(subject, self.to))
                    self.acked.append(subject)
                    break
                except (OSError, smtplib.SMTPException):
                    self.resent[subject] += 1
                    client = None
                    time.sleep(0.05)  # the standby is being restarted: try again shortly
        if client is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                client.quit()


class Load:
    """`senders` threads sharing `total` messages."""

    def __init__(
        self, standby: Standby, total: int, *, senders: int = 4, prefix: str = "m", timeout: float = 240
    ) -> None:
        deadline = time.monotonic() + timeout
        self.threads = [Sender(f"{prefix}{n}", standby, total // senders, deadline) for n in range(senders)]

    def start(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    @property
    def acked_count(self) -> int:
        return sum(len(t.acked) for t in self.threads)

    def running(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def join(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, end - time.monotonic()))
            assert not t.is_alive(), f"sender {t.prefix} still running"
            assert t.error is None, repr(t.error)

    @property
    def acked(self) -> list[str]:
        return [s for t in self.threads for s in t.acked]

    @property
    def resent(self) -> collections.Counter[str]:
        total: collections.Counter[str] = collections.Counter()
        for t in self.threads:
            total.update(t.resent)
        return total


def kill_during(standby: Standby, load: Load, rng: random.Random, iterations: int, *, most: int = 80) -> int:
    """kill -9 the standby `iterations` times while `load` runs, each after a random number (1..most) of
    further acknowledgements, restarting it each time; returns the kills done (the load may end first)."""
    kills = 0
    for _ in range(iterations):
        target = load.acked_count + rng.randint(1, most)
        while load.acked_count < target and load.running():
            time.sleep(0.005)
        if not load.running():
            break
        standby.kill()
        kills += 1
        standby.start()
    return kills


def subjects(client: imaplib.IMAP4, mailbox: str = "INBOX") -> collections.Counter[str]:
    typ, data = client.select(mailbox, readonly=True)
    assert typ == "OK", data
    if int(data[0] or b"0") == 0:
        return collections.Counter()
    typ, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK"
    found: collections.Counter[str] = collections.Counter()
    for item in data:
        if isinstance(item, tuple):
            found[item[1].decode().strip().removeprefix("Subject: ").strip()] += 1
    return found


def copies(client: imaplib.IMAP4, mailbox: str = "INBOX") -> Copies:
    """(subject, our queue id from our Received header) of every message in `mailbox`."""
    typ, data = client.select(mailbox, readonly=True)
    assert typ == "OK", data
    found: Copies = collections.Counter()
    if int(data[0] or b"0") == 0:
        return found
    typ, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT RECEIVED)])")
    assert typ == "OK"
    for item in data:
        if isinstance(item, tuple):
            subject = re.search(rb"^Subject: (.*?)\r?$", item[1], re.M)
            qid = OUR_ID.search(item[1])
            found[(subject.group(1).decode() if subject else "", qid.group(1).decode() if qid else "")] += 1
    return found


def primary_copies(primary: Primary, user: str = "alice@corp.test") -> Copies:
    client = primary.imap_login(user)
    try:
        return copies(client)
    finally:
        client.logout()


def primary_subjects(primary: Primary, user: str = "alice@corp.test") -> collections.Counter[str]:
    client = primary.imap_login(user)
    try:
        return subjects(client)
    finally:
        client.logout()


def standby_copies(standby: Standby, user: str = "alice@corp.test") -> Copies:
    """(subject, our queue id) of every message in the user's standby INBOX, read from the store."""
    found: Copies = collections.Counter()
    for body, _, _ in standby.mailbox(user, "INBOX"):
        subject = re.search(rb"^Subject: (.*?)\r?$", body, re.M)
        qid = OUR_ID.search(body)
        found[(subject.group(1).decode() if subject else "", qid.group(1).decode() if qid else "")] += 1
    return found


def standby_subjects(standby: Standby, user: str = "alice@corp.test") -> collections.Counter[str]:
    found: collections.Counter[str] = collections.Counter()
    for body, _, _ in standby.mailbox(user, "INBOX"):
        m = re.search(rb"^Subject: (.*?)\r?$", body, re.M)
        if m:
            found[m.group(1).decode()] += 1
    return found


def wait_for(what: str, predicate: Callable[[], bool], timeout: float, log: Callable[[], str] = str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{log()}")


def settle_at_primary(standby: Standby, primary: Primary, acked: list[str], timeout: float = 180) -> None:
    """The standby's queue drains and every acked subject is in the primary INBOX (or time runs out)."""
    standby.wait_until(lambda: not standby.queued(), timeout=timeout, what="queue to drain")
    primary.flush()
    wait_for(
        "every acked message at the primary",
        lambda: primary.queue_size() == 0 and all(primary_subjects(primary)[s] for s in acked),
        timeout,
        standby.log,
    )


def lookup_sync(primary: Primary, root: Path) -> dict[str, Any]:
    """The [sync] section giving the standby IMAP access to the primary (master user)."""
    secret = root / "master.pw"
    root.mkdir(parents=True, exist_ok=True)
    secret.write_text(primary.master_password + "\n")
    return {
        "imap_host": primary.host,
        "imap_port": primary.imap_port,
        "imap_tls": "none",
        "master_user": primary.master_user,
        "password_file": str(secret),
    }


def fast_standby(
    root: Path,
    primary: Primary,
    *,
    protocol: str = "lmtp",
    lookup: bool = True,
    extra: dict[str, dict[str, Any]] | None = None,
) -> Standby:
    """A standby relaying to the real primary (LMTP straight into Dovecot, or SMTP to Postfix)."""
    port = primary.lmtp_port if protocol == "lmtp" else primary.smtp_port
    sections: dict[str, dict[str, Any]] = {
        "queue": {"concurrency": 4, "retry_initial": 0.2, "retry_max": 1.0},
        "node": {"log_level": "INFO"},
    }
    if lookup:
        sections["sync"] = lookup_sync(primary, root)
    for name, values in (extra or {}).items():
        sections.setdefault(name, {}).update(values)
    return Standby(root, primary_port=port, protocol=protocol, **sections)
