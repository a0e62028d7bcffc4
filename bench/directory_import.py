#!/usr/bin/env python3
"""Directory import from a private OpenLDAP slapd: how long a large directory takes.

Usage (as root, with the venv's python):

    /tmp/venv/bin/python bench/directory_import.py                 # 10,000 users, page size 500
    /tmp/venv/bin/python bench/directory_import.py --users 2000

Times, wall clock (time.perf_counter), each once:
  import    fetch every user (paged search), validate, plan and apply in one transaction (empty store);
  reimport  the same with nothing changed (fetch + compare; no write);
  reload    what a running server does on a new generation: read the stored users and build the
            combined directory (runs in a thread there; the event loop only swaps a reference).

The last line is `users=N import_s=... reimport_s=... reload_s=...`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.ldap import Slapd
from tests.support.ldaptree import PEOPLE, SERVICE_DN, SERVICE_PASSWORD, people

from mailstandby.config import DirectorySettings, LDAPSettings
from mailstandby.directory.importer import run_import
from mailstandby.directory.view import combine
from mailstandby.store.sqlite_directory import SQLiteDirectoryDB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=500)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="mailstandby-dirbench-"))
    try:
        slapd = Slapd(root / "ldap")
        slapd.load_ldif(people(args.users, {}))
        (root / "pw").write_text(SERVICE_PASSWORD)
        with slapd:
            ldap = LDAPSettings(
                url=slapd.url,
                bind_dn=SERVICE_DN,
                password_file=root / "pw",
                base_dn=PEOPLE,
                page_size=args.page_size,
            )
            settings = DirectorySettings(domains=["corp.test"], ldap=ldap)
            db = SQLiteDirectoryDB(root)
            t0 = time.perf_counter()
            plan, _ = run_import(db, settings, origin="bench", dry_run=False)
            t1 = time.perf_counter()
            again, _ = run_import(db, settings, origin="bench", dry_run=False)
            t2 = time.perf_counter()
            _, users = db.snapshot()
            directory = combine(settings.domains, [], users)
            t3 = time.perf_counter()
            db.close()
        if len(plan.diff.added) != args.users or not again.diff.empty or len(directory) != args.users:
            print(f"bench: FAILED: imported {len(plan.diff.added)} of {args.users}", file=sys.stderr)
            return 1
        print(f"users={args.users} import_s={t1 - t0:.2f} reimport_s={t2 - t1:.2f} reload_s={t3 - t2:.2f}")
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
