"""`mailstandby status | failover | failback | audit | admin`: the administrator's commands.

All but `admin` go through the admin HTTP API with an administrator's
credentials, so they are authenticated and audited exactly like any other
client. The API's address comes from `--url`, else from the running server's
`run/listeners.json`, else from `admin.listen`; its certificate is checked
against the configured one (or the self-signed one in the data directory).
The password comes from `--password-file`, `MAILSTANDBY_ADMIN_PASSWORD`, or a
prompt.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import ssl
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from mailstandby.config import Config

COMMANDS = ("status", "failover", "failback", "audit", "admin", "dns")


def add_commands(sub: Any, config_help: str) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", type=Path, help=config_help)
        p.add_argument("--url", help="admin API base URL (default: the running server's, from the data directory)")
        p.add_argument("--admin", default=os.environ.get("MAILSTANDBY_ADMIN", "admin"), help="administrator name")
        p.add_argument("--password-file", type=Path, help="file holding the administrator's password")

    p = sub.add_parser("status", help="failover state, primary health and queue depth")
    common(p)
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p = sub.add_parser("failover", help="declare an outage: route mail to the standby")
    common(p)
    p.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    p.add_argument("--user", action="append", dest="users", help="only this user (repeatable); default everyone")
    p = sub.add_parser("failback", help="declare the primary back: sync the outage mail to it")
    common(p)
    p.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    p.add_argument("--end", action="store_true", help="end a failback in progress now (reports what is unsynced)")
    p = sub.add_parser("audit", help="the audit trail, newest first")
    common(p)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--action", default="", help="only actions starting with this, e.g. `failover` or `login`")
    p = sub.add_parser("dns", help="the MX switch: status, or switch/restore by hand")
    common(p)
    p.add_argument("action", choices=["status", "switch", "restore"])
    p.add_argument("--reason", help="why (required for switch and restore; audited)")
    p = sub.add_parser("admin", help="set an administrator's password (creates the administrator)")
    p.add_argument("-c", "--config", type=Path, help=config_help)
    p.add_argument("name", help="administrator name")
    p.add_argument("--password-file", type=Path, help="read the password from this file (default: prompt, or stdin)")


def run(args: argparse.Namespace, cfg: Config) -> int:
    if args.command == "admin":
        return _set_admin(cfg, args.name, args.password_file)
    try:
        client = _client(args, cfg)
    except (OSError, ValueError) as e:
        print(f"mailstandby: {e}", file=sys.stderr)
        return 1
    try:
        with client:
            return _call(args, client)
    except httpx.HTTPError as e:
        print(f"mailstandby: cannot reach the admin API at {client.base_url}: {e}", file=sys.stderr)
        return 1


def _call(args: argparse.Namespace, client: httpx.Client) -> int:
    if args.command == "status":
        r = client.get("/api/v1/status")
        if r.status_code == 200:
            print(json.dumps(r.json(), indent=2) if args.json else _status_text(r.json()))
    elif args.command == "dns":
        if args.action == "status":
            r = client.get("/api/v1/dns")
        elif not args.reason:
            print("mailstandby: --reason is required", file=sys.stderr)
            return 2
        else:
            r = client.post(f"/api/v1/dns/{args.action}", json={"reason": args.reason})
        if r.status_code == 200:
            print(_dns_text(r.json()))
    elif args.command == "audit":
        r = client.get("/api/v1/audit", params={"limit": args.limit, "action": args.action})
        if r.status_code == 200:
            for e in r.json():
                peer = f" from {e['peer']}" if e["peer"] else ""
                detail = f": {e['detail']}" if e["detail"] else ""
                print(f"{_when(e['at'])}  {e['actor']}{peer}  {e['action']}  {e['outcome']}{detail}")
    else:
        path = "/api/v1/failover" if args.command == "failover" else "/api/v1/failback"
        body: dict[str, Any] = {"reason": args.reason}
        if args.command == "failover" and args.users:
            body["users"] = args.users
        if args.command == "failback" and args.end:
            path += "/end"
        r = client.post(path, json=body)
        if r.status_code == 200:
            print(_status_text({"failover": r.json()["failover"]}))
    if r.status_code != 200:
        print(f"mailstandby: {r.status_code}: {_error(r)}", file=sys.stderr)
        return 1
    return 0


def _error(r: httpx.Response) -> str:
    try:
        return str(r.json().get("error", r.text))
    except ValueError:
        return r.text[:200]


def _client(args: argparse.Namespace, cfg: Config) -> httpx.Client:
    url = args.url or _running_url(cfg)
    password = _password(args.password_file, f"Password for administrator {args.admin}: ")
    verify: ssl.SSLContext | bool = True
    if url.startswith("https:"):
        # Trust the certificate the server presents by configuration (self-signed by default).
        verify = ssl.create_default_context()
        verify.load_verify_locations(str(cfg.tls.cert or cfg.node.data_dir / "tls" / "selfsigned.crt"))
    return httpx.Client(base_url=url, auth=(args.admin, password), verify=verify, timeout=30.0)


def _running_url(cfg: Config) -> str:
    scheme = "https" if cfg.admin.tls else "http"
    try:
        info = json.loads((cfg.node.data_dir / "run" / "listeners.json").read_text())
        return f"{scheme}://{info['admin'][0]}"
    except (OSError, ValueError, KeyError, IndexError):
        pass
    if not cfg.admin.listen:
        raise ValueError("the admin API is off (admin.listen is empty); give --url")
    return f"{scheme}://{cfg.admin.listen[0]}"


def _password(path: Path | None, prompt: str) -> str:
    if path is not None:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    if "MAILSTANDBY_ADMIN_PASSWORD" in os.environ:
        return os.environ["MAILSTANDBY_ADMIN_PASSWORD"]
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    return sys.stdin.readline().rstrip("\r\n")


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _status_text(body: dict[str, Any]) -> str:
    f = body["failover"]
    scope = "everyone" if f["users"] is None else ", ".join(f["users"])
    lines = [f"failover: {f['mode']} since {_when(f['since']) if f['since'] else 'start'} (outage {f['outage']})"]
    if f["mode"] != "normal":
        lines.append(f"  scope: {scope}")
    if f.get("held"):
        lines.append("  held: an administrator's decision the monitor has not yet confirmed")
    lines.append(f"  control: {f['control']}")
    if "health" in body:
        h = body["health"]
        lines.append(f"primary: {h['primary']['status']} ({h['primary']['detail'] or 'no probe yet'})")
        for address, a in h["addresses"].items():
            lines.append(f"  {address}: {a['status']} ({a['detail']})")
    if "queue" in body:
        lines.append(f"queue: {body['queue']['depth']} messages")
    return "\n".join(lines)


def _dns_text(body: dict[str, Any]) -> str:
    lines = [f"dns: {'switched to the standby' if body['switched'] else 'as the primary had it'}"]
    for r in body["current"]:
        lines.append(f"  {r['name']} {r['type']} {' '.join(r['records']) or '(none)'} ttl={r['ttl']}")
    if body["saved"]:
        lines.append("saved (restored on failback):")
        for r in body["saved"]:
            lines.append(f"  {r['name']} {r['type']} {' '.join(r['records']) or '(none)'} ttl={r['ttl']}")
    return "\n".join(lines)


def _set_admin(cfg: Config, name: str, password_file: Path | None) -> int:
    """Store an argon2id hash of an administrator's password (the server need not be stopped)."""
    from mailstandby.cli.passwords import new_password_hash
    from mailstandby.store.sqlite_admin import set_admin_password

    if not name or len(name) > 64 or any(c.isspace() or c == ":" for c in name):
        print("mailstandby: an administrator name has 1-64 characters, no spaces or ':'", file=sys.stderr)
        return 1
    prompt = f"New password for administrator {name}: "
    hashed = new_password_hash(prompt, password_file, account=name, min_length=cfg.auth.min_password_length)
    if hashed is None:
        return 1
    set_admin_password(cfg.node.data_dir, name, hashed, actor=getpass.getuser(), url=cfg.store.url)
    print(f"password set for administrator {name}")
    return 0
