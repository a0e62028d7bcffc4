"""The SQLite schema: its versions (`MIGRATIONS`), opening a connection with the pragmas every
connection needs, bringing a database to the newest version, and the statements several area
modules (`store/sqlite_*.py`) share.

Version n of `MIGRATIONS` and of `PG_MIGRATIONS` (store/postgres_schema.py) make the same tables and
columns; a unit test compares them. The version lives in `PRAGMA user_version`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

from mailstandby.files import create_private
from mailstandby.store.base import StoreError

MIGRATIONS: list[str] = [
    # 1: messages and their per-recipient queue entries
    """
    CREATE TABLE messages (
        id          TEXT PRIMARY KEY,
        sender      TEXT NOT NULL,
        received_at REAL NOT NULL,
        size        INTEGER NOT NULL,
        segment     INTEGER NOT NULL,
        offset      INTEGER NOT NULL,
        crc         INTEGER NOT NULL,
        body_type   TEXT NOT NULL,
        smtputf8    INTEGER NOT NULL,
        origin      TEXT NOT NULL,
        done        INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX messages_segment ON messages (segment, done);
    CREATE TABLE deliveries (
        message_id   TEXT NOT NULL REFERENCES messages (id),
        rcpt         TEXT NOT NULL,
        state        TEXT NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL,
        last_reply   TEXT NOT NULL DEFAULT '',
        route        TEXT NOT NULL DEFAULT '',
        updated_at   REAL NOT NULL,
        PRIMARY KEY (message_id, rcpt)
    );
    CREATE INDEX deliveries_state ON deliveries (state, message_id);
    """,
    # 2: standby mailboxes (store/sqlite_mailbox.py) and standby credentials
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    CREATE TABLE mailboxes (
        id            INTEGER PRIMARY KEY,
        user          TEXT NOT NULL,
        name          TEXT NOT NULL,
        uidvalidity   INTEGER NOT NULL,
        uidnext       INTEGER NOT NULL DEFAULT 1,
        highestmodseq INTEGER NOT NULL DEFAULT 1,
        special_use   TEXT,
        subscribed    INTEGER NOT NULL DEFAULT 0,
        UNIQUE (user, name)
    );
    CREATE TABLE bodies (id INTEGER PRIMARY KEY, data BLOB NOT NULL, refs INTEGER NOT NULL);
    CREATE TABLE mail (
        mailbox_id    INTEGER NOT NULL REFERENCES mailboxes (id),
        uid           INTEGER NOT NULL,
        body_id       INTEGER NOT NULL REFERENCES bodies (id),
        flags         TEXT NOT NULL DEFAULT '',
        internal_date REAL NOT NULL,
        size          INTEGER NOT NULL,
        modseq        INTEGER NOT NULL,
        journaled     INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (mailbox_id, uid)
    ) WITHOUT ROWID;
    CREATE INDEX mail_journal ON mail (journaled, internal_date);
    CREATE TABLE credentials (user TEXT PRIMARY KEY, hash TEXT NOT NULL, updated_at REAL NOT NULL);
    """,
    # 3: the audit trail (logins now; administrator actions later)
    """
    CREATE TABLE audit (
        id      INTEGER PRIMARY KEY,
        at      REAL NOT NULL,
        actor   TEXT NOT NULL,
        action  TEXT NOT NULL,
        outcome TEXT NOT NULL,
        peer    TEXT NOT NULL DEFAULT '',
        detail  TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX audit_at ON audit (at);
    """,
    # 4: failover state (one row), its transitions, the monitor's health changes, administrators
    """
    CREATE TABLE failover_state (
        id     INTEGER PRIMARY KEY CHECK (id = 1),
        mode   TEXT NOT NULL,
        users  TEXT,
        seq    INTEGER NOT NULL,
        since  REAL NOT NULL,
        held   INTEGER NOT NULL
    );
    CREATE TABLE failover_log (
        id        INTEGER PRIMARY KEY,
        at        REAL NOT NULL,
        actor     TEXT NOT NULL,
        from_mode TEXT NOT NULL,
        to_mode   TEXT NOT NULL,
        users     TEXT,
        seq       INTEGER NOT NULL,
        reason    TEXT NOT NULL
    );
    CREATE TABLE health_log (
        id     INTEGER PRIMARY KEY,
        at     REAL NOT NULL,
        target TEXT NOT NULL,
        status TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX health_log_at ON health_log (at);
    CREATE TABLE admins (name TEXT PRIMARY KEY, hash TEXT NOT NULL, updated_at REAL NOT NULL);
    """,
    # 5: the DNS records a switch replaced, to be put back on failback
    """
    CREATE TABLE dns_saved (
        name     TEXT NOT NULL,
        rdtype   TEXT NOT NULL,
        ttl      INTEGER NOT NULL,
        rdatas   TEXT NOT NULL,
        saved_at REAL NOT NULL,
        PRIMARY KEY (name, rdtype)
    );
    """,
    # 6: user notifications (one row per user, kind, occurrence and destination), setup links and codes
    """
    CREATE TABLE notifications (
        id           INTEGER PRIMARY KEY,
        user         TEXT NOT NULL,
        kind         TEXT NOT NULL,
        occurrence   TEXT NOT NULL,
        mode         TEXT NOT NULL,
        destination  TEXT NOT NULL,
        payload      TEXT NOT NULL DEFAULT '',
        state        TEXT NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL DEFAULT 0,
        last_error   TEXT NOT NULL DEFAULT '',
        message_id   TEXT NOT NULL DEFAULT '',
        created_at   REAL NOT NULL,
        updated_at   REAL NOT NULL,
        UNIQUE (user, kind, occurrence, mode, destination)
    );
    CREATE INDEX notifications_due ON notifications (state, next_attempt);
    CREATE TABLE setup_tokens (
        hash       TEXT PRIMARY KEY,
        user       TEXT NOT NULL,
        purpose    TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        used_at    REAL,
        tries      INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX setup_tokens_user ON setup_tokens (user, purpose);
    """,
    # 7: directory import (store/sqlite_directory.py): users imported from LDAP and the device gateway, one row per
    # user (JSON), and one row per applied import whose largest generation tells the server to reload
    """
    CREATE TABLE directory_users (
        key        TEXT PRIMARY KEY,
        source     TEXT NOT NULL,
        enabled    INTEGER NOT NULL,
        data       TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE directory_imports (
        generation INTEGER PRIMARY KEY,
        at         REAL NOT NULL,
        origin     TEXT NOT NULL,
        added      INTEGER NOT NULL,
        changed    INTEGER NOT NULL,
        disabled   INTEGER NOT NULL,
        removed    INTEGER NOT NULL
    );
    """,
    # 8: failback sync (sync/): one record per standby message per user and primary folder
    """
    CREATE TABLE sync_items (
        user        TEXT NOT NULL,
        body_id     INTEGER NOT NULL,
        folder      TEXT NOT NULL,
        kind        TEXT NOT NULL,
        state       TEXT NOT NULL,
        flags       TEXT NOT NULL DEFAULT '',
        attempts    INTEGER NOT NULL DEFAULT 0,
        reason      TEXT NOT NULL DEFAULT '',
        last_error  TEXT NOT NULL DEFAULT '',
        primary_uid INTEGER,
        updated_at  REAL NOT NULL,
        PRIMARY KEY (user, body_id, folder)
    );
    CREATE INDEX sync_items_state ON sync_items (state, user);
    """,
    # 9: \\Recent (RFC 3501 §2.3.2): the highest UID a session has claimed per mailbox; what is
    # there at the upgrade counts as claimed
    """
    ALTER TABLE mailboxes ADD COLUMN recent_uid INTEGER NOT NULL DEFAULT 0;
    UPDATE mailboxes SET recent_uid = uidnext - 1;
    """,
    # 10: the DSN extension (RFC 3461): RET and ENVID per message, NOTIFY and ORCPT per recipient
    """
    ALTER TABLE messages ADD COLUMN dsn_ret TEXT NOT NULL DEFAULT '';
    ALTER TABLE messages ADD COLUMN dsn_envid TEXT NOT NULL DEFAULT '';
    ALTER TABLE deliveries ADD COLUMN dsn_notify TEXT NOT NULL DEFAULT '';
    ALTER TABLE deliveries ADD COLUMN dsn_orcpt TEXT NOT NULL DEFAULT '';
    """,
    # 11: deliveries marked in flight before they are sent (nonzero until a known outcome is recorded),
    # so that after a crash an unknown outcome is looked up in the primary mailbox before sending again
    """
    ALTER TABLE deliveries ADD COLUMN sent_at REAL NOT NULL DEFAULT 0;
    """,
    # 12: per-recipient claims of the nodes sharing a PostgreSQL store (unused on SQLite: one node)
    """
    ALTER TABLE deliveries ADD COLUMN claimed_by TEXT NOT NULL DEFAULT '';
    ALTER TABLE deliveries ADD COLUMN lease_until REAL NOT NULL DEFAULT 0;
    """,
    # 13: the leadership's fencing term (one node here: term 1 for good), carried by the leader's writes
    """
    CREATE TABLE cluster_leader (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        term        INTEGER NOT NULL,
        node        TEXT NOT NULL,
        lease_until REAL NOT NULL
    );
    INSERT INTO cluster_leader (id, term, node, lease_until) VALUES (1, 1, '', 0);
    ALTER TABLE failover_state ADD COLUMN term INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE failover_log ADD COLUMN term INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE notifications ADD COLUMN term INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE leader_log (
        id     INTEGER PRIMARY KEY AUTOINCREMENT,
        at     REAL NOT NULL,
        term   INTEGER NOT NULL,
        node   TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    """,
    # 14: when a delay notice (RFC 3461 NOTIFY=DELAY) was queued for a recipient (0: none), so one is sent once
    """
    ALTER TABLE deliveries ADD COLUMN delay_reported REAL NOT NULL DEFAULT 0;
    """,
]

UPSERT_CREDENTIAL = (
    "INSERT INTO credentials (user, hash, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT (user) DO UPDATE SET hash = excluded.hash, updated_at = excluded.updated_at"
)
UPSERT_ADMIN = (
    "INSERT INTO admins (name, hash, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, updated_at = excluded.updated_at"
)


def insert_audit(
    db: sqlite3.Connection, actor: str, action: str, outcome: str, *, peer: str = "", detail: str = "", at: float = 0.0
) -> None:
    """One entry of the audit trail (who, what, how it ended, from where; never a secret)."""
    db.execute(
        "INSERT INTO audit (at, actor, action, outcome, peer, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (at or time.time(), actor[:256], action, outcome, peer, detail[:1000]),
    )


def connect(path: Path) -> sqlite3.Connection:
    with contextlib.suppress(FileNotFoundError):  # no directory: sqlite3 says so below
        create_private(path)  # 0600 whatever the umask; SQLite gives -wal and -shm the same mode
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA busy_timeout=10000")
    return db


def migrate(db: sqlite3.Connection) -> int:
    """Bring the schema to the newest version; returns the version."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise StoreError(f"store schema v{version} is newer than this mailstandby (v{len(MIGRATIONS)})")
    for n, script in enumerate(MIGRATIONS[version:], start=version + 1):
        db.execute("BEGIN IMMEDIATE")
        for statement in filter(str.strip, script.split(";")):
            db.execute(statement)
        db.execute(f"PRAGMA user_version={n}")
        db.execute("COMMIT")
    return len(MIGRATIONS)
