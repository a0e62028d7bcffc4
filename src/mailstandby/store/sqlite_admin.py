"""What the administrator's commands write and read in the store directly, beside a running server.

`mailstandby passwd` and `mailstandby admin NAME` store password hashes (argon2id, never a
password) on a connection of their own, schema brought up to date first; the server reads them
at the next login. `mailstandby queue` lists the queue on a read-only connection.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from mailstandby.store.paths import database_path
from mailstandby.store.sqlite import connect, insert_audit, migrate


def _open(data_dir: Path) -> sqlite3.Connection:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = connect(database_path(data_dir))
    try:
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def set_user_password(data_dir: Path, user: str, hashed: str) -> None:
    """A user's standby password hash (IMAP/POP3/submission)."""
    db = _open(data_dir)
    try:
        db.execute(
            "INSERT OR REPLACE INTO credentials (user, hash, updated_at) VALUES (?, ?, ?)",
            (user, hashed, time.time()),
        )
    finally:
        db.close()


def set_admin_password(data_dir: Path, name: str, hashed: str, *, actor: str) -> None:
    """An administrator's password hash and its audit entry, in one transaction."""
    db = _open(data_dir)
    try:
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT OR REPLACE INTO admins (name, hash, updated_at) VALUES (?, ?, ?)", (name, hashed, now))
        insert_audit(db, actor, "admin.set-password", "ok", peer="cli", detail=f"administrator {name}")
        db.execute("COMMIT")
    finally:
        db.close()


def queue_listing(data_dir: Path) -> list[tuple[str, str, str, int, str]] | None:
    """(message id, sender, recipient, attempts, last reply) of every queued recipient, oldest message first;
    None when there is no store yet."""
    path = database_path(data_dir)
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(
            "SELECT m.id, m.sender, d.rcpt, d.attempts, d.last_reply FROM deliveries d"
            " JOIN messages m ON m.id = d.message_id WHERE d.state = 'queued' ORDER BY m.received_at"
        ).fetchall()
    finally:
        db.close()
