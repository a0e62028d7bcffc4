#!/usr/bin/env python3
"""Durable SMTP acceptance rate: mailstandby vs a private Postfix, same run, same load.

Usage (as root: Postfix's master needs it; run with the venv's python so the
`mailstandby` command next to it is found):

    /tmp/venv/bin/python bench/smtp_accept.py                      # 5,000 x 5 KiB, 20 sessions, best of 3
    /tmp/venv/bin/python bench/smtp_accept.py --repeat 1 --postfix-sink discard
    /tmp/venv/bin/python bench/smtp_accept.py --messages 20000 --sessions 50 --size 1024
    /tmp/venv/bin/python bench/smtp_accept.py --profile-out ms.prof --event-loop asyncio
    /tmp/venv/bin/python bench/smtp_accept.py --store postgres      # the PostgreSQL store, a private cluster

The last line printed is `ratio=<mailstandby msgs/s / postfix msgs/s>` (2 decimals);
the two lines before it are `postfix: N msgs in T s = R msgs/s` and the same for
mailstandby (the best round of each with --repeat). Exit status 1 when either
server did not durably accept every message, 2 on a setup problem.

What is measured
----------------
`smtp-source -s SESSIONS -m MESSAGES -l SIZE` (one connection per message, as
smtp-source does without -d; `--reuse` adds -d) against each server, wall clock
from start to exit of smtp-source. smtp-source aborts on any reply other than
the expected one, so a clean exit means every message got its 250 after
end-of-data. For both servers that 250 means "on stable storage":

* Postfix: smtpd hands the message to cleanup(8), which writes the queue file
  and fsyncs it before smtpd answers 250. Nothing in that path is turned off.
* mailstandby: the 250 comes after the spool segment and the SQLite WAL were
  fsync'd (group commit), see store/sqlite.py.

Before the timed rounds each server gets `--warmup` messages (Postfix spawns its
smtpd/cleanup processes, Python warms up). Rounds alternate which server goes
first, and before each measurement the other server's background work has
drained (see below), so neither pays for the other.

Afterwards the bench checks that every message sent is accounted for and fails
loudly if not: for mailstandby `mailstandby queue -c CFG` must report as many
queued messages as were sent in total; for Postfix the maillog must show one
final disposition per message sent (and no deferral/bounce/reject).

Like for like: both hold the mail (the default)
-----------------------------------------------
mailstandby's `[primary]` here is a closed local port, so the queue runner's
first attempt is refused at once and (the "dead destination" rule in
queue/runner.py) later mail waits in its queue for the retry time
(`retry_initial` = 3600 s: no retries during the run). Postfix is made to do
the same (default, `--postfix-sink hold`): every message is tagged HOLD
(`check_client_access static:HOLD`), cleanup files it in hold/ with the same
fsync before smtpd answers 250, and qmgr never touches it. Messages are counted
as files in hold/.

Logging is equal too: each server logs every accepted message to a file at
its usual level (Postfix: smtpd, cleanup and the hold line, through postlogd;
mailstandby: `log_level = "INFO"`, the `smtp.accepted` line with the queue id,
to its stderr file). `--mailstandby-log-level WARNING` quiets mailstandby
(Postfix has no such switch).

`--postfix-sink discard` is the other comparison, Postfix doing more: the bench
domain is a relay domain whose transport is `discard:`, so after the same
acceptance qmgr moves the file to active/, hands it to discard(8), which logs
`status=sent`, and the file is unlinked: the cheapest *delivery* Postfix has.

Between measurements the bench waits until each server has finished its
background work (Postfix: queue empty and every message logged; both: the
server's processes used < 2 % CPU over half a second).

Postfix runs as a private instance: `postfix -c DIR start` with its own
main.cf/master.cf (no chroot), queue_directory, data_directory (owned by
postfix), maillog_file (postlogd), smtpd on 127.0.0.1:<free port>,
mynetworks 127.0.0.0/8, `in_flow_delay = 0` (flow control would throttle the
client whenever qmgr lags behind arrivals, which measures qmgr, not acceptance;
`--in-flow-delay 1s` restores the Postfix default). /etc/postfix is read for
nothing but Postfix's own `postfix-files` manifest and the machine's default
instance is never touched.

Everything (configs, queues, stores, logs) lives in one temp dir, removed at the
end unless --keep. Every process started here is killed on exit, error or
Ctrl-C: by process group, then (Postfix) any process whose cwd is still inside
the temp dir.

Profiling: `--profile-out FILE` runs mailstandby under cProfile (main thread
only: the store's writer thread is invisible to it; combine with
`--event-loop asyncio` to see coroutine frames). For a sampling profile of all
threads, run with --keep-running and attach `py-spy record --pid PID`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import BenchError, run_in_workdir

DOMAIN = "bench.test"
SENDER = f"sender@{DOMAIN}"
RECIPIENT = f"user@{DOMAIN}"
HOST = "127.0.0.1"
SBIN = "/usr/sbin:/usr/bin:/sbin:/bin"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
SETTLE_TIMEOUT = 120.0


# -- small helpers -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(pred, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return bool(pred())


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no file)"


def pgid_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            data = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = data[data.rfind(")") + 2 :].split()  # state ppid pgrp ...
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


def pids_inside(root: Path) -> list[int]:
    """Processes whose cwd or root is inside `root` (Postfix daemons chdir to the queue)."""
    prefix = str(root.resolve())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        for link in ("cwd", "root"):
            try:
                target = os.readlink(f"/proc/{entry}/{link}")
            except OSError:
                continue
            if target == prefix or target.startswith(prefix + "/"):
                found.append(int(entry))
                break
    return found


def kill_group(pgid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the group, then SIGKILL whatever is left after `timeout`."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if not pgid_members(pgid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        wait_for(lambda: not pgid_members(pgid), wait)


HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system, all threads, plus reaped children) of `pids`, summed."""
    total = 0
    for pid in pids:
        try:
            data = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = data[data.rfind(")") + 2 :].split()
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime: fields 14-17 of proc(5)
    return total / HZ


def wait_quiet(cpu, timeout: float, window: float = 0.5, max_cpu: float = 0.02) -> bool:
    """Wait until `cpu()` grew by at most `max_cpu` x `window` seconds during `window` (background work done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu()
        time.sleep(window)
        if cpu() - before <= max_cpu * window:
            return True
    return False


def make_traversable(path: Path) -> None:
    """Postfix daemons (uid postfix) chdir into the queue: every ancestor needs o+x."""
    for d in [path, *path.parents]:
        mode = d.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(d, stat.S_IMODE(mode) | stat.S_IXOTH)


# -- the two servers -------------------------------------------------------------------------


class Postfix:
    """A private Postfix instance under `root` that relays the bench domain to discard: (or holds it)."""

    name = "postfix"

    def __init__(self, root: Path, *, sink: str, in_flow_delay: str) -> None:
        self.root = root
        self.sink = sink
        self.in_flow_delay = in_flow_delay
        self.conf = root / "etc"
        self.queue = root / "queue"
        self.data = root / "data"
        self.log = root / "log" / "maillog"
        self.port = 0
        self.pgid: int | None = None
        self.postfix = shutil.which("postfix", path=SBIN) or "/usr/sbin/postfix"

    def start(self) -> None:
        pf = pwd.getpwnam("postfix")
        for d in (self.conf, self.queue, self.log.parent):
            d.mkdir(parents=True, exist_ok=True)
        for d in (self.root, self.queue, self.log.parent):
            os.chmod(d, 0o755)
        make_traversable(self.root)
        self.data.mkdir(mode=0o700, exist_ok=True)
        os.chown(self.data, pf.pw_uid, pf.pw_gid)
        last = ""
        for _ in range(3):  # the free port may be taken between probe and bind
            self.port = free_port()
            self._write_config()
            proc = subprocess.run(
                [self.postfix, "-c", str(self.conf), "start"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            pid = self._master_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    self.pgid = os.getpgid(pid)
            if proc.returncode == 0 and self.pgid is not None and wait_for(lambda: port_open(self.port), START_TIMEOUT):
                return
            last = f"rc={proc.returncode}\n{proc.stdout}{proc.stderr}\n--- {self.log}:\n{tail(self.log)}"
            self.stop()
        raise BenchError(f"postfix did not start: {last}")

    def stop(self) -> None:
        if self.pgid is not None or self._master_pid() is not None:
            subprocess.run(
                [self.postfix, "-c", str(self.conf), "stop"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
                check=False,
            )
        if self.pgid is not None:
            wait_for(lambda: not pgid_members(self.pgid), STOP_TIMEOUT)  # type: ignore[arg-type]
            kill_group(self.pgid, 2.0)
            self.pgid = None
        # last resort: anything still running in our tree (e.g. a detached child)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = pids_inside(self.root)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if not pids or wait_for(lambda: not pids_inside(self.root), 2.0):
                break

    def _master_pid(self) -> int | None:
        try:
            return int((self.queue / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _write_config(self) -> None:
        if self.sink == "hold":
            route = (
                f"relay_transport = discard:{DOMAIN}\n"
                "smtpd_recipient_restrictions = check_client_access static:HOLD, permit_mynetworks, reject\n"
            )
        else:
            route = f"relay_transport = discard:{DOMAIN}\nsmtpd_recipient_restrictions = permit_mynetworks, reject\n"
        main = f"""\
# Private Postfix instance for bench/smtp_accept.py
compatibility_level = 3.6
config_directory = {self.conf}
queue_directory = {self.queue}
data_directory = {self.data}
maillog_file = {self.log}
maillog_file_prefixes = {self.log.parent}
syslog_name = postfix-bench

myhostname = postfix.{DOMAIN}
mydomain = {DOMAIN}
myorigin = $mydomain
mydestination =
local_recipient_maps =
local_transport = error:5.1.1 local delivery disabled
alias_maps =
alias_database =
biff = no
append_dot_mydomain = no
readme_directory = no

inet_interfaces = {HOST}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtp_dns_support_level = disabled
default_transport = error:5.7.1 bench has no outbound route

relay_domains = {DOMAIN}
relay_recipient_maps =
{route}smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_tls_security_level = none
smtp_tls_security_level = none
message_size_limit = 104857600
in_flow_delay = {self.in_flow_delay}
delay_warning_time = 0
smtpd_error_sleep_time = 0
smtpd_client_connection_rate_limit = 0
"""
        (self.conf / "main.cf").write_text(main)
        master = f"""\
# service     type  private unpriv  chroot  wakeup  maxproc command
{HOST}:{self.port} inet n - n - - smtpd
pickup        unix  n       -       n       60      1       pickup
cleanup       unix  n       -       n       -       0       cleanup
qmgr          unix  n       -       n       300     1       qmgr
tlsmgr        unix  -       -       n       1000?   1       tlsmgr
rewrite       unix  -       -       n       -       -       trivial-rewrite
bounce        unix  -       -       n       -       0       bounce
defer         unix  -       -       n       -       0       bounce
trace         unix  -       -       n       -       0       bounce
verify        unix  -       -       n       -       1       verify
flush         unix  n       -       n       1000?   0       flush
proxymap      unix  -       -       n       -       -       proxymap
proxywrite    unix  -       -       n       -       1       proxymap
smtp          unix  -       -       n       -       -       smtp
relay         unix  -       -       n       -       -       smtp
showq         unix  n       -       n       -       -       showq
error         unix  -       -       n       -       -       error
retry         unix  -       -       n       -       -       error
discard       unix  -       -       n       -       -       discard
anvil         unix  -       -       n       -       1       anvil
scache        unix  -       -       n       -       1       scache
postlog       unix-dgram n  -       n       -       1       postlogd
"""
        (self.conf / "master.cf").write_text(master)

    # -- accounting --------------------------------------------------------------
    def cpu_seconds(self) -> float:
        """CPU used by the instance so far (its master collects what its exited children used)."""
        return cpu_seconds(pgid_members(self.pgid)) if self.pgid is not None else 0.0

    def queue_files(self, *queues: str) -> int:
        n = 0
        for q in queues:
            with contextlib.suppress(FileNotFoundError):
                n += sum(len(files) for _, _, files in os.walk(self.queue / q))
        return n

    def _log_counts(self) -> tuple[int, list[str]]:
        """(messages finally disposed of, problem lines) from the maillog."""
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return 0, []
        if self.sink == "hold":
            done = len(re.findall(r"/smtpd\[\d+\]: \w+: hold: ", text))
        else:
            done = len(re.findall(r"/discard\[\d+\]: \w+: to=<[^>]*>.*status=sent", text))
        bad = [
            line
            for line in text.splitlines()
            if re.search(r"status=(deferred|bounced|expired)|: reject: |fatal:|panic:", line)
        ]
        return done, bad

    def accepted(self) -> int:
        """Messages durably accepted so far (all of them must have reached their final state)."""
        if self.sink == "hold":
            return self.queue_files("hold")
        return self._log_counts()[0]

    def settle(self, expected: int) -> None:
        """Wait until Postfix has finished with every message sent so far; fail if any is missing."""
        busy = ("maildrop", "incoming", "active", "deferred")

        def done() -> bool:
            return self.queue_files(*busy) == 0 and self._log_counts()[0] >= expected

        wait_for(done, SETTLE_TIMEOUT, 0.2)
        wait_quiet(self.cpu_seconds, SETTLE_TIMEOUT)
        count, bad = self._log_counts()
        if bad:
            raise BenchError("postfix logged problems:\n" + "\n".join(bad[:10]))
        held = self.queue_files("hold")
        if self.sink == "hold" and held != expected:
            raise BenchError(f"postfix: {held} messages in hold/, expected {expected}")
        if count != expected or self.queue_files(*busy):
            raise BenchError(
                f"postfix: {count} of {expected} messages accounted for in the maillog, "
                f"{self.queue_files(*busy)} still queued\n--- maillog tail:\n{tail(self.log)}"
            )


class MailStandby:
    """mailstandby as a subprocess with a config in `root`."""

    name = "mailstandby"

    def __init__(
        self,
        root: Path,
        *,
        command: list[str],
        event_loop: str,
        profile_out: Path | None,
        store_url: str = "",
        log_level: str = "INFO",
    ) -> None:
        self.root = root
        self.store_url = store_url  # set: the PostgreSQL store (bodies in the database)
        self.log_level = log_level
        self.command = command
        self.event_loop = event_loop
        self.profile_out = profile_out
        self.config = root / "mailstandby.toml"
        self.data = root / "data"
        self.stdout = root / "stdout.log"
        self.stderr = root / "stderr.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        closed_port = free_port()  # nothing listens there: every relay attempt is refused at once
        self.config.write_text(
            f"""\
[node]
hostname = "standby.{DOMAIN}"
data_dir = {json.dumps(str(self.data))}
log_level = "{self.log_level}"
event_loop = "{self.event_loop}"
shutdown_grace = 2

[smtp]
listen = ["{HOST}:0"]

[directory]
domains = ["{DOMAIN}"]

[[directory.users]]
address = "{RECIPIENT}"

[primary]
host = "{HOST}"
port = {closed_port}
connect_timeout = 5

[queue]
retry_initial = 3600
retry_max = 86400

[failover]
control = "manual"   # the primary is unreachable on purpose: mail must stay queued, counted there

[admin]
listen = []

[store]
url = {json.dumps(self.store_url)}
"""
        )
        argv = [*self.command, "serve", "-c", str(self.config)]
        if self.profile_out is not None:
            # `python -m cProfile -o OUT -m mailstandby serve ...`; the file is written at a clean exit
            argv = [self.command[0], "-m", "cProfile", "-o", str(self.profile_out), "-m", "mailstandby", *argv[-3:]]
            if self.command[1:] != ["-m", "mailstandby"]:
                raise BenchError("--profile-out needs mailstandby run as `python -m mailstandby`")
        listeners = self.data / "run" / "listeners.json"
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        proc = self.proc

        def ready() -> bool:
            return listeners.exists() or proc.poll() is not None

        wait_for(ready, START_TIMEOUT)
        if proc.poll() is not None or not listeners.exists():
            raise BenchError(
                f"mailstandby did not start (rc={proc.poll()}): {' '.join(argv)}\n"
                f"--- stdout:\n{tail(self.stdout)}\n--- stderr:\n{tail(self.stderr)}"
            )
        info = json.loads(listeners.read_text())
        self.port = int(info["smtp"][0].rpartition(":")[2])

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # graceful: lets cProfile write its file
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_TIMEOUT + 20)
        kill_group(proc.pid, 2.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        self.proc = None

    def cpu_seconds(self) -> float:
        proc = self.proc
        return cpu_seconds([proc.pid]) if proc is not None and proc.poll() is None else 0.0

    def _queue_listing(self) -> list[str]:
        proc = subprocess.run(
            [*self.command, "queue", "-c", str(self.config)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise BenchError(f"mailstandby queue failed (rc={proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout.splitlines()

    def accepted(self) -> int:
        lines = self._queue_listing()
        m = re.match(r"(\d+) messages, ", lines[-1] if lines else "")
        if m is None:
            raise BenchError(f"unexpected `mailstandby queue` output: {lines[-1:]}")
        return int(m.group(1))

    def settle(self, expected: int) -> None:
        """Wait until every message sent so far is queued and the server went quiet; check the count."""
        count = -1

        def done() -> bool:
            nonlocal count
            count = self.accepted()
            return count >= expected

        wait_for(done, SETTLE_TIMEOUT, 0.3)
        proc = self.proc
        if proc is not None:
            # whatever the queue runner does with new mail while the primary is down, let it finish
            wait_quiet(self.cpu_seconds, SETTLE_TIMEOUT)
            if proc.poll() is not None:
                raise BenchError(f"mailstandby exited (rc={proc.returncode})\n--- stderr:\n{tail(self.stderr)}")
        if count != expected:
            raise BenchError(
                f"mailstandby: {count} of {expected} messages in its queue\n--- stderr:\n{tail(self.stderr)}"
            )


# -- the load generator -----------------------------------------------------------------------


@dataclass
class Result:
    server: str
    messages: int
    seconds: float
    cpu: float = 0.0  # server CPU seconds for the round, background work included

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def line(self) -> str:
        return f"{self.server}: {self.messages} msgs in {self.seconds:.2f} s = {self.rate:.0f} msgs/s"

    def detail(self) -> str:
        return f"{self.line()}  (server cpu {self.cpu:.2f} s = {1000 * self.cpu / self.messages:.2f} ms/msg)"


def smtp_source(args: argparse.Namespace, port: int, messages: int) -> float:
    """Run smtp-source against `port`; seconds of wall clock. Raises unless every message got its 250."""
    argv = [
        args.smtp_source,
        "-s",
        str(min(args.sessions, messages)),
        "-m",
        str(messages),
        "-l",
        str(args.size),
        "-f",
        SENDER,
        "-t",
        RECIPIENT,
        "-M",
        f"client.{DOMAIN}",
        "-4",
    ]
    if args.reuse:
        argv.append("-d")
    argv.append(f"{HOST}:{port}")
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    started = time.perf_counter()
    try:
        out, _ = proc.communicate(timeout=args.timeout)
    except BaseException:
        kill_group(proc.pid, 1.0)
        proc.wait()
        raise
    seconds = time.perf_counter() - started
    text = out.decode(errors="replace").strip()
    if proc.returncode != 0 or text:  # smtp-source prints nothing unless something went wrong
        raise BenchError(f"smtp-source failed (rc={proc.returncode}): {' '.join(argv)}\n{text[-2000:]}")
    return seconds


def default_mailstandby() -> list[str]:
    beside = Path(sys.executable).parent / "mailstandby"
    with contextlib.suppress(Exception):
        import importlib.util

        if importlib.util.find_spec("mailstandby") is not None:
            return [sys.executable, "-m", "mailstandby"]
    if beside.exists():
        return [str(beside)]
    found = shutil.which("mailstandby")
    return [found] if found else [sys.executable, "-m", "mailstandby"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Durable SMTP acceptance rate of mailstandby vs Postfix (see the module docstring).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--messages", "-m", type=int, default=5000, help="messages per timed round")
    p.add_argument("--sessions", "-s", type=int, default=20, help="parallel SMTP sessions")
    p.add_argument("--size", "-l", type=int, default=5120, help="message payload bytes (smtp-source -l)")
    p.add_argument("--repeat", "-n", type=int, default=3, help="timed rounds per server; the best is reported")
    p.add_argument("--warmup", type=int, default=200, help="untimed messages sent to each server first")
    p.add_argument("--reuse", action="store_true", help="keep connections open between messages (smtp-source -d)")
    p.add_argument("--only", choices=("postfix", "mailstandby"), help="benchmark one server only (no ratio)")
    p.add_argument(
        "--postfix-sink",
        choices=("hold", "discard"),
        default="hold",
        help="what Postfix does after queueing: hold it, as mailstandby does here (like for like), or deliver it "
        "to discard(8)",
    )
    p.add_argument(
        "--mailstandby-log-level",
        choices=("INFO", "WARNING"),
        default="INFO",
        help="mailstandby's log level (INFO: a line per accepted message, as Postfix logs)",
    )
    p.add_argument("--in-flow-delay", default="0", help="Postfix in_flow_delay (its default is 1s)")
    p.add_argument(
        "--store",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="mailstandby's store (postgres: a private cluster)",
    )
    p.add_argument("--event-loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="mailstandby loop")
    p.add_argument("--mailstandby", help="command that runs mailstandby (default: python -m mailstandby)")
    p.add_argument("--smtp-source", default=shutil.which("smtp-source", path=SBIN) or "/usr/sbin/smtp-source")
    p.add_argument("--profile-out", type=Path, help="run mailstandby under cProfile, writing this file")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for one smtp-source run")
    p.add_argument("--tmpdir", type=Path, help="parent of the bench's temp dir (default: the system's)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, stores)")
    p.add_argument(
        "--keep-running",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before the timed rounds, print the PIDs and wait this long (to attach a profiler)",
    )
    args = p.parse_args(argv)
    if min(args.messages, args.sessions, args.size, args.repeat) < 1 or args.warmup < 0:
        p.error("--messages, --sessions, --size and --repeat must be >= 1, --warmup >= 0")
    args.mailstandby_cmd = args.mailstandby.split() if args.mailstandby else default_mailstandby()
    return args


def run(args: argparse.Namespace, root: Path) -> int:
    servers: list[Postfix | MailStandby] = []
    cluster = None
    if args.store == "postgres" and args.only != "postfix":
        from tests.support.postgres import PostgresCluster  # Debian's postgresql, a private cluster

        cluster = PostgresCluster()  # its own /tmp directory: the bench's is root's alone
        cluster.start()
    if args.only != "mailstandby":
        servers.append(Postfix(root / "postfix", sink=args.postfix_sink, in_flow_delay=args.in_flow_delay))
    if args.only != "postfix":
        servers.append(
            MailStandby(
                root / "mailstandby",
                command=args.mailstandby_cmd,
                event_loop=args.event_loop,
                profile_out=args.profile_out.resolve() if args.profile_out else None,
                store_url=cluster.url if cluster is not None else "",
                log_level=args.mailstandby_log_level,
            )
        )
    try:
        sent: dict[str, int] = {}
        for server in servers:
            server.start()
            sent[server.name] = 0
        print(
            f"# {args.messages} msgs x {args.size} B, {args.sessions} sessions"
            f"{' (connection reuse)' if args.reuse else ''}, best of {args.repeat}; "
            f"{os.cpu_count()} CPUs; postfix sink={args.postfix_sink}, in_flow_delay={args.in_flow_delay}; "
            f"mailstandby loop={args.event_loop} store={args.store} log={args.mailstandby_log_level}; "
            f"load average {os.getloadavg()[0]:.1f} (other work skews the numbers)",
            flush=True,
        )
        for server in servers:
            if args.warmup:
                smtp_source(args, server.port, args.warmup)
                sent[server.name] += args.warmup
            server.settle(sent[server.name])
        if args.keep_running > 0:
            for server in servers:
                pid = server.proc.pid if isinstance(server, MailStandby) and server.proc else server.pgid
                print(f"# {server.name}: pid {pid}, port {server.port}", flush=True)
            time.sleep(args.keep_running)
        best: dict[str, Result] = {}
        for n in range(args.repeat):
            order = servers if n % 2 == 0 else servers[::-1]
            for server in order:
                cpu = server.cpu_seconds()
                seconds = smtp_source(args, server.port, args.messages)
                sent[server.name] += args.messages
                server.settle(sent[server.name])  # verifies the count; drains background work
                result = Result(server.name, args.messages, seconds, server.cpu_seconds() - cpu)
                print(f"  round {n + 1}/{args.repeat} {result.detail()}", flush=True)
                if server.name not in best or result.rate > best[server.name].rate:
                    best[server.name] = result
        for server in servers:
            got = server.accepted()
            if got != sent[server.name]:
                raise BenchError(f"{server.name}: accepted {got} of {sent[server.name]} messages")
    finally:
        for server in reversed(servers):
            try:
                server.stop()
            except Exception as e:
                print(f"bench: stopping {server.name}: {e}", file=sys.stderr)
        if cluster is not None:
            cluster.close()
    for server in servers:
        print(best[server.name].line())
    if "postfix" in best and "mailstandby" in best:
        print(f"ratio={best['mailstandby'].rate / best['postfix'].rate:.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0 and args.only != "mailstandby":
        print("bench: must run as root (Postfix's master needs it)", file=sys.stderr)
        return 2
    if not os.access(args.smtp_source, os.X_OK):
        print(f"bench: smtp-source not found at {args.smtp_source}", file=sys.stderr)
        return 2

    return run_in_workdir(args, "mailstandby-bench-", run)


if __name__ == "__main__":
    sys.exit(main())
