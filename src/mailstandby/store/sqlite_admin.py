"""What the administrator's commands write and read in the store directly, beside a running server.

`mailstandby passwd` and `mailstandby admin NAME` store password hashes (argon2id, never a
password) on a connection of their own, schema brought up to date first; the server reads them
at the next login. `mailstandby queue` lists the queue on a read-only connection.
"""

from __future__ import annotations

import time
from pathlib import Path

from mailstandby.store.database import database_exists, open_database
from mailstandby.store.sqlite_schema import UPSERT_ADMIN, UPSERT_CREDENTIAL, insert_audit


def set_user_password(data_dir: Path, user: str, hashed: str, *, url: str = "") -> None:
    """A user's standby password hash (IMAP/POP3/submission)."""
    db = open_database(data_dir, url)
    try:
        db.execute(UPSERT_CREDENTIAL, (user, hashed, time.time()))
    finally:
        db.close()


def set_admin_password(data_dir: Path, name: str, hashed: str, *, actor: str, url: str = "") -> None:
    """An administrator's password hash and its audit entry, in one transaction."""
    db = open_database(data_dir, url)
    try:
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        db.execute(UPSERT_ADMIN, (name, hashed, now))
        insert_audit(db, actor, "admin.set-password", "ok", peer="cli", detail=f"administrator {name}")
        db.execute("COMMIT")
    finally:
        db.close()


def queue_listing(data_dir: Path, *, url: str = "") -> list[tuple[str, str, str, int, str]] | None:
    """(message id, sender, recipient, attempts, last reply) of every queued recipient, oldest message first;
    None when there is no store yet."""
    if not database_exists(data_dir, url):
        return None
    db = open_database(data_dir, url, read_only=True)
    try:
        return db.execute(
            "SELECT m.id, m.sender, d.rcpt, d.attempts, d.last_reply FROM deliveries d"
            " JOIN messages m ON m.id = d.message_id WHERE d.state = 'queued' ORDER BY m.received_at, m.id, d.rcpt"
        ).fetchall()
    finally:
        db.close()
