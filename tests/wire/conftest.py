"""Fixtures for the wire tier: real Postfix + Dovecot as the primary mail system."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# `tests.support` must import under plain `python -m pytest` from the repo root whatever
# the rootdir/import mode: put the repository root on sys.path.
_REPO_ROOT = Path(__file__).resolve().parents[2]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from tests.support.postgres import PostgresCluster  # noqa: E402
from tests.support.primary import Primary  # noqa: E402

PRIMARY_USERS = {
    "alice@corp.test": "pw-alice",
    "bob@corp.test": "pw-bob",
    "carol@corp.test": "pw-carol",
}
PRIMARY_ALIASES = {"a.liddell@corp.test": "alice@corp.test"}


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[Primary]:
    """A started private Postfix (SMTP) + Dovecot (IMAP/LMTP/POP3) for corp.test.

    Users alice/bob/carol@corp.test (passwords pw-alice, ...); a.liddell@ is an alias of
    alice@; anything else @corp.test gets 550 5.1.1 at RCPT.  Stopped (and any leftover
    process killed) at teardown, also when the test fails; its logs and configs are then
    in tmp_path/primary/{log,config} (the live tree is under /tmp, see Primary).
    """
    p = Primary(tmp_path / "primary", users=dict(PRIMARY_USERS), aliases=dict(PRIMARY_ALIASES))
    try:
        p.start()
        yield p
    finally:
        p.close()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One private PostgreSQL cluster for the session's tests that run mailstandby on it."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store_section(request: pytest.FixtureRequest) -> dict[str, str]:
    """`[store]` for a Standby: empty (SQLite) or a fresh database on the session's cluster."""
    if request.param == "postgres":
        return {"url": request.getfixturevalue("postgres_cluster").fresh_database()}
    return {}
