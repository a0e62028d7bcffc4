"""`mailstandby notify readiness | test USER | status` and the template check of `check-config`.

These run beside a live server: they read the store, and `notify test` adds
rows (and a setup link) to the notifications table directly, as `mailstandby
passwd` does with credentials; the running server's notifier picks them up
within a few seconds and sends them.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time

from mailstandby.config import Config
from mailstandby.core.model import Address
from mailstandby.directory.base import NoticeKind
from mailstandby.directory.static import from_settings
from mailstandby.notify import compose, readiness, tokens
from mailstandby.notify.notifier import insert_rows, plan_announcement, read_status
from mailstandby.notify.templates import Templates


def check_templates(cfg: Config) -> list[str]:
    """Every broken notification template, rendered with a sample user (`file: problem`)."""
    return Templates(cfg.notify.templates).check(compose.sample_context(cfg.notify, cfg.node.hostname))


def _read_db(cfg: Config) -> sqlite3.Connection | None:
    path = cfg.node.data_dir / "mailstandby.db"
    if not path.exists():
        return None
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def show_readiness(cfg: Config, as_json: bool) -> int:
    db = _read_db(cfg)
    try:
        data = readiness.report(from_settings(cfg.directory).users(), db)
    finally:
        if db is not None:
            db.close()
    if as_json:
        print(json.dumps(data, indent=2))
        return 0
    for u in data["users"]:
        modes = ", ".join(f"{m}={n}" for m, n in u["modes"].items() if n) or "none"
        gaps = ", ".join(u["gaps"]) or "ready"
        print(f"{u['address']}: modes {modes}; devices {u['devices']}; {gaps}")
    counts = ", ".join(f"{g}={n}" for g, n in data["gaps"].items())
    print(f"{data['total']} users; {data['unreachable']} unreachable in an outage; {counts}")
    return 0


def send_test(cfg: Config, username: str) -> int:
    """Queue a SETUP notice (with a setup link when `notify.setup_url` is set) for one user."""
    from mailstandby.store.sqlite import connect, migrate

    try:
        user = from_settings(cfg.directory).lookup(Address.parse(username))
    except ValueError:
        user = None
    if user is None:
        print(f"mailstandby: {username} is not a user in the directory", file=sys.stderr)
        return 1
    occurrence = f"test-{time.time_ns()}"
    rows = plan_announcement(NoticeKind.SETUP, [user], occurrence)
    if not rows:
        print(f"mailstandby: {user.address} has no alternate address or mode to notify", file=sys.stderr)
        return 1
    cfg.node.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = tokens.load_key(cfg.node.data_dir)
    db = connect(cfg.node.data_dir / "mailstandby.db")
    try:
        migrate(db)
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        if cfg.notify.setup_url:
            hashed = tokens.token_hash(tokens.link_token(key, user.address, occurrence))
            tokens.add_token(db, hashed, user.address, tokens.Purpose.LINK, now, now + cfg.notify.link_lifetime)
        insert_rows(db, rows, now)
        db.execute("COMMIT")
    finally:
        db.close()
    print(f"test notification {occurrence} queued for {user.address}: {len(rows)} destination(s)")
    print("the running server sends it; see `mailstandby notify status`")
    return 0


def show_status(cfg: Config, as_json: bool) -> int:
    db = _read_db(cfg)
    if db is None:
        print("no notifications (no store yet)")
        return 0
    try:
        rows = read_status(db)
    finally:
        db.close()
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        extra = f" queue={r['queue_state']}" if r["queue_state"] else ""
        error = f"  {r['last_error']}" if r["last_error"] else ""
        print(
            f"{r['id']}  {r['kind']} {r['occurrence']}  {r['user']} -> {r['mode']}:{r['destination']}"
            f"  {r['state']} attempts={r['attempts']}{extra}{error}"
        )
    return 0
