"""Failback sync, the other paths, against a real Dovecot (and Postfix for the SMTP fallback):
refusals counted and given up, SASL PLAIN with an authorization identity, a user the primary does
not know, flags changed after a sync, re-injection over SMTP when there is no IMAP access."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from tests.support.database import change
from tests.support.outage import closed_port, primary_state
from tests.support.primary import Primary
from tests.support.standby import Standby, render_config

from mailstandby.config import PrimarySettings, StoreSettings, SyncSettings
from mailstandby.store.mailbox import FlagMode
from mailstandby.store.sqlite import SQLiteStore
from mailstandby.store.sqlite_mailbox import SQLiteMailboxStore
from mailstandby.store.sqlite_sync import SQLiteSyncRecords
from mailstandby.sync.engine import PrimaryUnavailable, SyncEngine
from mailstandby.sync.records import RunLock

ALICE = "alice@corp.test"
BOB = "bob@corp.test"


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[Primary]:
    p = Primary(tmp_path / "primary", users={ALICE: "pw-a", BOB: "pw-b"}, max_mail_size="20k")
    try:
        p.start()
        yield p
    finally:
        p.close()


def message(n: int, size: int = 200, user: str = ALICE) -> bytes:
    return f"From: s@ext.test\r\nTo: {user}\r\nSubject: m{n}\r\nMessage-ID: <m{n}.{user}>\r\n\r\n".encode() + (
        b"x" * size + b"\r\n"
    )


async def file(data_dir: Path, mail: dict[str, list[tuple[str, bytes]]]) -> None:
    """File standby-only messages: user -> [(folder, body)]."""
    store = SQLiteStore(data_dir, StoreSettings())
    await store.open()
    try:
        boxes = SQLiteMailboxStore(store)
        for user, items in mail.items():
            await boxes.ensure_user(user)
            for folder, body in items:
                await boxes.append(user, folder, body, internal_date=1_760_000_000)
    finally:
        await store.close()


def engine(data_dir: Path, primary: Primary, **overrides: object) -> SyncEngine:
    values: dict[str, object] = {
        "imap_host": primary.host,
        "imap_port": primary.imap_port,
        "imap_tls": "none",
        "master_user": primary.master_user,
    }
    values.update(overrides)
    return SyncEngine(
        SQLiteSyncRecords(data_dir),
        RunLock(data_dir),
        SyncSettings.model_validate(values),
        PrimarySettings(host=primary.host, port=primary.smtp_port),
        password=primary.master_password,
    )


async def run_once(data_dir: Path, primary: Primary, **overrides: object):  # type: ignore[no-untyped-def]
    sync = engine(data_dir, primary, **overrides)
    try:
        return await sync.run(), await sync.status()
    finally:
        await sync.close()


def ids(primary: Primary, user: str, folder: str) -> list[str]:
    return sorted(mid for mid, _, _, _ in primary_state(primary, user).get(folder, []))


async def test_refused_messages_are_retried_then_given_up_and_reported(primary: Primary, tmp_path: Path) -> None:
    data = tmp_path / "standby"
    small = [("INBOX", message(n)) for n in range(10)]
    await file(data, {ALICE: [*small[:5], ("INBOX", message(99, size=30_000)), *small[5:], ("Drafts", message(50))]})
    settings = {"max_attempts": 2, "folder_map": {"Drafts": "~not-allowed"}}
    first, status = await run_once(data, primary, **settings)
    # the batch with the big one is refused whole (MULTIAPPEND is atomic); one by one, only it is refused
    assert first.reasons["appended"] == 10 and first.reasons["refused"] == 2
    assert first.pending == 2 and not first.failures and not first.complete
    assert (status.total.done, status.total.pending, status.total.failed) == (10, 2, 0)
    second, status = await run_once(data, primary, **settings)
    assert sorted(f.folder for f in second.failures) == ["INBOX", "~not-allowed"]
    assert "LIMIT" in next(f.error for f in second.failures if f.folder == "INBOX")
    assert (status.total.done, status.total.pending, status.total.failed) == (10, 0, 2)
    third, _ = await run_once(data, primary, **settings)
    assert third.planned == 0 and third.reasons["gave-up"] == 2 and third.complete
    assert ids(primary, ALICE, "INBOX") == sorted(f"<m{n}.{ALICE}>" for n in range(10))
    # `sync status --json` names what was given up
    config = tmp_path / "sync.toml"
    config.write_text(render_config({"node": {"data_dir": str(data)}, "directory": {"domains": ["corp.test"]}}, []))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailstandby", "sync", "status", "--json", "-c", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["total"] == {"total": 12, "done": 10, "failed": 2, "pending": 0}
    assert {f["folder"] for f in report["failed"]} == {"INBOX", "~not-allowed"}


async def test_sasl_plain_with_authorization_identity(primary: Primary, tmp_path: Path) -> None:
    data = tmp_path / "standby"
    await file(data, {ALICE: [("INBOX", message(1)), ("Sent", message(2))]})
    report, _ = await run_once(data, primary, login="sasl-authzid")
    assert report.complete and report.reasons["appended"] == 2
    assert ids(primary, ALICE, "INBOX") == [f"<m1.{ALICE}>"] and ids(primary, ALICE, "Sent") == [f"<m2.{ALICE}>"]


async def test_a_user_the_primary_does_not_know_is_reported_and_the_others_synced(
    primary: Primary, tmp_path: Path
) -> None:
    data = tmp_path / "standby"
    await file(data, {"ghost@corp.test": [("INBOX", message(1, user="ghost@corp.test"))], BOB: [("INBOX", message(2))]})
    report, status = await run_once(data, primary)
    assert not report.complete and list(report.errors) == ["ghost@corp.test"]
    assert "refused the master login" in report.errors["ghost@corp.test"]
    assert status.users["ghost@corp.test"].pending == 1 and status.users[BOB].done == 1
    assert ids(primary, BOB, "INBOX") == [f"<m2.{ALICE}>"]


async def test_flags_set_on_the_phone_after_a_sync_follow(primary: Primary, tmp_path: Path) -> None:
    data = tmp_path / "standby"
    await file(data, {ALICE: [("INBOX", message(n)) for n in range(3)]})
    first, _ = await run_once(data, primary)
    assert first.reasons["appended"] == 3
    store = SQLiteStore(data, StoreSettings())
    await store.open()
    try:
        await SQLiteMailboxStore(store).store_flags(
            ALICE, "INBOX", [2], frozenset({"\\Seen", "\\Flagged"}), FlagMode.ADD
        )
    finally:
        await store.close()
    second, _ = await run_once(data, primary)
    assert second.planned == 1 and second.reasons["flags-applied"] == 1 and "appended" not in second.reasons
    state = {mid: seen for mid, seen, _, _ in primary_state(primary, ALICE)["INBOX"]}
    assert state == {f"<m0.{ALICE}>": False, f"<m1.{ALICE}>": True, f"<m2.{ALICE}>": False}


async def test_without_imap_inbox_mail_is_reinjected_over_smtp(primary: Primary, tmp_path: Path) -> None:
    data = tmp_path / "standby"
    await file(data, {BOB: [("INBOX", message(1, user=BOB)), ("INBOX", message(2, user=BOB)), ("Sent", message(3))]})
    report, _ = await run_once(data, primary, imap_host="", smtp_fallback=True)
    assert report.reasons == {"reinjected": 2, "no-imap": 1} and report.complete
    delivered = primary.wait_for_messages(BOB, 2)
    assert all(b"X-Mailstandby-Sync: " in m for m in delivered)
    assert sorted(ids(primary, BOB, "INBOX")) == [f"<m1.{BOB}>", f"<m2.{BOB}>"]
    again, _ = await run_once(data, primary, imap_host="", smtp_fallback=True)
    assert again.planned == 0


@pytest.fixture
def tls_primary(tmp_path: Path) -> Iterator[tuple[Primary, Path]]:
    """Dovecot with TLS (STARTTLS on its IMAP port, implicit TLS on imaps), certificate from a test CA."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    keys = tmp_path / "keys"
    keys.mkdir()
    cert.private_key_pem.write_to_path(str(keys / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(keys / "cert.pem"))
    ca.cert_pem.write_to_path(str(keys / "ca.pem"))
    p = Primary(tmp_path / "primary", users={ALICE: "pw-a"}, tls=(keys / "cert.pem", keys / "key.pem"))
    try:
        p.start()
        yield p, keys / "ca.pem"
    finally:
        p.close()


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
async def test_tls_to_the_primary_with_certificate_checks(
    tls_primary: tuple[Primary, Path], tmp_path: Path, mode: str
) -> None:
    primary, ca_file = tls_primary
    data = tmp_path / "standby"
    await file(data, {ALICE: [("INBOX", message(1))]})
    port = primary.imaps_port if mode == "implicit" else primary.imap_port
    report, _ = await run_once(data, primary, imap_tls=mode, imap_port=port, tls_ca_file=str(ca_file))
    assert report.complete and report.reasons == {"appended": 1}
    assert ids(primary, ALICE, "INBOX") == [f"<m1.{ALICE}>"]


async def test_a_certificate_from_another_ca_stops_the_sync(tls_primary: tuple[Primary, Path], tmp_path: Path) -> None:
    primary, _ = tls_primary
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    data = tmp_path / "standby"
    await file(data, {ALICE: [("INBOX", message(1))]})
    with pytest.raises(PrimaryUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        await run_once(data, primary, imap_tls="implicit", imap_port=primary.imaps_port, tls_ca_file=str(other))
    assert ids(primary, ALICE, "INBOX") == []


async def test_an_8bit_master_password_goes_by_sasl_plain(tmp_path: Path) -> None:
    primary = Primary(tmp_path / "primary", users={ALICE: "pw-a"})
    primary.master_password = "mäster-pässwörd"  # a quoted LOGIN string cannot carry it
    try:
        primary.start()
        data = tmp_path / "standby"
        await file(data, {ALICE: [("INBOX", message(1))]})
        report, _ = await run_once(data, primary)
        assert report.complete and report.reasons == {"appended": 1}
        assert ids(primary, ALICE, "INBOX") == [f"<m1.{ALICE}>"]
    finally:
        primary.close()


async def test_a_journal_copy_the_primary_no_longer_has_is_not_copied(primary: Primary, tmp_path: Path) -> None:
    data = tmp_path / "standby"
    store = SQLiteStore(data, StoreSettings())
    await store.open()
    try:
        boxes = SQLiteMailboxStore(store)
        await boxes.ensure_user(ALICE)
        await boxes.append(ALICE, "INBOX", message(1), frozenset({"\\Seen"}), journaled=True)
    finally:
        await store.close()
    first, _ = await run_once(data, primary)
    assert first.reasons == {"primary-copy-missing": 1} and first.complete
    assert ids(primary, ALICE, "INBOX") == []  # the journal copy is history, never copied back
    second, _ = await run_once(data, primary)
    assert second.planned == 0 and second.reasons == {"in-sync": 1}


@pytest.mark.parametrize("multiappend", [True, False])
async def test_pipelined_single_appends_when_multiappend_is_off(
    primary: Primary, tmp_path: Path, multiappend: bool
) -> None:
    data = tmp_path / "standby"
    await file(data, {ALICE: [("INBOX", message(n)) for n in range(7)]})
    report, _ = await run_once(data, primary, multiappend=multiappend, batch_messages=3)
    assert report.complete and report.reasons == {"appended": 7}
    assert ids(primary, ALICE, "INBOX") == sorted(f"<m{n}.{ALICE}>" for n in range(7))


async def test_synchronizing_literals_into_a_server_without_literal_plus(tmp_path: Path) -> None:
    """mailstandby's own IMAP server offers LITERAL- and no MULTIAPPEND: one message per round trip,
    each literal sent after the server's "+"; the trace header is found there too after a lost record."""
    target = Standby(
        tmp_path / "target",
        primary_port=closed_port(),
        imap={"listen": ["127.0.0.1:0"], "allow_plaintext_auth_on_loopback": True},
        journal={"enabled": False},
    )
    target.set_password(ALICE, "target-pw-long")
    data = tmp_path / "standby"
    bodies = [("INBOX", message(1)), ("INBOX", message(2, size=9000)), ("Sent", message(3)), ("Projects", message(4))]
    await file(data, {ALICE: bodies[:3]})
    store = SQLiteStore(data, StoreSettings())
    await store.open()
    try:
        boxes = SQLiteMailboxStore(store)
        await boxes.create_mailbox(ALICE, "Projects")
        await boxes.append(ALICE, "Projects", message(4), frozenset({"\\Seen", "\\Flagged"}), 1_760_000_000)
    finally:
        await store.close()
    with target:
        settings = SyncSettings(
            imap_host="127.0.0.1",
            imap_port=target.listeners["imap"],
            imap_tls="none",
            master_user="unused",
            login_format="{user}",
        )
        sync = SyncEngine(
            SQLiteSyncRecords(data), RunLock(data), settings, PrimarySettings(), password="target-pw-long"
        )
        try:
            report = await sync.run()
            assert report.complete and report.reasons == {"appended": 4}
            change(data, "UPDATE sync_items SET state = 'pending'")  # as if the process died before recording
            again = await sync.run()
            assert again.reasons == {"found-by-trace": 4}
        finally:
            await sync.close()
        for folder, want in (("INBOX", [1, 2]), ("Sent", [3]), ("Projects", [4])):
            got = [body for body, _, _ in target.mailbox(ALICE, folder)]
            assert [b.split(b"\r\n", 1)[1] for b in got] == [message(n, size=9000 if n == 2 else 200) for n in want]
        [(_, _, flags)] = target.mailbox(ALICE, "Projects")
        assert flags == "\\Flagged \\Seen"


async def test_a_message_deleted_on_the_phone_after_a_failed_run_is_forgotten(primary: Primary, tmp_path: Path) -> None:
    data = tmp_path / "standby"
    await file(data, {ALICE: [("INBOX", message(1)), ("INBOX", message(2))]})
    with pytest.raises(PrimaryUnavailable, match="cannot connect"):  # planned, then the primary is gone
        await run_once(data, primary, imap_port=closed_port())
    store = SQLiteStore(data, StoreSettings())
    await store.open()
    try:
        boxes = SQLiteMailboxStore(store)
        await boxes.store_flags(ALICE, "INBOX", [2], frozenset({"\\Deleted"}), FlagMode.ADD)
        await boxes.expunge(ALICE, "INBOX")
    finally:
        await store.close()
    report, status = await run_once(data, primary)
    assert report.complete and report.reasons == {"gone-from-standby": 1, "appended": 1}
    assert (status.total.total, status.total.done, status.total.pending) == (1, 1, 0)
    assert ids(primary, ALICE, "INBOX") == [f"<m1.{ALICE}>"]
