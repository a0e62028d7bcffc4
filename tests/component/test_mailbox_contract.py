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

from mailstandby.config import StoreSettings
from mailstandby.store.mailbox import MailboxStore
from mailstandby.store.memory import MemoryMailboxStore
from mailstandby.store.sqlite import SQLiteStore
from mailstandby.store.sqlite_mailbox import SQLiteMailboxStore


@asynccontextmanager
async def memory_store(tmp_path: Path) -> AsyncIterator[MailboxStore]:
    yield MemoryMailboxStore()


@asynccontextmanager
async def sqlite_store(tmp_path: Path) -> AsyncIterator[MailboxStore]:
    base = SQLiteStore(tmp_path / "data", StoreSettings())
    await base.open()
    try:
        yield SQLiteMailboxStore(base)
    finally:
        await base.close()


FACTORIES: dict[str, Callable[[Path], AbstractAsyncContextManager[MailboxStore]]] = {
    "memory": memory_store,
    "sqlite": sqlite_store,
}


@pytest.fixture(params=sorted(FACTORIES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MailboxStore]:
    async with FACTORIES[request.param](tmp_path) as s:
        yield s


class TestMailboxContract(MailboxContract):
    pass
