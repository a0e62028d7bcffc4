"""Several nodes, one configuration: a node joining a cluster checks its shared settings.

Every running node holds a session-level advisory lock in shared mode (`_NODES_LOCK`) on its
writer connection. A starting node, alone in the check (`_CHECK_LOCK`, per transaction):
- gets the lock exclusively: no node is running, so its settings become the cluster's
  (recorded in `meta` as `settings:<key>` -> digest); a changed configuration is rolled out by
  stopping every node and starting them with the new one;
- does not get it: nodes are running, and a key whose digest differs from the recorded one is
  a `SettingsMismatch` naming the keys; the node refuses to start (exit 2).
It then holds the shared lock. After a reconnect (the database failed over) the writer takes
the shared lock again on the new primary (`rejoin`); the settings were replicated with the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from mailstandby.store.base import SettingsMismatch

if TYPE_CHECKING:
    from mailstandby.store.postgres import PgConnection

_NODES_LOCK = 0x6D736E64  # held shared by every running node
_CHECK_LOCK = 0x6D736366  # one node checks at a time
PREFIX = "settings:"


def join_cluster(db: PgConnection, settings: Mapping[str, int]) -> None:
    """Record `settings` as the cluster's (no node running) or check them against it."""
    db.execute("BEGIN")
    try:
        db.execute("SELECT pg_advisory_xact_lock(?)", (_CHECK_LOCK,))
        alone = bool(db.execute("SELECT pg_try_advisory_lock(?)", (_NODES_LOCK,)).fetchone()[0])
        if alone:
            db.execute("DELETE FROM meta WHERE key LIKE ?", (PREFIX + "%",))
            db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)", [(PREFIX + k, v) for k, v in settings.items()]
            )
        else:
            found = db.execute("SELECT key, value FROM meta WHERE key LIKE ?", (PREFIX + "%",)).fetchall()
            recorded = {key.removeprefix(PREFIX): int(value) for key, value in found}
            differ = sorted(k for k, v in settings.items() if k in recorded and recorded[k] != v)
            if differ:
                raise SettingsMismatch(differ)
        db.execute("SELECT pg_advisory_lock_shared(?)", (_NODES_LOCK,))
        if alone:
            db.execute("SELECT pg_advisory_unlock(?)", (_NODES_LOCK,))
        db.execute("COMMIT")
    except BaseException:
        if not db.broken:
            db.execute("ROLLBACK")
        raise


def rejoin(db: PgConnection) -> None:
    """On a new writer connection: count as a running node again."""
    db.execute("SELECT pg_advisory_lock_shared(?)", (_NODES_LOCK,))
