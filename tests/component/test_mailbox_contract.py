"""Runs the MailboxStore contract (mailbox_contract.py) over every implementation.

To add an implementation, add a factory to FACTORIES: an async context manager
that gets pytest's `tmp_path` and yields a ready store (and closes it after).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
from mailbox_contract import MailboxContract
from tests.support.backends import build_store, store_settings

from mailstandby.config import StoreSettings
from mailstandby.store.mailbox import MailboxStore
from mailstandby.store.memory import MemoryMailboxStore
from mailstandby.store.sqlite_mailbox import SQLiteMailboxStore


@asynccontextmanager
async def memory_store(tmp_path: Path) -> AsyncIterator[MailboxStore]:
    yield MemoryMailboxStore()


@asynccontextmanager
async def sqlite_store(tmp_path: Path, settings: StoreSettings) -> AsyncIterator[MailboxStore]:
    """The SQL mailbox store on either backend (`settings.url` empty: SQLite)."""
    base = build_store(tmp_path / "data", settings)
    await base.open()
    try:
        yield SQLiteMailboxStore(base)
    finally:
        await base.close()


FACTORIES: dict[str, Callable[[Path, StoreSettings], AbstractAsyncContextManager[MailboxStore]]] = {
    "memory": lambda tmp_path, settings: memory_store(tmp_path),
    "sqlite": sqlite_store,
    "postgres": sqlite_store,
}


@pytest.fixture(params=sorted(FACTORIES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MailboxStore]:
    cluster = request.getfixturevalue("postgres_cluster") if request.param == "postgres" else None
    async with FACTORIES[request.param](tmp_path, store_settings(request.param, cluster)) as s:
        yield s


class TestMailboxContract(MailboxContract):
    pass
