"""Disk full (RELIABILITY D4/D5): refuse new mail with 452/451, never a 250 that is not stored,
keep delivering what was accepted, and take mail again once space is back."""

from __future__ import annotations

import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.primary import Primary
from tests.support.standby import Standby

KIB = 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs: mounting works as root here, which the test script runs as."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def message(n: int) -> bytes:
    line = b"x" * 998 + b"\r\n"
    return f"Subject: big {n}\r\nMessage-ID: <big-{n}@ext.test>\r\n\r\n".encode() + line * 300  # ~300 KiB


def test_disk_full_refuses_then_recovers(tmp_path: Path, small_disk: Path, primary: Primary) -> None:
    standby = Standby(
        tmp_path / "standby",
        primary_port=primary.smtp_port,
        node={"data_dir": str(small_disk / "data")},
        smtp={"min_free_space": 0, "max_message_size": 1024 * KIB},  # reserve: 1.5 MiB
        store={"segment_size": 1024 * KIB},
    )
    primary.stop_smtp()
    standby.start()
    try:
        accepted: list[int] = []
        refusal = None
        with smtplib.SMTP(*standby.address, timeout=30) as client:
            for n in range(40):
                try:
                    client.sendmail("sender@ext.test", ["alice@corp.test"], message(n))
                    accepted.append(n)
                except smtplib.SMTPSenderRefused as e:  # MAIL: 452 4.3.1
                    refusal = (e.smtp_code, e.smtp_error)
                    break
                except smtplib.SMTPDataError as e:  # end of data: 451 4.3.0
                    refusal = (e.smtp_code, e.smtp_error)
                    client.rset()
        assert refusal is not None, "a 6 MiB disk took 12 MB of mail"
        assert refusal[0] in (451, 452) and refusal[1][:5] in (b"4.3.1", b"4.3.0"), refusal
        assert 3 <= len(accepted) < 20
        assert len(standby.queued()) == len(accepted)  # every 250 is in the store, nothing else

        primary.start_smtp()  # the backlog drains, segments are freed
        got = primary.wait_for_messages("alice@corp.test", len(accepted), timeout=90)
        subjects = sorted(int(g.split(b"Subject: big ")[1].split(b"\r\n")[0]) for g in got)
        assert subjects == accepted
        standby.wait_until(lambda: not standby.queued(), what="queue to drain")

        def takes_mail_again() -> bool:
            try:
                with smtplib.SMTP(*standby.address, timeout=30) as client:
                    client.sendmail("sender@ext.test", ["bob@corp.test"], message(99))
                return True
            except smtplib.SMTPException:
                return False

        standby.wait_until(takes_mail_again, timeout=30, what="mail accepted again after space came back")
        primary.wait_for_messages("bob@corp.test", 1)
    finally:
        standby.kill()
