"""`mailstandby sync run | status`: the failback sync from the command line, on the store directly.

`run` shows a progress bar (rich, on stderr) and ends with one summary line;
exit status 0 when everything is synchronized, 1 when messages are left
(refused by the primary or given up: `sync status` lists them), 2 when the sync
cannot start (configuration, credentials), 3 when the primary failed during the
run (run it again once it is back: it resumes). `status` prints a table, or
with `--json` the same data the engine's `status()` returns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from mailstandby.config import Config
from mailstandby.store.database import database_exists
from mailstandby.store.paths import database_path
from mailstandby.store.sqlite_sync import SQLiteSyncRecords
from mailstandby.sync.engine import PrimaryUnavailable, SyncEngine, SyncError
from mailstandby.sync.plan import Progress as SyncProgress
from mailstandby.sync.records import RunLock


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sync", help="failback sync into the primary (run | status)")
    actions = p.add_subparsers(dest="sync_command", required=True)
    run = actions.add_parser("run", help="copy standby-only mail and the phones' flags into the primary")
    run.add_argument("-c", "--config", type=Path, help="config file (default ./mailstandby.toml)")
    run.add_argument("--user", action="append", help="only this user (repeatable; default: every user)")
    status = actions.add_parser("status", help="per user: messages to sync, done, failed, pending")
    status.add_argument("-c", "--config", type=Path, help="config file (default ./mailstandby.toml)")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")


def main(cfg: Config, args: argparse.Namespace) -> int:
    data_dir = cfg.node.data_dir
    if not database_exists(data_dir, cfg.store.url):
        print(f"mailstandby: no store at {database_path(data_dir)}: nothing to sync", file=sys.stderr)
        return 0 if args.sync_command == "status" else 2
    engine = SyncEngine(
        SQLiteSyncRecords(data_dir, url=cfg.store.url),
        RunLock(data_dir),
        cfg.sync,
        cfg.primary,
        hostname=cfg.node.hostname,
    )
    if args.sync_command == "status":
        return asyncio.run(_status(engine, as_json=args.json))
    return asyncio.run(_run(engine, args.user))


async def _status(engine: SyncEngine, *, as_json: bool) -> int:
    try:
        status = await engine.status()
        failures = await engine.records.failures()
    finally:
        await engine.close()
    total = status.total
    if as_json:
        data = {
            "users": status.as_dict(),
            "total": {"total": total.total, "done": total.done, "failed": total.failed, "pending": total.pending},
            "failed": [{"user": u, "folder": f, "body_id": b, "attempts": a, "error": e} for u, f, b, a, e in failures],
        }
        print(json.dumps(data, indent=2))
        return 0
    table = Table(title="failback sync")
    for column in ("user", "total", "done", "failed", "pending"):
        table.add_column(column, justify="left" if column == "user" else "right")
    for user, s in sorted(status.users.items()):
        table.add_row(user, str(s.total), str(s.done), str(s.failed), str(s.pending))
    table.add_row("all", str(total.total), str(total.done), str(total.failed), str(total.pending), style="bold")
    console = Console()
    console.print(table)
    for user, folder, body_id, attempts, error in failures:
        console.print(f"given up: {user} {folder} message {body_id} after {attempts} attempts: {error}", markup=False)
    return 0


async def _run(engine: SyncEngine, users: list[str] | None) -> int:
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("syncing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[user]}"),
        TimeRemainingColumn(),
        console=console,
    )
    task = bar.add_task("sync", total=None, user="")

    def progress(p: SyncProgress) -> None:
        bar.update(task, total=p.total, completed=p.done + p.failed, user=p.user)

    try:
        with bar:
            report = await engine.run(users, progress=progress)
    except PrimaryUnavailable as e:
        print(f"mailstandby: sync stopped: {e}; run it again once the primary is back", file=sys.stderr)
        return 3
    except SyncError as e:
        print(f"mailstandby: sync cannot run: {e}", file=sys.stderr)
        return 2
    finally:
        await engine.close()
    reasons = " ".join(f"{k}={v}" for k, v in sorted(report.reasons.items()))
    print(
        f"sync: planned={report.planned} failed={len(report.failures)} pending={report.pending}"
        f" elapsed={report.elapsed:.1f}s {reasons}"
    )
    for f in report.failures:
        print(f"given up: {f.user} {f.folder} message {f.body_id}: {f.error}", file=sys.stderr)
    for user, error in sorted(report.errors.items()):
        print(f"not synchronized: {user}: {error}", file=sys.stderr)
    return 0 if report.complete and not report.failures else 1
