"""The private PostgreSQL cluster fixture: a real server of Debian's, on its own port and data,
that keeps what it committed across a kill -9 (the scale-out store's tests build on this)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from tests.support.postgres import PostgresCluster


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    c = PostgresCluster()
    try:
        c.start()
        yield c
    finally:
        c.close()


def test_a_committed_row_survives_a_kill_9_of_the_server(cluster: PostgresCluster) -> None:
    with psycopg.connect(cluster.url, autocommit=True) as db:
        assert db.execute("SHOW synchronous_commit").fetchone() == ("on",)
        assert db.execute("SHOW fsync").fetchone() == ("on",)
        db.execute("CREATE TABLE t (id integer PRIMARY KEY, body bytea)")
        db.execute("INSERT INTO t VALUES (1, %s)", (b"\x00\xffmessage",))
    cluster.kill()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(cluster.url, connect_timeout=2).close()
    cluster.start()
    with psycopg.connect(cluster.url) as db:
        assert db.execute("SELECT body FROM t WHERE id = 1").fetchone() == (b"\x00\xffmessage",)
    assert "database system was interrupted" in cluster.log() or "not properly shut down" in cluster.log()


def test_two_clusters_side_by_side(cluster: PostgresCluster) -> None:
    other = PostgresCluster()
    try:
        other.start()
        assert other.port != cluster.port
        with psycopg.connect(cluster.url) as a, psycopg.connect(other.url) as b:
            a.execute("CREATE TABLE only_here (x int)")
            a.commit()
            found = b.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'only_here'").fetchone()
            assert found == (0,)
    finally:
        other.close()
