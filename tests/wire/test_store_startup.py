"""`mailstandby serve` refuses to start on a store it cannot use: exit status 2, a message naming the
configuration file and `store.url` (never repeating the URL, which may hold a password).

Wrong URL syntax, a server that does not answer (within `store.connect_timeout`), refused credentials,
a schema newer than this code (both versions named), and a node whose shared settings differ from
those of the nodes already running on the same database (the keys named).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.support.postgres import PostgresCluster
from tests.support.standby import Standby

from mailstandby.store.database import open_database
from mailstandby.store.postgres_schema import PG_MIGRATIONS

BOUND = 120  # seconds any refused start may take, connect timeouts included


def serve(node: Standby) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailstandby", "serve", "-c", str(node.config_path)],
        cwd=node.root,
        capture_output=True,
        text=True,
        timeout=BOUND,
    )


def node_on(root: Path, url: str, **sections: dict[str, Any]) -> Standby:
    store = {"url": url, "connect_timeout": 2, **sections.pop("store", {})}
    return Standby(root, primary_port=9, store=store, **sections)


def refused(node: Standby, *expected: str) -> str:
    done = serve(node)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    for text in expected:
        assert text in done.stderr, done.stderr
    return done.stderr


def test_wrong_url_syntax(tmp_path: Path) -> None:
    node = node_on(tmp_path, "postgresql://db /mailstandby")
    refused(node, f"{node.config_path}: store.url: must be empty (SQLite) or a postgresql:// URL")


def test_a_server_that_refuses_connections(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    node = node_on(tmp_path, f"postgresql://msb:secret-pw@127.0.0.1:{port}/mailstandby")
    stderr = refused(node, f"{node.config_path}: store.url: cannot open the store: cannot connect")
    assert "secret-pw" not in stderr


def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    """A host that takes the TCP connection and says nothing (a hung server, a black-holing firewall):
    the start gives up after store.connect_timeout instead of waiting forever."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the kernel's backlog; nobody ever answers
        node = node_on(tmp_path, f"postgresql://msb@127.0.0.1:{silent.getsockname()[1]}/mailstandby")
        stderr = refused(node, f"{node.config_path}: store.url: cannot open the store: cannot connect")
    assert "timeout" in stderr.lower()


@pytest.fixture
def password_role(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A role that must give its password (scram-sha-256) on the session's cluster; its name."""
    hba = postgres_cluster.data / "pg_hba.conf"
    rules = hba.read_text()
    hba.write_text("host all msb_pw 127.0.0.1/32 scram-sha-256\n" + rules)
    with psycopg.connect(postgres_cluster.url, autocommit=True) as db:
        db.execute("DROP ROLE IF EXISTS msb_pw")
        db.execute("CREATE ROLE msb_pw LOGIN PASSWORD 'right-password'")
        db.execute("SELECT pg_reload_conf()")
    try:
        yield "msb_pw"
    finally:
        hba.write_text(rules)
        with psycopg.connect(postgres_cluster.url, autocommit=True) as db:
            db.execute("SELECT pg_reload_conf()")


def test_refused_credentials(tmp_path: Path, postgres_cluster: PostgresCluster, password_role: str) -> None:
    url = f"postgresql://{password_role}:wrong-password@127.0.0.1:{postgres_cluster.port}/mailstandby"
    node = node_on(tmp_path, url)
    stderr = refused(node, f"{node.config_path}: store.url: cannot open the store: cannot connect")
    assert "password authentication failed" in stderr and "wrong-password" not in stderr


def test_a_schema_newer_than_the_code(tmp_path: Path, postgres_cluster: PostgresCluster) -> None:
    url = postgres_cluster.fresh_database()
    db = open_database(tmp_path, url)  # the schema as this code makes it
    db.execute("UPDATE schema_version SET version = version + 1")
    db.close()
    node = node_on(tmp_path / "node", url)
    newer, ours = len(PG_MIGRATIONS) + 1, len(PG_MIGRATIONS)
    refused(node, f"{node.config_path}: store.url: ", f"store schema v{newer} is newer than this mailstandby (v{ours})")


def test_a_second_node_with_other_shared_settings_is_refused(tmp_path: Path, postgres_cluster: PostgresCluster) -> None:
    url = postgres_cluster.fresh_database()
    first = node_on(tmp_path / "a", url)
    with first:
        other = node_on(
            tmp_path / "b",
            url,
            directory={"domains": ["corp.test", "other.test"]},
            failover={"control": "manual", "scope": "per-address"},
            node={"hostname": "b.corp.test"},  # node-local: may differ
        )
        stderr = refused(other, f"{other.config_path}: not started: the nodes already running on store.url")
        assert "directory.domains, failover.scope;" in stderr
        assert "node.hostname" not in stderr

        same = node_on(tmp_path / "c", url, node={"hostname": "c.corp.test"})
        with same:  # the same shared settings: it joins
            assert same.proc is not None and same.proc.poll() is None
    # no node runs any more: the next one to start sets the cluster's settings
    changed = node_on(tmp_path / "b", url, failover={"control": "manual", "scope": "per-address"})
    with changed:
        assert changed.proc is not None and changed.proc.poll() is None
