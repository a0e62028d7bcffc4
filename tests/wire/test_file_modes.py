"""Everything under the data directory is the service's alone (issue 16, finding 10): the database and
its -wal/-shm, spool segments, keys and certificates are 0600 and directories 0700, whatever the umask,
also when the data directory already existed readable, and a start-up fixes what an older version left
readable (and logs it)."""

from __future__ import annotations

import asyncio
import os
import smtplib
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.standby import Standby

from mailstandby.config import StoreSettings
from mailstandby.core.model import Envelope
from mailstandby.store.base import NewMessage
from mailstandby.store.sqlite import SQLiteStore

MESSAGE = b"From: x@example.org\r\nTo: alice@corp.test\r\nSubject: modes\r\n\r\nhello\r\n"
SECRETS = ["mailstandby.db", "mailstandby.db-wal", "mailstandby.db-shm", "notify.key", "tls/selfsigned.key"]


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def readable_by_others(root: Path) -> list[str]:
    return [
        f"{p.relative_to(root) if p != root else '.'} {stat.filemode(p.lstat().st_mode)}"
        for p in [root, *root.rglob("*")]
        if p.lstat().st_mode & 0o077
    ]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_store_creates_private_files_whatever_the_umask(tmp_path: Path, loose_umask: None) -> None:
    """In-process (no server umask): the modes come from the code that creates each file."""

    async def fill() -> None:
        store = SQLiteStore(tmp_path / "data", StoreSettings())
        await store.open()
        try:
            envelope = Envelope("x@example.org", ["alice@corp.test"])
            await store.accept(NewMessage("Q1", envelope, MESSAGE, time.time()))
            assert readable_by_others(tmp_path / "data") == []
            assert sorted(p.name for p in (tmp_path / "data").glob("mailstandby.db*")) == [
                "mailstandby.db",
                "mailstandby.db-shm",
                "mailstandby.db-wal",
            ]
            assert list((tmp_path / "data" / "spool").glob("seg-*.dat"))
        finally:
            await store.close()

    asyncio.run(fill())


def test_the_server_keeps_the_data_directory_private(tmp_path: Path, loose_umask: None) -> None:
    standby = Standby(tmp_path / "standby", primary_port=closed_port())
    standby.data_dir.mkdir(parents=True)
    os.chmod(standby.data_dir, 0o755)  # created by an installer, readable by everyone
    with standby:
        with smtplib.SMTP(*standby.address, timeout=30) as client:
            client.sendmail("x@example.org", ["alice@corp.test"], MESSAGE)
        assert [p for p in SECRETS if not (standby.data_dir / p).exists()] == []
        assert list((standby.data_dir / "spool").glob("seg-*.dat"))
        assert readable_by_others(standby.data_dir) == []
    standby.proc = None
    for path in [standby.data_dir, *standby.data_dir.rglob("*")]:  # as an older version left them
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    with standby:
        assert readable_by_others(standby.data_dir) == []
        fixed = [line for line in standby.log_lines() if "store.permissions-fixed" in line]
        assert fixed and "mailstandby.db" in fixed[-1], standby.log()
