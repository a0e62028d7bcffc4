"""A private rspamd (Debian package) for tests: the distribution's rules, our own ports and directories.

The shipped configuration is used as is; `local.d` overrides under a
temporary directory move the workers to ephemeral loopback ports and keep
state, logs and the pid file there. The machine's /etc/rspamd is only read.
"""

from __future__ import annotations

import contextlib
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Self

RSPAMD = shutil.which("rspamd") or "/usr/bin/rspamd"
USER = "_rspamd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rspamd:
    def __init__(self, artifacts: Path) -> None:
        self.artifacts = Path(artifacts)
        self.root = Path(tempfile.mkdtemp(prefix="msb-rspamd-"))
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 180) -> None:
        local = self.root / "local.d"
        for d in (local, self.root / "db", self.root / "run", self.root / "log"):
            d.mkdir(parents=True)
        self.port = _free_port()
        for worker, port in (("normal", self.port), ("controller", _free_port()), ("proxy", _free_port())):
            (local / f"worker-{worker}.inc").write_text(f'bind_socket = "127.0.0.1:{port}";\n')
        (local / "options.inc").write_text(f'pidfile = "{self.root}/run/rspamd.pid";\n')
        (local / "logging.inc").write_text(
            f'type = "file";\nfilename = "{self.root}/log/rspamd.log";\nlevel = "warning";\n'
        )
        (local / "redis.conf").write_text("")  # no Redis here: the modules that need it stay off
        user = pwd.getpwnam(USER)
        for path in self.root.rglob("*"):
            shutil.chown(path, user.pw_uid, user.pw_gid)
        shutil.chown(self.root, user.pw_uid, user.pw_gid)
        with (self.root / "stdout.log").open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    RSPAMD,
                    "-f",
                    "-u",
                    USER,
                    "-g",
                    USER,
                    "-c",
                    "/etc/rspamd/rspamd.conf",
                    f"--var=LOCAL_CONFDIR={self.root}",
                    f"--var=DBDIR={self.root}/db",
                    f"--var=RUNDIR={self.root}/run",
                    f"--var=LOGDIR={self.root}/log",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout  # the first start compiles its regular expressions
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rspamd exited:\n{self._logs()}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"rspamd did not answer:\n{self._logs()}")

    def _logs(self) -> str:
        out = []
        for name in ("stdout.log", "log/rspamd.log"):
            with contextlib.suppress(OSError):
                out.append((self.root / name).read_text(errors="replace")[-3000:])
        return "\n".join(out)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        (self.artifacts / "rspamd.log").write_text(self._logs())
        shutil.rmtree(self.root, ignore_errors=True)
