"""PostgresStore against a real server (the session's private cluster): what is particular to it.

The contract both backends keep runs in test_store.py, test_mailbox_contract.py and
test_queue_runner.py (fixture `backend`); here: durability settings, group commit, bodies in the
database and their check, the schema version, and a database server that dies and comes back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from smtp_harness import TIMEOUT
from tests.support.postgres import PostgresCluster

from mailstandby.config import StoreSettings
from mailstandby.core.model import BodyType, Envelope, new_queue_id
from mailstandby.store.base import CorruptMessage, NewMessage, RcptState, StoreError
from mailstandby.store.postgres import PostgresStore
from mailstandby.store.postgres_schema import PG_MIGRATIONS


def new(subject: str, rcpts: tuple[str, ...] = ("alice@corp.test",)) -> NewMessage:
    env = Envelope(sender="s@example.test", recipients=list(rcpts), body_type=BodyType.EIGHT_BIT)
    body = f"Subject: {subject}\r\n\r\ncaf\xe9 \x00\xff\r\n.\r\n".encode("latin-1")
    return NewMessage(new_queue_id(), env, body, time.time())


@pytest.fixture
def url(postgres_cluster: PostgresCluster) -> str:
    return postgres_cluster.fresh_database()


@pytest.fixture
async def store(tmp_path: Path, url: str) -> AsyncIterator[PostgresStore]:
    s = PostgresStore(tmp_path / "data", StoreSettings(url=url))
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def sql(url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(url, autocommit=True) as db:
        yield db


async def test_commits_wait_for_the_wal_flush_and_the_body_is_in_the_database(
    store: PostgresStore, sql: psycopg.Connection
) -> None:
    assert store.read_connection().execute("SHOW synchronous_commit").fetchone() == ("on",)
    m = new("durable")
    await store.accept(m)
    # visible to another connection the moment accept returned: committed, not buffered
    assert sql.execute("SELECT body FROM messages WHERE id = %s", (m.id,)).fetchone() == (m.body,)
    assert not list((store.data_dir).glob("spool*")), "no spool segments on PostgreSQL"


async def test_concurrent_accepts_share_one_transaction(store: PostgresStore, sql: psycopg.Connection) -> None:
    before = sql.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()
    messages = [new(f"m{i}") for i in range(50)]
    await asyncio.gather(*(store.accept(m) for m in messages))
    assert {m.id for m in await store.pending()} == {m.id for m in messages}
    sql.execute("SELECT pg_stat_clear_snapshot()")
    after = sql.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()
    assert after[0] - before[0] < 50, "accepts were group-committed"


async def test_a_damaged_body_is_quarantined_never_delivered(store: PostgresStore, sql: psycopg.Connection) -> None:
    m = new("damaged")
    await store.accept(m)
    sql.execute("UPDATE messages SET body = %s WHERE id = %s", (m.body[:-1] + b"X", m.id))
    with pytest.raises(CorruptMessage):
        await store.read_body(m.id)
    assert {d["state"] for d in store.deliveries(m.id)} == {RcptState.QUARANTINED.value}
    assert (store.quarantine / f"{m.id}.partial").exists()
    assert await store.pending() == []


async def test_a_retired_message_gives_its_body_back(store: PostgresStore, sql: psycopg.Connection) -> None:
    from mailstandby.store.base import Outcome

    m = new("done")
    await store.accept(m)
    await store.record([Outcome(m.id, "alice@corp.test", RcptState.DELIVERED, 1, 0.0, "250 ok", "primary")])
    assert sql.execute("SELECT done, length(body) FROM messages WHERE id = %s", (m.id,)).fetchone() == (1, 0)


async def test_a_schema_newer_than_the_code_is_refused(tmp_path: Path, url: str, sql: psycopg.Connection) -> None:
    s = PostgresStore(tmp_path / "a", StoreSettings(url=url))
    await s.open()
    await s.close()
    assert sql.execute("SELECT version FROM schema_version").fetchone() == (len(PG_MIGRATIONS),)
    sql.execute("UPDATE schema_version SET version = version + 1")
    s = PostgresStore(tmp_path / "b", StoreSettings(url=url))
    with pytest.raises(StoreError, match=f"v{len(PG_MIGRATIONS) + 1} is newer"):
        await s.open()


async def test_an_unreachable_server_is_a_store_error_at_open(tmp_path: Path) -> None:
    s = PostgresStore(tmp_path, StoreSettings(url="postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"))
    with pytest.raises(StoreError, match="cannot connect"):
        await s.open()


async def test_a_database_server_crash_fails_the_accept_then_the_writer_reconnects(
    tmp_path: Path,
) -> None:
    """kill -9 of PostgreSQL: the accept in flight fails (the session answers 4xx), nothing
    acknowledged is lost, and the next accept after the restart works on a new connection."""
    cluster = PostgresCluster()  # a cluster of its own: the session's must not be killed
    cluster.start()
    try:
        s = PostgresStore(tmp_path, StoreSettings(url=cluster.url))
        await s.open()
        kept = new("before")
        await s.accept(kept)
        cluster.kill()
        with pytest.raises(StoreError):
            await s.accept(new("during"))
        cluster.start()
        after = new("after")
        async with asyncio.timeout(TIMEOUT):
            await s.accept(after)
        assert {m.id for m in await s.pending()} == {kept.id, after.id}
        assert await s.read_body(kept.id) == kept.body
        await s.close()
    finally:
        cluster.close()


@pytest.mark.parametrize(("server", "used"), [("off", "on"), ("local", "on"), ("remote_apply", "remote_apply")])
async def test_a_weak_commit_setting_is_raised_and_a_stronger_one_kept(
    tmp_path: Path, url: str, sql: psycopg.Connection, server: str, used: str
) -> None:
    sql.execute(f"ALTER DATABASE {sql.info.dbname} SET synchronous_commit = {server}")
    s = PostgresStore(tmp_path, StoreSettings(url=url))
    await s.open()
    try:
        assert s.read_connection().execute("SHOW synchronous_commit").fetchone() == (used,)
    finally:
        await s.close()
