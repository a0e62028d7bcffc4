"""Per-recipient delivery claims of the nodes sharing one PostgreSQL store.

A queued recipient is delivered by the node holding its claim (`deliveries.claimed_by`, the node
id, until `lease_until`):
- a node claims what it accepts, in the accepting transaction, so new mail is delivered by the
  node that took it; other nodes take only due retries (unclaimed) and expired claims;
- a claim is taken with `SELECT … FOR UPDATE SKIP LOCKED`: two nodes looking at once never wait
  for each other and never both get a row;
- the holder renews its lease while the recipient is in its queue; every outcome it records clears
  the claim, and is written only while the claim is still its own (a node paused past its lease
  must not overwrite what the node that took over recorded);
- the in-flight mark (`sent_at`, queue/inflight.py) is set only under a held claim, before the
  send; a claim taken over from a dead node keeps the mark it left, so a delivery that node may
  have made is looked up in the primary mailbox before it is sent again (without a mark, that node
  had not started sending).

These statements are PostgreSQL's own (`= ANY(?)` with a list, `UPDATE … FROM … RETURNING`); the
SQLite store has one node and keeps no claims.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailstandby.store.base import QueuedRecipient, RcptState

_QUEUED = RcptState.QUEUED.value
_RETURNED = (
    "d.rcpt, d.attempts, d.next_attempt, d.last_reply, d.dsn_notify, d.dsn_orcpt, d.sent_at, d.delay_reported, c.was"
)
_TAKE = (
    "UPDATE deliveries d SET claimed_by = ?, lease_until = ? FROM c"
    " WHERE d.message_id = c.message_id AND d.rcpt = c.rcpt RETURNING d.message_id, " + _RETURNED
)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A recipient this node now holds; `was`: the node that held it before ('' if none)."""

    message_id: str
    recipient: QueuedRecipient
    was: str


def _claimed(rows: list[Any]) -> list[Claimed]:
    return [
        Claimed(mid, QueuedRecipient(r, a, n, last, nfy, orc, sent, delayed), was)
        for mid, r, a, n, last, nfy, orc, sent, delayed, was in rows
    ]


def claim(db: Any, node: str, message_id: str, rcpts: list[str], now: float, lease: float) -> list[Claimed]:
    """Claim (or renew) `rcpts` of one message: those queued and unclaimed, this node's, or expired."""
    return _claimed(
        db.execute(
            "WITH c AS (SELECT message_id, rcpt, claimed_by AS was FROM deliveries"
            " WHERE message_id = ? AND rcpt = ANY(?) AND state = ?"
            " AND (claimed_by IN ('', ?) OR lease_until < ?) FOR UPDATE SKIP LOCKED) " + _TAKE,
            (message_id, rcpts, _QUEUED, node, now, node, now + lease),
        ).fetchall()
    )


def claim_due(db: Any, node: str, now: float, lease: float, limit: int) -> list[Claimed]:
    """Claim up to `limit` recipients other nodes left: due retries nobody holds, and expired claims."""
    return _claimed(
        db.execute(
            "WITH c AS (SELECT message_id, rcpt, claimed_by AS was FROM deliveries"
            " WHERE state = ? AND ((claimed_by = '' AND next_attempt <= ?) OR (claimed_by <> '' AND lease_until < ?))"
            " ORDER BY next_attempt LIMIT ? FOR UPDATE SKIP LOCKED) " + _TAKE,
            (_QUEUED, now, now, limit, node, now + lease),
        ).fetchall()
    )


def renew(db: Any, node: str, message_ids: list[str], until: float) -> int:
    """Extend this node's claims on these messages' recipients; returns how many it still holds."""
    cur = db.execute(
        "UPDATE deliveries SET lease_until = ? WHERE claimed_by = ? AND state = ? AND message_id = ANY(?)",
        (until, node, _QUEUED, message_ids),
    )
    return int(cur.rowcount)


def mark_sent(db: Any, node: str, message_id: str, rcpts: list[str], at: float) -> int:
    """The in-flight mark on recipients this node still holds; returns how many were marked."""
    cur = db.execute(
        "UPDATE deliveries SET sent_at = ? WHERE message_id = ? AND rcpt = ANY(?) AND state = ? AND claimed_by = ?",
        (at, message_id, rcpts, _QUEUED, node),
    )
    return int(cur.rowcount)


OUTCOME = (
    "UPDATE deliveries SET state=?, attempts=?, next_attempt=?, last_reply=?, route=?, updated_at=?,"
    " sent_at=CASE WHEN ? THEN sent_at ELSE 0 END, claimed_by='', lease_until=0"
    " WHERE message_id=? AND rcpt=? AND state=? AND claimed_by=?"
)
"""An outcome, written only by the node holding the claim; it releases the claim."""

UNCLAIMED = "(d.claimed_by = '' OR d.claimed_by = ? OR d.lease_until < ?)"
"""A `pending()` filter: recipients no other node holds a live claim on."""
