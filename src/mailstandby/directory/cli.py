"""`mailstandby directory import [--dry-run] | diff | show [USER]`, given the stored directory.

A running server picks up an applied import within `directory.reload_interval`
seconds; nothing needs a restart.
"""

from __future__ import annotations

import datetime
import hashlib
import sys
from typing import TextIO

from mailstandby.config import DirectorySettings
from mailstandby.core.model import Address
from mailstandby.directory.base import User
from mailstandby.directory.importer import configured, current, run_import
from mailstandby.directory.static import DirectoryError
from mailstandby.directory.stored import StoredDirectory


def run(
    action: str,
    records: StoredDirectory,
    settings: DirectorySettings,
    *,
    user: str | None = None,
    dry_run: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    if action == "show":
        return show(records, settings, user, out)
    if not configured(settings):
        print("mailstandby: nothing to import: set [directory.ldap] url or [directory.devices] files", file=sys.stderr)
        return 2
    dry_run = dry_run or action == "diff"
    try:
        plan, fresh = run_import(records, settings, origin="command line", dry_run=dry_run)
    except DirectoryError as e:
        print(f"mailstandby: directory import failed; the previous directory stays in force:\n  {e}", file=sys.stderr)
        return 1
    for note in fresh.notes:
        print(f"note: {note}", file=out)
    for line in plan.diff.lines():
        print(line, file=out)
    if dry_run:
        print("dry run: nothing applied", file=out)
    elif plan.diff.empty:
        print("no changes", file=out)
    else:
        print(f"applied as directory generation {records.generation()}", file=out)
    return 0


def show(records: StoredDirectory, settings: DirectorySettings, user: str | None, out: TextIO) -> int:
    view = current(records, settings)
    if user is None:
        last = records.last_import()
        when = "never imported" if last is None else (f"generation {last[0]}, imported {_time(last[1])} by {last[2]}")
        print(f"directory: {len(view)} users in {len(view.domains)} domains; {when}", file=out)
        for u in sorted(view.users(), key=lambda u: u.address.lower()):
            state = "" if u.enabled else "  [disabled]"
            extra = f"  aliases={len(u.aliases)} devices={len(u.devices)} keys={len(u.keys)}"
            print(f"{u.address}{extra}{state}", file=out)
        return 0
    try:
        address = Address.parse(user)
    except ValueError:
        print(f"mailstandby: {user!r} is not an address", file=sys.stderr)
        return 1
    found = next((u for u in view.users() if address.key in {Address.parse(a).key for a in u.addresses}), None)
    if found is None:
        print(f"mailstandby: {user} is not in the directory", file=sys.stderr)
        return 1
    for line in describe(found):
        print(line, file=out)
    return 0


def describe(u: User) -> list[str]:
    p = u.preferences
    lines = [
        f"address:      {u.address}",
        f"enabled:      {'yes' if u.enabled else 'no (mail to it gets 550 5.1.1; its standby mail is kept)'}",
        f"display name: {u.display_name}",
        f"aliases:      {', '.join(u.aliases)}",
        f"alternates:   {', '.join(u.alternates)}",
        f"notify URLs:  {len(u.notify_urls)}",  # URLs may carry tokens: counted, not shown
        f"preferences:  forward={p.forward.value} summary_length={p.summary_length}"
        f" notify={','.join(sorted(k.value for k in p.notify)) or 'none'}"
        f" quiet_hours={'-'.join(map(str, p.quiet_hours)) if p.quiet_hours else 'none'}",
    ]
    for d in u.devices:
        push = " push=yes" if d.push_url else ""
        lines.append(f"device:       {d.id} platform={d.platform.value} phone={d.phone} sms={d.sms_gateway}{push}")
    for k in u.keys:
        digest = hashlib.sha256(k.data.encode()).hexdigest()[:16]
        lines.append(f"key:          {k.kind} sha256:{digest}")
    return lines


def _time(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
