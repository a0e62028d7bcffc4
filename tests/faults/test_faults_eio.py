"""EIO from write and fsync, on the spool segments, the spool directory and SQLite's WAL
(RELIABILITY D1, D5, D6; issue 14 item 4).

Injected with an LD_PRELOAD shim compiled here from tests/faults/eio_shim.c: while a control
file exists, the named call fails with EIO on the named paths. Expected of the standby: a message
whose write or fsync failed gets 451 4.3.0 after its data, never a 250; no fsync is retried and
trusted (a failed segment is abandoned; a new segment is used only once its directory entry is
fsync'd); once the disk behaves the standby takes mail again without a restart, and the primary
ends up with every acknowledged message once and none of the refused ones.
"""

from __future__ import annotations

import collections
import shutil
import smtplib
import subprocess
from pathlib import Path

import pytest
from tests.support.faults import count, fast_standby, primary_copies, settle_at_primary
from tests.support.primary import Primary

SHIM_SOURCE = Path(__file__).with_name("eio_shim.c")
KIB = 1024


@pytest.fixture
def shim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The compiled shim, preloaded into every process started from here on; returns its control file."""
    gcc = shutil.which("gcc")
    assert gcc is not None, "gcc is needed to build the fault shim (scripts/test.sh installs it)"
    lib = tmp_path / "eio_shim.so"
    subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(SHIM_SOURCE), "-ldl"], check=True)
    control = tmp_path / "fault.control"
    monkeypatch.setenv("LD_PRELOAD", str(lib))
    monkeypatch.setenv("MSB_FAULT_CONTROL", str(control))
    return control


def big(subject: str) -> bytes:
    line = b"x" * 998 + b"\r\n"
    return f"Subject: {subject}\r\nMessage-ID: <{subject}@ext.test>\r\n\r\n".encode() + line * 300  # ~300 KiB


def send(address: tuple[str, int], subject: str) -> tuple[int, bytes]:
    """(code, enhanced status + text) of the reply to the end of data; (0, b"") when the session broke."""
    try:
        with smtplib.SMTP(*address, timeout=30) as client:
            client.sendmail("sender@ext.test", ["alice@corp.test"], big(subject))
        return 250, b""
    except smtplib.SMTPResponseException as e:
        return e.smtp_code, e.smtp_error
    except (OSError, smtplib.SMTPException):
        return 0, b""


CASES = {
    "segment-fsync": "fsync /spool/seg-",
    "segment-write": "write /spool/seg-",
    "spool-dir-fsync": "fsync /spool$",
    "wal-fsync": "fsync mailstandby.db-wal",
    "wal-write": "write mailstandby.db-wal",
}


@pytest.mark.parametrize("case", list(CASES))
def test_eio_refuses_with_451_and_loses_nothing(tmp_path: Path, primary: Primary, shim: Path, case: str) -> None:
    standby = fast_standby(
        tmp_path / "standby", primary, protocol="smtp", lookup=True, extra={"store": {"segment_size": 1024 * KIB}}
    )
    standby.start()
    try:
        acked: list[str] = []
        for n in range(2):
            assert send(standby.address, f"{case}-before-{n}")[0] == 250
            acked.append(f"{case}-before-{n}")
        shim.write_text(CASES[case] + "\n")
        replies = []
        for n in range(6):  # ~1.8 MB: at least one new segment (1 MiB each)
            code, text = send(standby.address, f"{case}-during-{n}")
            replies.append((code, text[:5]))
            if code == 250:
                acked.append(f"{case}-during-{n}")
        shim.unlink()
        hits = len((shim.parent / (shim.name + ".hits")).read_bytes())
        refused = [f"{case}-during-{n}" for n, (code, _) in enumerate(replies) if code != 250]
        print(f"faults eio {case}: hits={hits} replies={[c for c, _ in replies]}")
        assert hits > 0 and refused, replies
        first = next(n for n, (code, _) in enumerate(replies) if code != 250)
        assert all(r == (451, b"4.3.0") for r in replies[first:]), replies  # once failing, no 250 until fixed
        standby.wait_until(lambda: send(standby.address, f"{case}-after") == (250, b""), what="mail taken again")
        acked.append(f"{case}-after")
        standby.kill()  # and what was acknowledged survives a kill -9 too
        standby.start()
        settle_at_primary(standby, primary, acked)
        found = primary_copies(primary)
        counts = count(acked, found, collections.Counter())
        stored_refused = [s for (s, _), n in found.items() if s in refused]
        print(f"faults eio {case}: {counts.line()} refused={len(refused)} refused_delivered={len(stored_refused)}")
        counts.check()
        assert stored_refused == []  # RELIABILITY I2: nothing that did not get a 250 is delivered
    finally:
        standby.kill()
