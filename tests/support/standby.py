"""Runs mailstandby as a real subprocess for wire tests: start, SIGTERM, kill -9, restart.

The listener port is chosen by the kernel (`127.0.0.1:0`) and read back from
`DATA_DIR/run/listeners.json`, which the server writes once it listens.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from tests.support.database import query, query_dicts


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def render_config(sections: dict[str, dict[str, Any]], users: list[dict[str, Any]]) -> str:
    out = []
    for name, values in sections.items():
        out.append(f"[{name}]")
        out += [f"{k} = {toml_value(v)}" for k, v in values.items()]
        out.append("")
    for user in users:
        out.append("[[directory.users]]")
        out += [f"{k} = {toml_value(v)}" for k, v in user.items()]
        out.append("")
    return "\n".join(out)


class Standby:
    def __init__(self, root: Path, *, primary_port: int, protocol: str = "smtp", **overrides: dict[str, Any]) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.config_path = root / "mailstandby.toml"
        self.log_path = root / "mailstandby.log"
        sections: dict[str, dict[str, Any]] = {
            "node": {"hostname": "standby.corp.test", "data_dir": "data", "shutdown_grace": 5.0},
            "smtp": {"listen": ["127.0.0.1:0"]},
            "directory": {"domains": ["corp.test"]},
            "primary": {
                "host": "127.0.0.1",
                "port": primary_port,
                "protocol": protocol,
                "connect_timeout": 5.0,
                "command_timeout": 30.0,
                "data_timeout": 60.0,
            },
            "queue": {"retry_initial": 0.5, "retry_max": 2.0, "concurrency": 4},
            # Tests that are not about failover keep routing where they put it.
            "failover": {"control": "manual"},
            "admin": {"listen": ["127.0.0.1:0"]},
        }
        for name, values in overrides.items():
            sections.setdefault(name, {}).update(values)
        self.data_dir = root / sections["node"]["data_dir"]  # an absolute override wins
        self.store_url = str(sections.get("store", {}).get("url", ""))  # set: the PostgreSQL store
        users = [
            {"address": "alice@corp.test", "aliases": ["a.liddell@corp.test"]},
            {"address": "bob@corp.test"},
            {"address": "carol@corp.test"},
            {"address": "ghost@corp.test"},  # known here, unknown to the primary
        ]
        root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(render_config(sections, users))
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.listeners: dict[str, int] = {}

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self, timeout: float = 20) -> None:
        listeners = self.data_dir / "run" / "listeners.json"
        listeners.unlink(missing_ok=True)
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mailstandby", "serve", "-c", str(self.config_path)],
                stdout=log,
                stderr=log,
                cwd=self.root,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"mailstandby exited with {self.proc.returncode}:\n{self.log()}")
            try:
                info = json.loads(listeners.read_text())
            except (OSError, ValueError):
                time.sleep(0.05)
                continue
            if info.get("pid") == self.proc.pid:
                self.listeners = {
                    name: int(addrs[0].rsplit(":", 1)[1]) for name, addrs in info.items() if name != "pid"
                }
                self.port = self.listeners["smtp"]
                return
            time.sleep(0.05)
        raise AssertionError(f"mailstandby did not start listening:\n{self.log()}")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def set_password(self, user: str, password: str) -> None:
        """`mailstandby passwd` as an administrator would run it."""
        subprocess.run(
            [sys.executable, "-m", "mailstandby", "passwd", "-c", str(self.config_path), user],
            input=password + "\n",
            text=True,
            check=True,
            capture_output=True,
            timeout=60,
        )

    def cli(self, *args: str, password: str | None = None, admin: str = "admin") -> subprocess.CompletedProcess[str]:
        """Run `mailstandby ARGS -c CONFIG` as an administrator would (the password on stdin)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSTANDBY_")}
        env["MAILSTANDBY_ADMIN"] = admin
        return subprocess.run(
            [sys.executable, "-m", "mailstandby", *args, "-c", str(self.config_path)],
            input=(password or "") + "\n",
            text=True,
            capture_output=True,
            timeout=60,
            env=env,
        )

    def add_admin(self, name: str, password: str) -> None:
        done = self.cli("admin", name, password=password)
        assert done.returncode == 0, done.stderr

    def api(self, admin: str | None = "admin", password: str = "") -> httpx.Client:
        """An HTTPS client for the admin API, trusting the server's self-signed certificate."""
        context = ssl.create_default_context(cafile=str(self.data_dir / "tls" / "selfsigned.crt"))
        auth = (admin, password) if admin is not None else None
        url = f"https://127.0.0.1:{self.listeners['admin']}"
        return httpx.Client(base_url=url, verify=context, auth=auth, timeout=30)

    def failover_state(self) -> dict[str, Any]:
        """The recorded failover state, straight from the store."""
        rows = query_dicts(self.data_dir, "SELECT mode, users, seq, held FROM failover_state", url=self.store_url)
        return rows[0] if rows else {"mode": "normal", "users": None, "seq": 0, "held": 0}

    def transitions(self) -> list[dict[str, Any]]:
        """Every recorded failover transition, oldest first."""
        return query_dicts(self.data_dir, "SELECT * FROM failover_log ORDER BY id", url=self.store_url)

    def kill(self) -> None:
        """kill -9 (the whole process group); a no-op when not running."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_lines(self) -> list[str]:
        """The whole log (not only its tail), line by line."""
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def deliveries(self) -> list[dict[str, Any]]:
        """Per-recipient queue states, read straight from the store."""
        return query_dicts(
            self.data_dir,
            "SELECT d.message_id, m.sender, d.rcpt, d.state, d.attempts, d.last_reply, m.origin"
            " FROM deliveries d JOIN messages m ON m.id = d.message_id ORDER BY m.received_at",
            url=self.store_url,
        )

    def mailbox(self, user: str, name: str) -> list[tuple[bytes, int, str]]:
        """(body, journaled, flags) of each message in a standby mailbox, in UID order."""
        return [
            (bytes(body), journaled, flags)
            for body, journaled, flags in query(
                self.data_dir,
                "SELECT b.data, m.journaled, m.flags FROM mail m JOIN mailboxes x ON x.id = m.mailbox_id"
                " JOIN bodies b ON b.id = m.body_id WHERE x.user = ? AND x.name = ? ORDER BY m.uid",
                (user, name),
                url=self.store_url,
            )
        ]

    def queued(self) -> list[dict[str, Any]]:
        return [d for d in self.deliveries() if d["state"] == "queued"]

    def wait_until(self, predicate: Any, timeout: float = 30, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}\n{self.log()}")

    def __enter__(self) -> Standby:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
