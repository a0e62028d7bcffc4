"""Failover state, its history, health changes and administrator accounts in SQLite.

The state row and the transition that produced it are written in one
transaction, with an audit entry: after a crash the state read back is always
one that was recorded with who, when and why.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from mailstandby.core.model import Mode
from mailstandby.dns.switch import RRset
from mailstandby.failover.machine import State
from mailstandby.store.database import SQLStore
from mailstandby.store.fencing import fence, record_leader_action
from mailstandby.store.sqlite_schema import UPSERT_ADMIN, insert_audit


def _users(text: str | None) -> frozenset[str] | None:
    return None if text is None else frozenset(json.loads(text))


def _text(users: frozenset[str] | None) -> str | None:
    return None if users is None else json.dumps(sorted(users))


class SQLiteFailoverStore:
    def __init__(self, store: SQLStore) -> None:
        self.store = store

    async def load(self) -> State:
        def run(db: sqlite3.Connection) -> State:
            row = db.execute("SELECT mode, users, seq, since, held FROM failover_state WHERE id = 1").fetchone()
            if row is None:
                return State()
            return State(Mode(row[0]), _users(row[1]), row[2], row[3], bool(row[4]))

        return await self.store.call(run)

    async def save(self, before: State, after: State, *, term: int, actor: str, reason: str, peer: str = "") -> None:
        """The new state, the transition and its audit entry, atomically, if `term` is still the
        current leadership term (else NotLeading and nothing is written)."""
        now = time.time()

        def run(db: sqlite3.Connection) -> None:
            fence(db, term)
            db.execute(
                "INSERT INTO failover_state (id, mode, users, seq, since, held, term) VALUES (1, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET mode = excluded.mode, users = excluded.users, seq = excluded.seq,"
                " since = excluded.since, held = excluded.held, term = excluded.term",
                (after.mode.value, _text(after.users), after.seq, after.since, int(after.held), term),
            )
            db.execute(
                "INSERT INTO failover_log (at, actor, from_mode, to_mode, users, seq, reason, term)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (now, actor, before.mode.value, after.mode.value, _text(after.users), after.seq, reason[:1000], term),
            )
            insert_audit(db, actor, f"failover.{after.mode.value}", "ok", peer=peer, detail=reason, at=now)

        await self.store.call(run)

    async def transitions(self, limit: int = 100) -> list[dict[str, Any]]:
        def run(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute(
                "SELECT at, actor, from_mode, to_mode, users, seq, reason FROM failover_log ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
            keys = ("at", "actor", "from", "to", "users", "seq", "reason")
            return [dict(zip(keys, (*r[:4], json.loads(r[4]) if r[4] else None, *r[5:]), strict=True)) for r in rows]

        return await self.store.call(run)

    async def record_health(self, target: str, status: str, detail: str) -> None:
        def run(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO health_log (at, target, status, detail) VALUES (?, ?, ?, ?)",
                (time.time(), target, status, detail[:500]),
            )

        await self.store.call(run)

    async def health(self, limit: int = 100) -> list[dict[str, Any]]:
        def run(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute(
                "SELECT at, target, status, detail FROM health_log ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
            return [dict(zip(("at", "target", "status", "detail"), r, strict=True)) for r in rows]

        return await self.store.call(run)

    async def leader_action(self, term: int, node: str, action: str, detail: str = "") -> None:
        """Record an action of the leader in `term` (a DNS switch or restore); NotLeading when the
        term is over (nothing recorded: the action must not be carried out)."""
        await self.store.call(lambda db: record_leader_action(db, term, node, action, detail))

    async def leader_log(self, limit: int = 100) -> list[dict[str, Any]]:
        def run(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute(
                "SELECT at, term, node, action, detail FROM leader_log ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
            return [dict(zip(("at", "term", "node", "action", "detail"), r, strict=True)) for r in rows]

        return await self.store.call(run)

    # -- DNS records saved by a switch ---------------------------------------------------
    async def save_dns(self, rrsets: Sequence[RRset]) -> None:
        now = time.time()

        def run(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM dns_saved")
            db.executemany(
                "INSERT INTO dns_saved (name, rdtype, ttl, rdatas, saved_at) VALUES (?, ?, ?, ?, ?)",
                [(r.name, r.rdtype, r.ttl, json.dumps(list(r.rdatas)), now) for r in rrsets],
            )

        await self.store.call(run)

    async def saved_dns(self) -> list[RRset]:
        def run(db: sqlite3.Connection) -> list[RRset]:
            rows = db.execute("SELECT name, rdtype, ttl, rdatas FROM dns_saved ORDER BY rowid").fetchall()
            return [RRset(n, t, ttl, tuple(json.loads(r))) for n, t, ttl, r in rows]

        return await self.store.call(run)

    async def forget_dns(self) -> None:
        await self.store.call(lambda db: db.execute("DELETE FROM dns_saved"))

    # -- administrators and the audit trail ------------------------------------------
    async def admin_hash(self, name: str) -> str | None:
        def run(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT hash FROM admins WHERE name = ?", (name,)).fetchone()
            return row[0] if row else None

        return await self.store.call(run)

    async def set_admin_hash(self, name: str, hashed: str, *, actor: str) -> None:
        now = time.time()

        def run(db: sqlite3.Connection) -> None:
            db.execute(UPSERT_ADMIN, (name, hashed, now))
            insert_audit(db, actor, "admin.set-password", "ok", detail=f"administrator {name}", at=now)

        await self.store.call(run)

    async def audit(self, actor: str, action: str, outcome: str, *, peer: str = "", detail: str = "") -> None:
        """Append to the audit trail."""

        await self.store.call(lambda db: insert_audit(db, actor, action, outcome, peer=peer, detail=detail))

    async def audit_log(self, limit: int = 100, action: str = "") -> list[dict[str, Any]]:
        def run(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute(
                "SELECT at, actor, action, outcome, peer, detail FROM audit WHERE action LIKE ? ORDER BY id DESC"
                " LIMIT ?",
                (action + "%", limit),
            ).fetchall()
            return [dict(zip(("at", "actor", "action", "outcome", "peer", "detail"), r, strict=True)) for r in rows]

        return await self.store.call(run)
