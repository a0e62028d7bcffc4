"""The `mailstandby` command line: serve | check-config | init | queue | passwd | directory | status | failover |
failback | audit | admin | dns | notify | sync | version."""

from __future__ import annotations

import argparse
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from mailstandby import __version__
from mailstandby.cli import control
from mailstandby.config import Config, ConfigError, load
from mailstandby.directory.base import Directory
from mailstandby.directory.static import DirectoryError, from_settings
from mailstandby.store.base import SettingsMismatch, StoreError

if TYPE_CHECKING:
    from mailstandby.store.sqlite_directory import SQLiteDirectoryDB

DEFAULT_CONFIG = Path("mailstandby.toml")


def _sample() -> Path:
    return Path(str(resources.files("mailstandby").joinpath("sample.toml")))


def _load(path: Path | None) -> Config:
    """Load `path`; with none given, ./mailstandby.toml, else the sample in ./mailstandby-data."""
    if path is None:
        if DEFAULT_CONFIG.exists():
            path = DEFAULT_CONFIG
        else:
            print(
                f"mailstandby: no {DEFAULT_CONFIG} here; using the built-in sample config "
                f"(`mailstandby init` writes it out for editing)",
                file=sys.stderr,
            )
            cfg = load(_sample())
            return cfg.model_copy(
                update={"node": cfg.node.model_copy(update={"data_dir": Path.cwd() / "mailstandby-data"})}
            )
    cfg = load(path)
    from_settings(cfg.directory)  # fail early on a bad directory source
    from mailstandby.directory.importer import check

    check(cfg.directory)  # and on a bad attribute mapping or column name
    return cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailstandby", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "run the standby mail system"),
        ("check-config", "validate the configuration and exit"),
        ("queue", "list queued mail"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("-c", "--config", type=Path, help=f"config file (default ./{DEFAULT_CONFIG})")
    p = sub.add_parser("passwd", help="set a user's standby password (IMAP/POP3/submission)")
    p.add_argument("-c", "--config", type=Path, help=f"config file (default ./{DEFAULT_CONFIG})")
    p.add_argument("user", help="the user's address (or an alias)")
    p.add_argument("--password-file", type=Path, help="read the password from this file (default: prompt, or stdin)")
    _add_directory_parser(sub)
    p = sub.add_parser("init", help="write the sample configuration to a file")
    p.add_argument("path", type=Path, nargs="?", default=DEFAULT_CONFIG)
    control.add_commands(sub, f"config file (default ./{DEFAULT_CONFIG})")
    _add_notify_commands(sub)
    sub.add_parser("version", help="print the version")
    sub.add_parser("config-doc", help="print the configuration reference (docs/config.md)")
    from mailstandby.cli import sync as synccli  # failback sync: `sync run`, `sync status`

    synccli.add_commands(sub)
    args = parser.parse_args(argv)

    if args.command == "version":
        print(f"mailstandby {__version__}")
        return 0
    if args.command == "config-doc":
        from mailstandby.configdoc import render

        print(render(), end="")
        return 0
    if args.command == "init":
        if args.path.exists():
            print(f"mailstandby: {args.path} exists; not overwriting", file=sys.stderr)
            return 1
        shutil.copyfile(_sample(), args.path)
        print(f"wrote {args.path}")
        return 0
    try:
        cfg = _load(args.config)
    except ConfigError as e:
        print(f"mailstandby: configuration has {len(e.problems)} problem(s):", file=sys.stderr)
        for problem in e.problems:
            print(f"  {e.path}: {problem}", file=sys.stderr)
        return 2
    except DirectoryError as e:
        print(f"mailstandby: directory: {e}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        from mailstandby.notify.cli import check_templates

        broken = check_templates(cfg)
        if broken:
            print(f"mailstandby: {len(broken)} notification template(s) broken:", file=sys.stderr)
            for problem in broken:
                print(f"  notify.templates: {problem}", file=sys.stderr)
            return 2
        print(f"{cfg.source}: ok")
        return 0
    try:
        return _run_command(cfg, args)
    except SettingsMismatch as e:  # a cluster's nodes must agree (shared_settings.py)
        print(
            f"mailstandby: {cfg.source}: not started: the nodes already running on store.url have other values for"
            f" {', '.join(e.keys)}; every node of a cluster needs the same",
            file=sys.stderr,
        )
        return 2
    except StoreError as e:  # unreachable server, wrong credentials, schema newer than this code
        key = "store.url" if cfg.store.url else "node.data_dir"
        print(f"mailstandby: {cfg.source}: {key}: cannot open the store: {e}", file=sys.stderr)
        return 2


def _run_command(cfg: Config, args: argparse.Namespace) -> int:
    """A command that works on the store (the server itself included)."""
    if args.command == "notify":
        return _notify(cfg, args)
    if args.command == "queue":
        return _show_queue(cfg)
    if args.command == "passwd":
        return _set_password(cfg, args.user, args.password_file)
    if args.command in control.COMMANDS:
        return control.run(args, cfg)
    if args.command == "directory":
        return _directory(cfg, args)
    if args.command == "sync":
        from mailstandby.cli import sync as synccli

        return synccli.main(cfg, args)
    from mailstandby.app import run
    from mailstandby.obs import setup_logging

    setup_logging(cfg.node.log_level)
    try:
        run(cfg)
    except OSError as e:
        print(f"mailstandby: cannot start: {e}", file=sys.stderr)
        return 1
    return 0


def _add_notify_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("notify", help="user notifications: readiness, test, status")
    p.add_argument("-c", "--config", type=Path, help=f"config file (default ./{DEFAULT_CONFIG})")
    what = p.add_subparsers(dest="notify_command", required=True)
    r = what.add_parser("readiness", help="users who cannot be reached or cannot use the standby")
    r.add_argument("--json", action="store_true", help="print plain data (JSON)")
    t = what.add_parser("test", help="send a test notification (setup notice) to a user's alternates")
    t.add_argument("user", help="the user's address (or an alias)")
    s = what.add_parser("status", help="every notification and its delivery state")
    s.add_argument("--json", action="store_true", help="print plain data (JSON)")
    for q in (r, t, s):  # `-c FILE` also after the subcommand, as with the other commands
        q.add_argument("-c", "--config", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def _notify(cfg: Config, args: argparse.Namespace) -> int:
    from mailstandby.notify import cli

    if args.notify_command == "readiness":
        return cli.show_readiness(cfg, args.json)
    if args.notify_command == "test":
        return cli.send_test(cfg, args.user)
    return cli.show_status(cfg, args.json)


def _set_password(cfg: Config, username: str, password_file: Path | None) -> int:
    """Store an argon2id hash of the user's standby password (the server need not be stopped)."""
    from mailstandby.cli.passwords import new_password_hash
    from mailstandby.core.model import Address
    from mailstandby.store.sqlite_admin import set_user_password

    try:
        user = _combined_directory(cfg).lookup(Address.parse(username))
    except ValueError:
        user = None
    if user is None:
        print(f"mailstandby: {username} is not a user in the directory", file=sys.stderr)
        return 1
    prompt = f"New standby password for {user.address}: "
    hashed = new_password_hash(prompt, password_file, account=user.address, min_length=cfg.auth.min_password_length)
    if hashed is None:
        return 1
    set_user_password(cfg.node.data_dir, user.address, hashed, url=cfg.store.url)
    print(f"standby password set for {user.address}")
    return 0


# -- directory import (docs/directory.md) ------------------------------------------------


def _add_directory_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("directory", help="import users and devices from LDAP and device exports; show them")
    p.add_argument("-c", "--config", type=Path, help=f"config file (default ./{DEFAULT_CONFIG})")
    actions = p.add_subparsers(dest="action", required=True)
    imp = actions.add_parser("import", help="import now and apply (a running server picks it up)")
    imp.add_argument("--dry-run", action="store_true", help="print the changes, apply nothing")
    actions.add_parser("diff", help="print what an import would change")
    show = actions.add_parser("show", help="list the users, or show one")
    show.add_argument("user", nargs="?", help="an address (primary or alias)")


def _directory_db(cfg: Config) -> SQLiteDirectoryDB:
    from mailstandby.store.sqlite_directory import SQLiteDirectoryDB

    return SQLiteDirectoryDB(cfg.node.data_dir, url=cfg.store.url)


def _combined_directory(cfg: Config) -> Directory:
    """The config file's users combined with the stored import, as the server sees them."""
    from mailstandby.directory.importer import current

    db = _directory_db(cfg)
    try:
        return current(db, cfg.directory)
    finally:
        db.close()


def _directory(cfg: Config, args: argparse.Namespace) -> int:
    from mailstandby.directory.cli import run as run_directory

    db = _directory_db(cfg)
    try:
        return run_directory(
            args.action, db, cfg.directory, user=getattr(args, "user", None), dry_run=getattr(args, "dry_run", False)
        )
    finally:
        db.close()


def _show_queue(cfg: Config) -> int:
    from mailstandby.store.sqlite_admin import queue_listing

    rows = queue_listing(cfg.node.data_dir, url=cfg.store.url)
    if rows is None:
        print("queue is empty (no store yet)")
        return 0
    for mid, sender, rcpt, attempts, last in rows:
        print(f"{mid}  <{sender}> -> <{rcpt}>  attempts={attempts}  {last}")
    print(f"{len({r[0] for r in rows})} messages, {len(rows)} recipients queued")
    return 0


if __name__ == "__main__":
    sys.exit(main())
