"""The command line's connections of their own (`passwd`, `admin`, `queue`, `notify`, `sync`,
`directory`) on each store backend, beside a running server's store: what one writes the other sees."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.backends import build_store

from mailstandby.config import StoreSettings
from mailstandby.core.model import Envelope, new_queue_id
from mailstandby.notify.compose import Mode
from mailstandby.store.base import NewMessage
from mailstandby.store.sqlite_admin import queue_listing, set_admin_password, set_user_password
from mailstandby.store.sqlite_directory import SQLiteDirectoryDB
from mailstandby.store.sqlite_failover import SQLiteFailoverStore
from mailstandby.store.sqlite_mailbox import SQLiteMailboxStore
from mailstandby.store.sqlite_notify import SQLiteNotifyDB
from mailstandby.store.sqlite_sync import SQLiteSyncRecords


async def test_commands_and_the_server_share_one_store(tmp_path: Path, store_settings: StoreSettings) -> None:
    data_dir, url = tmp_path / "data", store_settings.url
    assert queue_listing(data_dir, url=url) in (None, [])  # nothing queued (SQLite: no store yet)
    server = build_store(data_dir, store_settings)
    await server.open()
    try:
        m = NewMessage(
            new_queue_id(), Envelope("s@ext.test", ["alice@corp.test"]), b"Subject: x\r\n\r\nx\r\n", time.time()
        )
        await server.accept(m)
        assert queue_listing(data_dir, url=url) == [(m.id, "s@ext.test", "alice@corp.test", 0, "")]

        set_user_password(data_dir, "alice@corp.test", "hash-1", url=url)  # `mailstandby passwd`, twice
        set_user_password(data_dir, "alice@corp.test", "hash-2", url=url)
        assert await SQLiteMailboxStore(server).password_hash("alice@corp.test") == "hash-2"
        set_admin_password(data_dir, "root", "admin-hash", actor="ops", url=url)  # `mailstandby admin root`
        failover = SQLiteFailoverStore(server)
        assert await failover.admin_hash("root") == "admin-hash"
        assert [e["action"] for e in await failover.audit_log(action="admin.")] == ["admin.set-password"]

        notify = SQLiteNotifyDB(data_dir, url=url)  # `mailstandby notify`
        try:
            row = ("alice@corp.test", "failover", "failover-1", Mode.EMAIL, "alice@home.test", "")
            assert await notify.add_notices([row, row], time.time()) == 1
        finally:
            notify.close()
        reader = SQLiteNotifyDB(data_dir, read_only=True, url=url)
        try:
            assert [r["user"] for r in reader.status()] == ["alice@corp.test"]
            assert reader.passwords() == {"alice@corp.test"}
        finally:
            reader.close()

        records = SQLiteSyncRecords(data_dir, url=url)  # `mailstandby sync`
        await records.open()
        try:
            first = await records.instance()
            assert first == await records.instance() and first & 1
        finally:
            await records.close()

        directory = SQLiteDirectoryDB(data_dir, url=url)  # `mailstandby directory`
        try:
            assert directory.generation() == 0 and directory.snapshot() == (0, {})
        finally:
            directory.close()
    finally:
        await server.close()
