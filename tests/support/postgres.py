"""A private PostgreSQL cluster for tests: initdb into a temporary directory, a free loopback port.

Debian's `postgresql` package provides the binaries (/usr/lib/postgresql/<version>/bin); the
distribution's own cluster is never touched. PostgreSQL refuses to run as root, so as root the
cluster belongs to the `postgres` system user the package creates and every command runs through
`runuser`; as anyone else it runs as that user. Durability settings are the server's defaults
(fsync on, synchronous_commit on): what a test sees is what a deployment gets.

    cluster = PostgresCluster()   # under /tmp/msb-pg-*: pytest's own temporary tree is root's alone
    cluster.start()
    cluster.url            # postgresql://mailstandby@127.0.0.1:PORT/mailstandby
    cluster.kill()         # SIGKILL the postmaster (a crashed database server)
    cluster.start()        # crash recovery, same port, same data
    cluster.close()        # stop and remove
    cluster.fresh_database()  # postgresql://…/t_N: an empty database of its own (a test's store)
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER = "mailstandby"  # the cluster's superuser and the database the tests use
_DATABASES = itertools.count(1)


def bin_dir() -> Path:
    """The newest installed server version's binaries."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not versions:
        raise FileNotFoundError("PostgreSQL server binaries not found: install Debian's postgresql package")
    return versions[-1].parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    def __init__(self, base: Path | None = None, *, port: int = 0) -> None:
        self.base = base or Path(tempfile.mkdtemp(prefix="msb-pg-", dir="/tmp"))
        self.data = self.base / "data"
        self.sockets = self.base / "sockets"
        self.log_path = self.base / "postgres.log"
        self.port = port or _free_port()
        self.bin = bin_dir()
        self._as: list[str] = []
        self._owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self._owner = pwd.getpwnam("postgres")
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{USER}"

    def database_url(self, name: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{name}"

    def fresh_database(self) -> str:
        """A new empty database on this cluster (CREATE DATABASE: milliseconds); its URL."""
        import psycopg  # only the tests that use PostgreSQL need the driver

        name = f"t_{os.getpid()}_{next(_DATABASES)}"
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done

    def start(self) -> None:
        """initdb on first start; then pg_ctl start and wait until it accepts connections."""
        if not (self.data / "PG_VERSION").exists():
            self.base.mkdir(parents=True, exist_ok=True)
            self.sockets.mkdir(exist_ok=True)
            if self._owner is not None:
                for path in (self.base, self.sockets):
                    os.chown(path, self._owner.pw_uid, self._owner.pw_gid)
            self._run(
                str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "-A", "trust", "-E", "UTF8",
                "--locale", "C.UTF-8",
            )  # fmt: skip
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write(
                    f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.sockets}'\nmax_connections = 200\n"
                )
            first = True
        else:
            first = False
        log = str(self.log_path)
        if self._owner is not None and not self.log_path.exists():
            self.log_path.touch()
            os.chown(self.log_path, self._owner.pw_uid, self._owner.pw_gid)
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", log, "-w", "-t", "60", "start")
        if first:
            self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, USER)

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        if self.pid() is not None:
            with contextlib.suppress(RuntimeError):
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend, as a crash would; the next start recovers."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # backends notice the postmaster is gone and exit
            if not _backends_alive(self.data):
                break
            time.sleep(0.05)
        # the lock files name the dead postmaster, which may linger as a zombie nobody reaps
        (self.data / "postmaster.pid").unlink(missing_ok=True)
        for lock in self.sockets.glob(".s.PGSQL.*.lock"):
            lock.unlink(missing_ok=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def _backends_alive(data: Path) -> bool:
    """Any process whose command line names this data directory or was started from it."""
    needle = str(data)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "cmdline").read_bytes().decode(errors="replace"):
                return True
            if os.readlink(proc / "cwd") == needle:
                return True
        except OSError:
            continue
    return False
