"""`mailstandby notify readiness | test USER | status` and the template check of `check-config`.

These run beside a live server: they read the store on a connection of their
own, and `notify test` adds rows (and a setup link) to it directly, as
`mailstandby passwd` does with credentials; the running server's notifier picks
them up within a few seconds and sends them.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from mailstandby.config import Config
from mailstandby.core.model import Address
from mailstandby.directory.base import NoticeKind
from mailstandby.directory.static import from_settings
from mailstandby.notify import compose, readiness, tokens
from mailstandby.notify.notifier import plan_announcement
from mailstandby.notify.templates import Templates
from mailstandby.store.database import database_exists
from mailstandby.store.sqlite_notify import SQLiteNotifyDB


def check_templates(cfg: Config) -> list[str]:
    """Every broken notification template, rendered with a sample user (`file: problem`)."""
    return Templates(cfg.notify.templates).check(compose.sample_context(cfg.notify, cfg.node.hostname))


def _read_db(cfg: Config) -> SQLiteNotifyDB | None:
    """The store read-only, or None when there is none yet."""
    if not database_exists(cfg.node.data_dir, cfg.store.url):
        return None
    return SQLiteNotifyDB(cfg.node.data_dir, read_only=True, url=cfg.store.url)


def show_readiness(cfg: Config, as_json: bool) -> int:
    db = _read_db(cfg)
    try:
        data = readiness.report(from_settings(cfg.directory).users(), set() if db is None else db.passwords())
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
    db = SQLiteNotifyDB(cfg.node.data_dir, url=cfg.store.url)
    try:
        now = time.time()
        links = []
        if cfg.notify.setup_url:
            links = [(tokens.token_hash(tokens.link_token(key, user.address, occurrence)), user.address)]
        asyncio.run(db.add_notices(rows, now, links=links, link_expires=now + cfg.notify.link_lifetime))
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
        rows = db.status()
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
