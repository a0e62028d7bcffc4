"""Fixtures for the component tier: the SMTP receiving side in-process.

SMTPServer + GatewayIntake + SQLiteStore on 127.0.0.1:0 with small limits
(64 KiB messages, 5 recipients, 5 errors, 1 KiB lines) and a trustme
certificate. Every gateway checks at teardown that no session outlived its
client (maddy `CheckSMTPConnLeak`) and that no task was left running.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio.plugin
import trustme
from smtp_harness import HOSTNAME, SETTINGS, BufferPeak, Gateway, GatewayFactory
from tests.support import backends
from tests.support.backends import BACKENDS
from tests.support.postgres import PostgresCluster

from mailstandby.config import SMTPSettings, StoreSettings
from mailstandby.directory.base import User
from mailstandby.directory.static import StaticDirectory
from mailstandby.intake import GatewayIntake
from mailstandby.smtp.server import SMTPServer
from mailstandby.store.base import QueuedMessage
from mailstandby.store.sqlite import SQLiteStore
from mailstandby.transport import Connection

# -- event loops ---------------------------------------------------------------------
# Production runs on uvloop where available (node.event_loop = "auto"), and
# the transport details this tier checks (STARTTLS buffer handling, pausing,
# flushing) differ between loops: every test runs on both.

try:
    import uvloop
except ImportError:  # pragma: no cover - not on this platform
    uvloop = None

if hasattr(pytest_asyncio.plugin, "PytestAsyncioSpecs"):  # the loop-factory hook (pytest-asyncio >= 1.3)

    def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
        factories: dict[str, Any] = {"asyncio": asyncio.new_event_loop}
        if uvloop is not None:
            factories["uvloop"] = uvloop.new_event_loop
        return factories


# -- TLS -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ca.issue_cert("127.0.0.1", "localhost", HOSTNAME).configure_cert(ctx)
    return ctx


@pytest.fixture(scope="session")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
async def make_gateway(
    tmp_path: Path, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> AsyncIterator[GatewayFactory]:
    """Build gateways with the standard limits, overridable per test (`max_recipients=2`)."""
    made: list[Gateway] = []

    async def make(*, tls: bool = True, **overrides: Any) -> Gateway:
        settings = SMTPSettings(**{**SETTINGS, **overrides})
        directory = StaticDirectory(
            domains=["corp.test"],
            users=[User("alice@corp.test", ("a.l@corp.test",)), User("bob@corp.test")],
        )
        data_dir = tmp_path / f"data{len(made)}"
        store = SQLiteStore(data_dir, StoreSettings())
        await store.open()
        accepted: list[QueuedMessage] = []
        intake = GatewayIntake(directory, store, settings, accepted.append)
        server = SMTPServer(settings, intake, hostname=HOSTNAME, tls_context=server_tls if tls else None)
        gw = Gateway(server, store, intake, directory, settings, data_dir, client_tls, accepted)
        made.append(gw)
        await server.start()
        return gw

    yield make
    for gw in made:
        await gw.finish()
    current = asyncio.current_task()
    leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert leftover == [], f"tasks left running: {leftover}"


@pytest.fixture
async def gw(make_gateway: GatewayFactory) -> Gateway:
    """The standard gateway: corp.test with alice (alias a.l) and bob, 64 KiB, 5 recipients, 5 errors."""
    return await make_gateway()


@pytest.fixture
def input_buffer_peak(monkeypatch: pytest.MonkeyPatch) -> BufferPeak:
    seen = BufferPeak()
    real = Connection.data_received

    def data_received(self: Connection, data: bytes) -> None:
        real(self, data)
        seen.peak = max(seen.peak, len(self._buf))

    monkeypatch.setattr(Connection, "data_received", data_received)
    return seen


# -- the store's backends ----------------------------------------------------------------
# One private PostgreSQL cluster per session, started by the first test that asks for it;
# every test on it gets a database of its own.


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend, `sqlite` or `postgres`: a test using it runs once on each."""
    return str(request.param)


@pytest.fixture
def store_settings(request: pytest.FixtureRequest, backend: str) -> StoreSettings:
    """`[store]` for this test's backend (PostgreSQL: a fresh database)."""
    cluster = request.getfixturevalue("postgres_cluster") if backend == "postgres" else None
    return backends.store_settings(backend, cluster)
