"""An outage as the standby records it, for the failback sync tests.

20 users, 50 outage messages each (1,000) filed in their standby INBOX as the
delivery code files them (`SQLiteMailboxStore.append`, journaled = 0), 5 journal
copies each that the primary also got (APPENDed to Dovecot as the user, filed on
the standby with journaled = 1), then, over the network against a running
Standby: imaplib marks some read and deletes (EXPUNGE) others, and replies go
out through submission (the standby files them in Sent). What the primary must
hold afterwards is kept in `Outage.expected`.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import smtplib
from dataclasses import dataclass, field
from pathlib import Path

from imapclient import IMAPClient
from tests.support.primary import Primary
from tests.support.standby import Standby

from mailstandby.auth import hash_password
from mailstandby.config import StoreSettings
from mailstandby.store.sqlite import SQLiteStore
from mailstandby.store.sqlite_mailbox import SQLiteMailboxStore

USERS = [f"user{i:02d}@corp.test" for i in range(20)]
PER_USER = 50
JOURNALED = 5
REPLIERS = USERS[:5]
PASSWORD = "phone-pw-7-long"
BASE_DATE = 1_750_000_000


def outage_message(user: str, k: int) -> bytes:
    filler = ("lorem ipsum dolor sit amet " * (1 + (k * 37) % 400)).strip()
    return (
        f"Return-Path: <sender{k}@ext.test>\r\nFrom: Sender {k} <sender{k}@ext.test>\r\nTo: {user}\r\n"
        f"Subject: outage {k} for {user}\r\nMessage-ID: <outage.{k}.{user}>\r\n"
        f"Date: Mon, 16 Jun 2025 10:{k % 60:02d}:00 +0000\r\n\r\n{filler}\r\n"
    ).encode()


def journal_message(user: str, j: int) -> bytes:
    return (
        f"From: colleague@corp.test\r\nTo: {user}\r\nSubject: before the outage {j}\r\n"
        f"Message-ID: <journal.{j}.{user}>\r\n\r\nalready on the primary\r\n"
    ).encode()


def reply_message(user: str, r: int) -> bytes:
    return (
        f"From: {user}\r\nTo: friend@example.org\r\nSubject: Re: outage {r}\r\n"
        f"Message-ID: <reply.{r}.{user}>\r\n\r\nanswered from the phone\r\n"
    ).encode()


@dataclass
class Expected:
    """Per folder: Message-ID -> (\\Seen?, internal date or None when not checked)."""

    folders: dict[str, dict[str, tuple[bool, int | None]]] = field(default_factory=dict)


@dataclass
class Outage:
    data_dir: Path
    expected: dict[str, Expected]
    deleted: int
    standby_only: int  # messages the sync must append (outage left + replies)


async def _file_messages(data_dir: Path) -> None:
    store = SQLiteStore(data_dir, StoreSettings())
    await store.open()
    try:
        mailboxes = SQLiteMailboxStore(store)

        async def one(user: str) -> None:
            await mailboxes.ensure_user(user)
            await mailboxes.set_password_hash(user, hash_password(PASSWORD))
            for k in range(PER_USER):
                await mailboxes.append(user, "INBOX", outage_message(user, k), internal_date=BASE_DATE + k * 61)
            for j in range(JOURNALED):
                await mailboxes.append(user, "INBOX", journal_message(user, j), journaled=True)

        await asyncio.gather(*(one(u) for u in USERS))
    finally:
        await store.close()


def _journal_on_primary(primary: Primary) -> None:
    for user in USERS:
        client = primary.imap_login(user, as_master=True)
        try:
            for j in range(JOURNALED):
                client.append("INBOX", "", imaplib.Time2Internaldate(BASE_DATE - 3600), journal_message(user, j))
        finally:
            client.logout()


def _phones(standby: Standby) -> None:
    """What users do on their phones: read some, delete some, answer some."""
    for user in USERS:
        client = imaplib.IMAP4("127.0.0.1", standby.listeners["imap"], timeout=30)
        try:
            client.login(user, PASSWORD)
            client.select("INBOX")
            seen = ",".join(str(k + 1) for k in range(PER_USER) if k % 3 == 0)
            assert client.uid("STORE", seen, "+FLAGS", "(\\Seen)")[0] == "OK"
            gone = ",".join(str(k + 1) for k in range(PER_USER) if k % 10 == 7)
            assert client.uid("STORE", gone, "+FLAGS", "(\\Deleted)")[0] == "OK"
            assert client.expunge()[0] == "OK"
            journal_read = ",".join(str(PER_USER + j + 1) for j in range(JOURNALED) if j % 2 == 0)
            assert client.uid("STORE", journal_read, "+FLAGS", "(\\Seen)")[0] == "OK"
        finally:
            with contextlib.suppress(Exception):
                client.logout()
    for user in REPLIERS:
        with smtplib.SMTP("127.0.0.1", standby.listeners["submission"], timeout=30) as smtp:
            smtp.login(user, PASSWORD)
            for r in range(2):
                smtp.sendmail(user, ["friend@example.org"], reply_message(user, r))


def _expected() -> dict[str, Expected]:
    out = {}
    for user in USERS:
        inbox: dict[str, tuple[bool, int | None]] = {}
        for k in range(PER_USER):
            if k % 10 != 7:
                inbox[f"<outage.{k}.{user}>"] = (k % 3 == 0, BASE_DATE + k * 61)
        for j in range(JOURNALED):
            inbox[f"<journal.{j}.{user}>"] = (j % 2 == 0, BASE_DATE - 3600)
        folders = {"INBOX": inbox, "Sent": {}}
        if user in REPLIERS:
            folders["Sent"] = {f"<reply.{r}.{user}>": (True, None) for r in range(2)}
        out[user] = Expected(folders)
    return out


def record_outage(root: Path, primary: Primary) -> Outage:
    """File the outage on a standby under `root` and act on it through a running Standby."""
    standby = Standby(
        root,
        primary_port=closed_port(),  # the primary is down: nothing reaches it from the standby
        imap={"listen": ["127.0.0.1:0"], "allow_plaintext_auth_on_loopback": True},
        submission={"listen": ["127.0.0.1:0"], "allow_plaintext_auth_on_loopback": True},
        directory={"csv": str(_users_csv(root))},
        journal={"enabled": False},
    )
    asyncio.run(_file_messages(standby.data_dir))
    _journal_on_primary(primary)
    with standby:
        _phones(standby)
        standby.wait_until(
            lambda: sum(len(standby.mailbox(u, "Sent")) for u in REPLIERS) == 2 * len(REPLIERS), what="Sent copies"
        )
        standby.stop()
    deleted = len(USERS) * len([k for k in range(PER_USER) if k % 10 == 7])
    standby_only = len(USERS) * PER_USER - deleted + 2 * len(REPLIERS)
    return Outage(standby.data_dir, _expected(), deleted, standby_only)


def _users_csv(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "users.csv"
    path.write_text("address,aliases\n" + "".join(f"{u},\n" for u in USERS))
    return path


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def primary_state(primary: Primary, user: str) -> dict[str, list[tuple[str, bool, int, bytes]]]:
    """Per folder of the primary: (Message-ID, \\Seen?, internal date, trace header line) of every message."""
    client = IMAPClient(primary.host, primary.imap_port, ssl=False, timeout=30)
    client.normalise_times = False
    try:
        client.login(user, primary.users[user])
        out: dict[str, list[tuple[str, bool, int, bytes]]] = {}
        for _flags, _sep, name in client.list_folders():
            folder = name if isinstance(name, str) else name.decode()
            client.select_folder(folder, readonly=True)
            rows = []
            uids = client.search("ALL")
            items = ["FLAGS", "INTERNALDATE", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]
            fetched = client.fetch(uids, items) if uids else {}
            for data in fetched.values():
                header = data[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].decode()
                mid = "".join(header.split(":", 1)[1].split()) if ":" in header else ""
                rows.append((mid, b"\\Seen" in data[b"FLAGS"], int(data[b"INTERNALDATE"].timestamp()), b""))
            out[folder] = rows
        return out
    finally:
        with contextlib.suppress(Exception):
            client.logout()


def assert_primary_matches(primary: Primary, expected: dict[str, Expected]) -> None:
    """Every primary mailbox holds exactly its messages, each once, with read flags and internal dates."""
    for user, want in expected.items():
        state = primary_state(primary, user)
        for folder, messages in want.folders.items():
            got = state.get(folder, [])
            ids = [mid for mid, _, _, _ in got]
            assert sorted(ids) == sorted(messages), f"{user} {folder}: {len(ids)} messages, want {len(messages)}"
            for mid, seen, date, _ in got:
                want_seen, want_date = messages[mid]
                assert seen == want_seen, f"{user} {folder} {mid}: \\Seen is {seen}"
                if want_date is not None:
                    assert date == want_date, f"{user} {folder} {mid}: internal date {date}, want {want_date}"
