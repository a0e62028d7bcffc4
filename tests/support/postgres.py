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

`ReplicatedCluster` pairs two: a primary and a streaming replica with synchronous commit, for the
database's own failover (kill -9 the primary, promote the replica).
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

    def _make_dirs(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if self._owner is not None:
            for path in (self.base, self.sockets):
                os.chown(path, self._owner.pw_uid, self._owner.pw_gid)

    def _configure(self, extra: str = "") -> None:
        """This cluster's own address and socket directory (appended: the last setting wins)."""
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.sockets}'\nmax_connections = 200\n{extra}"
            )

    def start(self) -> None:
        """initdb on first start; then pg_ctl start and wait until it accepts connections."""
        if not (self.data / "PG_VERSION").exists():
            self._make_dirs()
            self._run(
                str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "-A", "trust", "-E", "UTF8",
                "--locale", "C.UTF-8",
            )  # fmt: skip
            self._configure()
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

    def replica_of(self, primary: PostgresCluster, name: str) -> None:
        """Make this (not yet started) cluster a streaming replica of `primary`: pg_basebackup -R into
        its own data directory; it reports itself to the primary as `name` (cluster_name), the name
        the primary's synchronous_standby_names lists."""
        self._make_dirs()
        self._run(
            str(self.bin / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", USER,
            "-D", str(self.data), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        self._configure(f"cluster_name = '{name}'\n")

    def promote(self) -> None:
        """pg_ctl promote: the replica ends recovery and becomes a writable primary (waits until it is)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", "promote")


class ReplicatedCluster:
    """A primary and a streaming replica with synchronous commit, as the documented deployment runs
    (docs/deployment.md): a COMMIT returns once the replica has flushed it too.

        pair = ReplicatedCluster(); pair.start()
        pair.url        # both hosts, target_session_attrs=read-write: libpq finds the writable one
        pair.primary.kill(); pair.replica.promote()   # the database fails over
    """

    STANDBY_NAME = "msb_replica"

    def __init__(self) -> None:
        self.primary = PostgresCluster()
        self.replica = PostgresCluster()

    @property
    def url(self) -> str:
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.replica.port}"
        return f"postgresql://{USER}@{hosts}/{USER}?target_session_attrs=read-write"

    def start(self, timeout: float = 60) -> None:
        import psycopg

        self.primary.start()
        self.replica.replica_of(self.primary, self.STANDBY_NAME)
        self.replica.start()
        with psycopg.connect(self.primary.url, autocommit=True) as db:
            db.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{self.STANDBY_NAME}'")
            db.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + timeout
            query = "SELECT sync_state FROM pg_stat_replication WHERE application_name = %s"
            while (row := db.execute(query, (self.STANDBY_NAME,)).fetchone()) != ("sync",):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the replica is not a synchronous standby ({row}):\n{self.replica.log()}")
                time.sleep(0.1)

    def close(self) -> None:
        self.replica.close()
        self.primary.close()


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
