"""kill -9 under load: every message that got a 250 reaches the primary (RELIABILITY D1, D2, D12).

Duplicates are allowed only where they cannot be avoided: a delivery in flight
to the primary at the moment of the kill (at most `queue.concurrency`), or a
message whose 250 the client never saw and therefore sent again (at most one
per sending client).
"""

from __future__ import annotations

import collections
import imaplib
import smtplib
import threading
import time
from pathlib import Path

from tests.support.primary import Primary
from tests.support.standby import Standby

TOTAL = 2000
SENDERS = 4
CONCURRENCY = 4


class Sender(threading.Thread):
    """Sends its share of messages, reconnecting (to the current port) until each got a 250."""

    def __init__(self, n: int, standby: Standby, count: int, deadline: float) -> None:
        super().__init__(daemon=True)
        self.n, self.standby, self.count, self.deadline = n, standby, count, deadline
        self.acked: list[str] = []
        self.resent = 0  # messages sent again after an error (their first copy may have been stored)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # reported by the test
            self.error = e

    def _run(self) -> None:
        client: smtplib.SMTP | None = None
        for i in range(self.count):
            subject = f"load-{self.n}-{i}"
            data = f"Subject: {subject}\r\nMessage-ID: <{subject}@ext.test>\r\n\r\nbody {subject}\r\n".encode()
            tries = 0
            while True:
                if time.monotonic() > self.deadline:
                    raise TimeoutError(f"sender {self.n} stuck at {subject}")
                try:
                    if client is None:
                        client = smtplib.SMTP(*self.standby.address, timeout=20)
                    client.sendmail("load@ext.test", ["alice@corp.test"], data)
                    self.acked.append(subject)
                    break
                except (OSError, smtplib.SMTPException):
                    tries += 1
                    if tries == 1:
                        self.resent += 1
                    client = None
                    time.sleep(0.1)
        if client is not None:
            client.quit()


def subjects_in(primary: Primary, address: str) -> collections.Counter[str]:
    imap = imaplib.IMAP4(primary.host, primary.imap_port)
    try:
        imap.login(address, primary.users[address])
        imap.select("INBOX", readonly=True)
        typ, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        found = collections.Counter()
        for item in data:
            if isinstance(item, tuple):
                line = item[1].decode().strip()
                found[line.removeprefix("Subject: ").strip()] += 1
        return found
    finally:
        imap.logout()


def test_kill_9_during_load_loses_nothing(tmp_path: Path, primary: Primary, store_section: dict[str, str]) -> None:
    """On each store backend (SQLite + spool segments; PostgreSQL with the bodies in the database)."""
    standby = Standby(
        tmp_path / "standby",
        primary_port=primary.smtp_port,
        store=store_section,
        queue={"concurrency": CONCURRENCY, "retry_initial": 0.2, "retry_max": 1.0},
        node={"log_level": "WARNING"},
    )
    standby.start()
    try:
        deadline = time.monotonic() + 240
        senders = [Sender(n, standby, TOTAL // SENDERS, deadline) for n in range(SENDERS)]
        for s in senders:
            s.start()
        while sum(len(s.acked) for s in senders) < TOTAL // 2:
            assert time.monotonic() < deadline, "senders too slow"
            time.sleep(0.01)
        standby.kill()  # kill -9 with sessions in DATA and deliveries in flight
        killed_at = sum(len(s.acked) for s in senders)
        time.sleep(0.5)
        standby.start()
        for s in senders:
            s.join(max(1, deadline - time.monotonic()))
            assert s.error is None, repr(s.error)
        acked = [subject for s in senders for subject in s.acked]
        assert len(acked) == TOTAL and killed_at < TOTAL

        standby.wait_until(lambda: not standby.queued(), timeout=180, what="queue to drain after restart")
        primary.flush()
        found: collections.Counter[str] = collections.Counter()
        end = time.monotonic() + 120
        while time.monotonic() < end:
            found = subjects_in(primary, "alice@corp.test")
            if all(found[s] >= 1 for s in acked) and primary.queue_size() == 0:
                break
            time.sleep(0.5)
        missing = [s for s in acked if found[s] == 0]
        assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {missing[:5]}"
        duplicates = sum(n - 1 for n in found.values() if n > 1)
        allowed = CONCURRENCY + sum(s.resent for s in senders)
        assert duplicates <= allowed, f"{duplicates} duplicates, at most {allowed} explainable"
        assert set(found) <= set(acked) | {f"load-{n}-{i}" for n in range(SENDERS) for i in range(TOTAL)}
    finally:
        standby.kill()
