"""Fenced writes: the leader's work is recorded only while its term is the current one.

`fence(db, term)` runs first in the transaction of every write made on the leader's behalf
(failover state changes, notice-sent marks, sync-run starts, DNS switch records). It updates the
one `cluster_leader` row only where the term is still `term`: the row lock it takes is held to the
end of the transaction, so a node taking the lead (which increments the term in the same row)
waits for this transaction and then reads what it wrote; a transaction that finds another term
raises NotLeading and writes nothing. On SQLite the row says term 1 for good (core.leadership.Solo).
"""

from __future__ import annotations

import time
from typing import Any

from mailstandby.core.leadership import NotLeading


def fence(db: Any, term: int) -> None:
    """Hold the leadership row for this transaction; NotLeading unless `term` is the current term."""
    cur = db.execute("UPDATE cluster_leader SET term = term WHERE id = 1 AND term = ?", (term,))
    if cur.rowcount != 1:
        raise NotLeading(f"term {term} is no longer the current term")


def record_leader_action(db: Any, term: int, node: str, action: str, detail: str = "") -> None:
    """A fenced entry of the leader's log (a sync-run start, a DNS switch or restore)."""
    fence(db, term)
    db.execute(
        "INSERT INTO leader_log (at, term, node, action, detail) VALUES (?, ?, ?, ?, ?)",
        (time.time(), term, node, action, detail[:1000]),
    )


def current_term(db: Any) -> int:
    row = db.execute("SELECT term FROM cluster_leader WHERE id = 1").fetchone()
    return int(row[0]) if row else 0
