"""A real "primary mail system" for tests: private Postfix + Dovecot instances.

Postfix (MTA) accepts SMTP for a test domain on 127.0.0.1 and delivers over LMTP
into Dovecot; Dovecot serves IMAP (and POP3) and also exposes its LMTP port so
tests can deliver to it directly.  Both run from the Debian packages as private
instances: every file they use (config, queue, data_directory, mail, logs,
base_dir, state_dir) lives in one private tree (``Primary.base``: ``root`` itself,
or a /tmp directory linked from ``root`` when ``root`` is not reachable by the
daemons' users -- see the class docstring).  The machine's own /etc/postfix and
/etc/dovecot are never used for settings and never modified, and the system
instances are never started or stopped.

Must run as root (Postfix's master and Dovecot's master need it).

    with Primary(tmp_path / "primary", users={"alice@corp.test": "pw"}) as p:
        smtplib.SMTP(p.host, p.smtp_port).sendmail(...)
        msgs = p.wait_for_messages("alice@corp.test", 1)
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import imaplib
import json
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["Primary", "PrimaryError"]

POSTFIX = shutil.which("postfix", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/sbin/postfix"
POSTQUEUE = shutil.which("postqueue", path="/usr/sbin:/usr/bin") or "/usr/sbin/postqueue"
DOVECOT = shutil.which("dovecot", path="/usr/sbin:/usr/bin") or "/usr/sbin/dovecot"

# System users that exist once the Debian packages are installed.
POSTFIX_USER = "postfix"
DOVECOT_INTERNAL_USER = "dovecot"
DOVECOT_LOGIN_USER = "dovenull"
# Dovecot refuses to access mail as root; mail is stored as the stock `mail` user.
MAIL_USER = "mail"

_START_TIMEOUT = 10.0
_DOVECOT_UP = "starting up for"
_STOP_TIMEOUT = 5.0


class PrimaryError(RuntimeError):
    """A private Postfix/Dovecot instance failed to start or stop."""


# Started and not yet stopped: stopped at interpreter exit as a safety net for
# callers that forget (Postfix's master daemonizes and would outlive us).
_LIVE: weakref.WeakSet[Primary] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for primary in list(_LIVE):
        with contextlib.suppress(Exception):
            primary.stop()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_ports(count: int) -> list[int]:
    """Distinct TCP ports that are free on 127.0.0.1 right now (nothing is kept bound).

    Taken at random from *below* the kernel's ephemeral range rather than via bind(0):
    while the primary is stopped (stop_smtp) its port must not be handed out as the
    local port of some outgoing connection -- a client retrying 127.0.0.1:PORT could
    even connect to itself (TCP simultaneous open).  Falls back to bind(0).
    """
    low = _ephemeral_low()
    pool = range(10000, low) if low > 10000 + 8 * count else range(0)
    rng = random.SystemRandom()
    ports: list[int] = []
    socks: list[socket.socket] = []
    try:
        for candidate in rng.sample(pool, min(len(pool), 200)):
            if len(ports) == count:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                s.close()
                continue
            socks.append(s)
            ports.append(candidate)
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports
    finally:
        for s in socks:
            s.close()


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _pgid_members(pgid: int) -> list[int]:
    """PIDs of live processes whose process group is ``pgid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            data = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # Field 2 (comm) may contain spaces/parens; the rest follows the last ')'.
        fields = data[data.rfind(")") + 2 :].split()
        # fields[0] = state, [1] = ppid, [2] = pgrp
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


def _pids_using(root: Path) -> list[int]:
    """PIDs of processes whose cwd or root (chroot) is inside ``root``."""
    prefix = str(root.resolve())
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
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


def _kill_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _wait_gone(pred: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pred():
            return True
        time.sleep(0.02)
    return not pred()


def _searchable(path: Path) -> bool:
    """Can any user reach ``path`` (all existing ancestors have o+x)?"""
    for d in [path, *path.parents]:
        try:
            if not d.stat().st_mode & stat.S_IXOTH:
                return False
        except FileNotFoundError:
            continue
    return True


def _fresh_tmp_base() -> Path:
    """A not-yet-existing, short path in a world-searchable temp dir (created on start)."""
    tmp = Path(tempfile.gettempdir())
    if not _searchable(tmp):
        tmp = Path("/tmp")
    return tmp / f"msb-primary-{secrets.token_hex(6)}"


def _log_time(line: str) -> float:
    """The time stamp of a Postfix log line (RFC 3339 with microseconds, or syslog's 'Mon dd hh:mm:ss')."""
    stamp = line.split(" ", 1)[0]
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(stamp).timestamp()
    parsed = datetime.strptime(f"{datetime.now().year} {line[:15]}", "%Y %b %d %H:%M:%S")
    return parsed.timestamp()


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _imap_quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Primary:
    """Private Postfix + Dovecot pair acting as the primary mail system.

    Where files live: Postfix daemons (uid postfix) and Dovecot's mail/auth processes
    (uids mail, dovecot) open paths under the tree, so every ancestor directory must be
    searchable by "other".  pytest's tmp_path is not (/tmp/pytest-of-root is 0700, and
    every new pytest session resets it to 0700, so chmod'ing it is racy).  So if ``root``
    is not reachable that way, the live tree goes to ``/tmp/msb-primary-XXXXXXXXXXXX``
    (``self.base``) with a symlink ``root/live`` to it, and ``close()`` copies the logs
    and configs back into ``root`` and removes it.  Otherwise ``base == root``.

    Attributes: ``host``, ``smtp_port``, ``imap_port``, ``lmtp_port``,
    ``pop3_port``, ``domain``, ``users`` (address -> password),
    ``master_user``/``master_password`` (Dovecot master user: log in as
    ``f"{address}*{master_user}"`` with ``master_password``).
    """

    host = "127.0.0.1"
    master_user = "admin"

    def __init__(
        self,
        root: Path,
        domain: str = "corp.test",
        users: dict[str, str] | None = None,
        *,
        aliases: dict[str, str] | None = None,
        relayhost: str | None = None,
        fallback_relay: str | None = None,
        milters: str | None = None,
        milter_default_action: str = "tempfail",
        max_mail_size: str | None = None,
        tls: tuple[Path, Path] | None = None,
        log_recipients: bool = False,
    ) -> None:
        """Prepare (but do not start) a primary under ``root``.

        ``users`` maps full address -> password; defaults to
        ``{"alice@<domain>": "pw-alice"}``.  ``aliases`` maps alias address ->
        target address(es, comma separated) for Postfix's virtual_alias_maps (Dovecot's
        LMTP knows only the real users).  ``relayhost`` (e.g. ``"[127.0.0.1]:2526"``)
        is where Postfix sends mail for other domains (e.g. its own bounces to foreign
        senders); without it, other domains are refused at RCPT (550 5.7.1) and mail
        Postfix itself generates for them fails via the ``error`` transport.
        ``milters`` (e.g. ``"inet:127.0.0.1:PORT"``) is Postfix's ``smtpd_milters``, spoken with
        ``milter_protocol = 6`` and ``milter_default_action``; ``set_milters()`` changes them later.
        ``max_mail_size`` (e.g. ``"64k"``) sets Dovecot's per-message limit
        (``quota_max_mail_size``): a bigger IMAP APPEND gets NO.
        ``tls`` (certificate chain, key: PEM files) turns on TLS in Dovecot: STARTTLS on the
        IMAP port and implicit TLS on ``imaps_port`` (without it: no TLS, ``imaps_port`` 0).
        ``log_recipients`` makes smtpd log every RCPT TO it is given (an ``INFO`` access action), so a
        test can count what a client asked; ``set_recipient_access()`` answers chosen recipients
        as an administrator's ``check_recipient_access`` entry would.
        """
        self.root = Path(root).resolve()
        self.base = self.root if _searchable(self.root) else _fresh_tmp_base()
        self.domain = domain.lower()
        if users is None:
            users = {f"alice@{self.domain}": "pw-alice"}
        self.users = {addr.lower(): pw for addr, pw in users.items()}
        self.user_fields: dict[str, str] = {}  # extra passwd-file fields per user (e.g. a quota rule)
        for addr, pw in self.users.items():
            if "@" not in addr or any(c in addr + pw for c in ":\r\n\0") or " " in addr:
                raise ValueError(f"unsupported address/password for passwd-file: {addr!r}")
        self.aliases = {a.lower(): t.lower() for a, t in (aliases or {}).items()}
        for addr, target in self.aliases.items():
            if "@" not in addr or any(c.isspace() for c in addr + target):
                raise ValueError(f"unsupported alias: {addr!r} -> {target!r}")
        self.relayhost = relayhost
        self.fallback_relay = fallback_relay  # Postfix smtp_fallback_relay: where mail goes when relayhost is dead
        self.milters = milters
        self.milter_default_action = milter_default_action
        self.max_mail_size = max_mail_size
        self.tls = tls
        self.log_recipients = log_recipients
        self.recipient_access: dict[str, str] = {}  # address -> access(5) action, e.g. "450 4.2.1 ..."
        self.imaps_port = 0
        self.master_password = "master-" + secrets.token_hex(8)
        self.smtp_port = 0
        self.imap_port = 0
        self.lmtp_port = 0
        self.pop3_port = 0

        # Layout.
        self.postfix_dir = self.base / "postfix"
        self.postfix_conf = self.postfix_dir / "etc"
        self.queue_dir = self.postfix_dir / "queue"
        self.data_dir = self.postfix_dir / "data"
        self.dovecot_dir = self.base / "dovecot"
        self.dovecot_conf = self.dovecot_dir / "dovecot.conf"
        # Short name: Dovecot's unix sockets live here (sun_path is 108 bytes).
        self.dovecot_run = self.dovecot_dir / "run"
        self.mail_dir = self.base / "mail"
        self._set_log_dir(self.base / "log")

        self._instance = "primary-" + secrets.token_hex(4)
        self._dovecot: subprocess.Popen[bytes] | None = None
        self._postfix_pgid: int | None = None

    # ------------------------------------------------------------------ API

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Primary(base={str(self.base)!r}, domain={self.domain!r}, smtp={self.smtp_port}, "
            f"imap={self.imap_port}, lmtp={self.lmtp_port})"
        )

    def start(self) -> None:
        """Pick ports, write configs, start Dovecot then Postfix."""
        if os.geteuid() != 0:
            raise PrimaryError("Primary must run as root (Postfix/Dovecot masters need it)")
        self._set_log_dir(self.base / "log")
        self._prepare_dirs()
        _LIVE.add(self)
        last: Exception | None = None
        for _attempt in range(3):
            self.smtp_port, self.imap_port, self.lmtp_port, self.pop3_port, imaps = _free_ports(5)
            self.imaps_port = imaps if self.tls else 0
            self._write_dovecot_config()
            self._write_postfix_config()
            try:
                self.start_imap()
                self.start_smtp()
                return
            except PrimaryError as e:
                self.stop()
                last = e
                if "in use" not in str(e):  # only a lost port race is worth a retry
                    raise
        raise PrimaryError(f"could not start primary after retries: {last}")

    def stop(self) -> None:
        """Stop Postfix and Dovecot; kill anything of ours that is left.  Files are kept:
        ``start()`` again would start over with fresh ports (the queue and mail are kept)."""
        try:
            self.stop_smtp()
        finally:
            try:
                self.stop_imap()
            finally:
                self._sweep()
                _LIVE.discard(self)

    def close(self) -> None:
        """``stop()``, then, if the live tree is outside ``root``, copy logs and configs
        into ``root`` (``root/log``, ``root/config``) and delete the live tree."""
        try:
            self.stop()
        finally:
            if self.base != self.root and self.base.exists():
                try:
                    self._save_artifacts()
                finally:
                    shutil.rmtree(self.base, ignore_errors=True)
                    with contextlib.suppress(FileNotFoundError):
                        (self.root / "live").unlink()

    # --- Postfix

    def start_smtp(self) -> None:
        """Start (or restart) Postfix on the same ports; the queue is kept."""
        if self._postfix_running():
            return
        proc = subprocess.run(
            [POSTFIX, "-c", str(self.postfix_conf), "start"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_START_TIMEOUT,
        )
        pid = self._postfix_master_pid()
        if proc.returncode != 0 or pid is None:
            raise PrimaryError(
                f"postfix start failed (rc={proc.returncode}):\n{proc.stdout}{proc.stderr}\n"
                f"--- {self.postfix_log}:\n{_tail(self.maillog())}"
            )
        self._postfix_pgid = os.getpgid(pid)
        self._wait_listening("postfix smtpd", self.smtp_port, self.maillog)

    def stop_smtp(self) -> None:
        """Stop Postfix (all its processes are gone and the port refuses on return)."""
        pgid = self._postfix_pgid
        if pgid is None:
            pid = self._postfix_master_pid()
            pgid = os.getpgid(pid) if pid is not None and self._pid_alive(pid) else None
        if pgid is None:
            return
        if self._postfix_conf_ready():
            subprocess.run(
                [POSTFIX, "-c", str(self.postfix_conf), "stop"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=_STOP_TIMEOUT,
                check=False,
            )
        if not _wait_gone(lambda: _pgid_members(pgid), _STOP_TIMEOUT):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            _wait_gone(lambda: _pgid_members(pgid), _STOP_TIMEOUT)
        self._postfix_pgid = None

    def set_milters(self, milters: str | None, default_action: str = "tempfail") -> None:
        """Set ``smtpd_milters`` and ``milter_default_action`` (None: no milter).  A running Postfix
        is restarted on the same ports (queue kept), so that every later SMTP session uses them."""
        self.milters, self.milter_default_action = milters, default_action
        if not self._postfix_conf_ready():
            return
        running = self._postfix_running()
        if running:
            self.stop_smtp()
        self._write_postfix_config()
        if running:
            self.start_smtp()

    def set_recipient_access(self, address: str, action: str | None) -> None:
        """Answer RCPT TO for ``address`` with an access(5) action (e.g. ``"452 4.2.1 mailbox database
        dismounted"``) before any other check; None removes the entry.  A running Postfix reloads, so
        every later SMTP session sees the change."""
        if action is None:
            self.recipient_access.pop(address.lower(), None)
        else:
            self.recipient_access[address.lower()] = action
        self._write_recipient_access()
        if self._postfix_running():
            subprocess.run(
                [POSTFIX, "-c", str(self.postfix_conf), "reload"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=_START_TIMEOUT,
                check=True,
            )

    def logged_recipients(self) -> list[tuple[float, str]]:
        """(time, recipient) of every RCPT TO smtpd logged (``log_recipients=True``), oldest first."""
        out = []
        for line in self.maillog().splitlines():
            m = re.search(r": info: RCPT from \S+: rcpt; from=<[^>]*> to=<([^>]*)>", line)
            if m:
                out.append((_log_time(line), m.group(1)))
        return out

    def _write_recipient_access(self) -> None:
        access = self.postfix_conf / "recipient_access"
        access.write_text("".join(f"{a} {action}\n" for a, action in sorted(self.recipient_access.items())))
        past = time.time() - 60
        os.utime(access, (past, past))

    # --- Dovecot

    def start_imap(self) -> None:
        """Start (or restart) Dovecot (IMAP, POP3 and LMTP) on the same ports."""
        if self._dovecot is not None and self._dovecot.poll() is None:
            return
        started_before = self._dovecot_logs().count(_DOVECOT_UP)
        with self.dovecot_stderr.open("ab") as err:
            self._dovecot = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.dovecot_conf)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,  # own process group: killpg() gets every child
            )
        try:
            # "starting up" is logged only once every listener is bound: an open port alone
            # might belong to someone else who won a port race.
            self._wait_until(
                "dovecot start-up",
                lambda: self._dovecot_logs().count(_DOVECOT_UP) > started_before,
                self._dovecot_logs,
            )
            self._wait_listening("dovecot imap", self.imap_port, self._dovecot_logs)
            if self.imaps_port:
                self._wait_listening("dovecot imaps", self.imaps_port, self._dovecot_logs)
            self._wait_listening("dovecot lmtp", self.lmtp_port, self._dovecot_logs)
        except PrimaryError:
            self.stop_imap()
            raise

    def stop_imap(self) -> None:
        """Stop Dovecot entirely (IMAP, POP3 and LMTP all go down)."""
        proc = self._dovecot
        if proc is None:
            return
        pgid = proc.pid
        if proc.poll() is None:
            # SIGTERM to the whole group: signalling only the master makes it wait ~1 s
            # for its children; Maildir delivery is crash-safe either way.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            try:
                proc.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                proc.wait(_STOP_TIMEOUT)
        if not _wait_gone(lambda: _pgid_members(pgid), 2.0):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            _wait_gone(lambda: _pgid_members(pgid), _STOP_TIMEOUT)
        self._dovecot = None

    # --- Mailbox access

    def imap_login(self, address: str, *, as_master: bool = False) -> imaplib.IMAP4:
        """A logged-in IMAP4 client for ``address`` (caller must ``logout()``)."""
        address = address.lower()
        client = imaplib.IMAP4(self.host, self.imap_port, timeout=10)
        try:
            if as_master:
                client.login(f"{address}*{self.master_user}", self.master_password)
            else:
                client.login(address, self.users[address])
        except BaseException:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
        return client

    def fetch_folder(self, address: str, folder: str) -> list[bytes]:
        """Raw RFC 822 bytes (CRLF line ends, as served by IMAP) of every message in ``folder``,
        in UID order.  Does not set \\Seen."""
        client = self.imap_login(address)
        try:
            typ, data = client.select(_imap_quote(folder), readonly=True)
            if typ != "OK":
                raise AssertionError(f"IMAP SELECT {folder!r} for {address}: {typ} {data!r}")
            count = int(data[0] or b"0")
            if count == 0:
                return []
            typ, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
            if typ != "OK":
                raise AssertionError(f"IMAP FETCH for {address}: {typ} {data!r}")
            msgs: list[tuple[int, bytes]] = []
            for item in data:
                if isinstance(item, tuple):
                    meta = item[0].decode("ascii", "replace").upper()
                    uid = int(meta.split("UID ", 1)[1].split()[0].rstrip(")"))
                    msgs.append((uid, item[1]))
            return [body for _, body in sorted(msgs)]
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def fetch_all(self, address: str) -> list[bytes]:
        """Raw bytes of every message in ``address``'s INBOX."""
        return self.fetch_folder(address, "INBOX")

    def wait_for_messages(self, address: str, count: int, timeout: float = 30) -> list[bytes]:
        """Poll INBOX until it holds at least ``count`` messages; return them all."""
        deadline = time.monotonic() + timeout
        msgs: list[bytes] = []
        error = ""
        while True:
            try:
                msgs = self.fetch_all(address)
                error = ""
            except (OSError, imaplib.IMAP4.error) as e:  # e.g. Dovecot (re)starting
                error = f" (last IMAP error: {e!r})"
            if len(msgs) >= count or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        if len(msgs) < count:
            raise AssertionError(
                f"{address}: expected >= {count} message(s) in INBOX within {timeout}s, "
                f"got {len(msgs)}{error}\n--- postqueue -p:\n{self.queue_listing()}"
                f"--- postfix maillog (tail):\n{_tail(self.maillog())}\n"
                f"--- dovecot log (tail):\n{_tail(self._dovecot_logs(), 20)}"
            )
        return msgs

    # --- Postfix queue / logs

    def flush(self) -> None:
        """``postqueue -f``: retry all deferred mail now."""
        self._postqueue("-f")

    def queue_size(self) -> int:
        """Number of messages in Postfix's queue (all queues)."""
        out = self._postqueue("-j")
        return sum(1 for line in out.splitlines() if line.strip())

    def queue(self) -> list[dict[str, object]]:
        """Postfix's queue as parsed ``postqueue -j`` records."""
        return [json.loads(line) for line in self._postqueue("-j").splitlines() if line.strip()]

    def queue_listing(self) -> str:
        """Human readable ``postqueue -p`` output (or the error running it)."""
        try:
            return self._postqueue("-p")
        except PrimaryError as e:
            return f"({e})\n"

    def maillog(self) -> str:
        """Text of Postfix's log file (empty if nothing was logged yet)."""
        try:
            return self.postfix_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def dovecot_log_text(self) -> str:
        """Text of Dovecot's log file(s)."""
        return self._dovecot_logs()

    # ------------------------------------------------------------- internals

    def _postqueue(self, *args: str) -> str:
        proc = subprocess.run(
            [POSTQUEUE, "-c", str(self.postfix_conf), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if proc.returncode != 0:
            raise PrimaryError(f"postqueue {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def _dovecot_logs(self) -> str:
        parts = []
        for path in (self.dovecot_stderr, self.dovecot_log):
            with contextlib.suppress(FileNotFoundError):
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def _wait_until(self, what: str, ready: Callable[[], bool], logs: Callable[[], str]) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if ready():
                return
            dovecot = self._dovecot
            if what.startswith("dovecot") and dovecot is not None and dovecot.poll() is not None:
                break
            time.sleep(0.01)
        text = logs()
        hint = " (address in use)" if "in use" in text else ""
        raise PrimaryError(f"{what} failed{hint}\n--- log tail:\n{_tail(text)}")

    def _wait_listening(self, what: str, port: int, logs: Callable[[], str]) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if _port_open(self.host, port):
                return
            dovecot = self._dovecot
            if what.startswith("dovecot") and dovecot is not None and dovecot.poll() is not None:
                break
            time.sleep(0.02)
        text = logs()
        hint = " (address in use)" if "in use" in text else ""
        raise PrimaryError(f"{what} not listening on {self.host}:{port}{hint}\n--- log tail:\n{_tail(text)}")

    def _postfix_master_pid(self) -> int | None:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    @staticmethod
    def _pid_alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _postfix_running(self) -> bool:
        return self._postfix_pgid is not None and bool(_pgid_members(self._postfix_pgid))

    def _postfix_conf_ready(self) -> bool:
        return (self.postfix_conf / "main.cf").exists()

    def _sweep(self) -> None:
        """Last resort: kill any process still running in (or chrooted to) our tree."""
        if not self.base.exists():
            return
        pids = _pids_using(self.base)
        if not pids:
            return
        _kill_all(pids, signal.SIGTERM)
        if not _wait_gone(lambda: _pids_using(self.base), 1.0):
            _kill_all(_pids_using(self.base), signal.SIGKILL)
            _wait_gone(lambda: _pids_using(self.base), _STOP_TIMEOUT)

    def _set_log_dir(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.postfix_log = log_dir / "postfix.log"
        self.dovecot_log = log_dir / "dovecot.log"
        self.dovecot_stderr = log_dir / "dovecot.stderr"

    def _save_artifacts(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.log_dir.exists():
            shutil.copytree(self.log_dir, self.root / "log", dirs_exist_ok=True)
        config = self.root / "config"
        if self.postfix_conf.exists():
            shutil.copytree(self.postfix_conf, config / "postfix", dirs_exist_ok=True)
        if self.dovecot_conf.exists():
            shutil.copy2(self.dovecot_conf, config / "dovecot.conf")
        self._set_log_dir(self.root / "log")

    def _prepare_dirs(self) -> None:
        postfix = pwd.getpwnam(POSTFIX_USER)
        mail = pwd.getpwnam(MAIL_USER)
        self.root.mkdir(parents=True, exist_ok=True)
        if self.base != self.root:
            self.base.mkdir(mode=0o755, exist_ok=True)
            live = self.root / "live"
            if not live.is_symlink():
                live.symlink_to(self.base)
        for d in (self.postfix_conf, self.queue_dir, self.dovecot_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        for d in (self.base, self.postfix_dir, self.queue_dir, self.dovecot_dir):
            os.chmod(d, 0o755)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        os.chown(self.data_dir, postfix.pw_uid, postfix.pw_gid)
        self.mail_dir.mkdir(mode=0o700, exist_ok=True)
        os.chown(self.mail_dir, mail.pw_uid, mail.pw_gid)
        self.dovecot_run.mkdir(mode=0o755, exist_ok=True)
        (self.dovecot_dir / "state").mkdir(mode=0o750, exist_ok=True)
        # passwd-files are read by the auth process (uid dovecot).
        self._write_users()

    def _write_users(self) -> None:
        """Dovecot's passwd-files (read by the auth process, uid dovecot; re-read when changed)."""
        dovecot_gid = grp.getgrnam(DOVECOT_INTERNAL_USER).gr_gid
        users = "".join(
            f"{addr}:{{PLAIN}}{pw}::::::{self.user_fields.get(addr, '')}\n" for addr, pw in self.users.items()
        )
        masters = f"{self.master_user}:{{PLAIN}}{self.master_password}::::::\n"
        for name, text in (("users", users), ("master-users", masters)):
            path = self.dovecot_dir / name
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            os.chown(tmp, 0, dovecot_gid)
            os.chmod(tmp, 0o640)
            tmp.replace(path)

    def set_quota(self, address: str, rule: str | None) -> None:
        """Give one mailbox a quota rule (e.g. `*:storage=1B`: any stored mail puts it over quota, and
        Dovecot's LMTP then refuses it at RCPT with 552 5.2.2); None removes the rule."""
        address = address.lower()
        if rule is None:
            self.user_fields.pop(address, None)
            local, _, domain = address.partition("@")
            # Maildir++ quota keeps the limit it saw in `maildirsize`: drop it to forget the rule.
            (self.mail_dir / domain / local / "Maildir" / "maildirsize").unlink(missing_ok=True)
        else:
            self.user_fields[address] = f"userdb_quota_rule={rule}"
        self._write_users()
        if self.dovecot_conf.exists():  # a running Dovecot re-reads its passwd-files when reloaded
            subprocess.run(
                ["doveadm", "-c", str(self.dovecot_conf), "reload"], capture_output=True, timeout=30, check=False
            )

    @property
    def _domains(self) -> list[str]:
        addrs = [*self.users, *self.aliases]
        return sorted({self.domain} | {a.rsplit("@", 1)[1] for a in addrs})

    def _write_dovecot_config(self) -> None:
        mail = pwd.getpwnam(MAIL_USER)
        d = self.dovecot_dir
        conf = f"""\
# Private Dovecot instance for tests (generated by tests/support/primary.py).
instance_name = {self._instance}
base_dir = {self.dovecot_run}
state_dir = {d / "state"}
protocols = imap lmtp pop3
listen = {self.host}
shutdown_clients = yes

log_path = {self.dovecot_log}
info_log_path = {self.dovecot_log}
debug_log_path = {self.dovecot_log}

{self._ssl_config()}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Lu
auth_master_user_separator = *
auth_cache_size = 0

default_internal_user = {DOVECOT_INTERNAL_USER}
default_login_user = {DOVECOT_LOGIN_USER}
first_valid_uid = {mail.pw_uid}
first_valid_gid = {mail.pw_gid}
mail_uid = {mail.pw_uid}
mail_gid = {mail.pw_gid}
mail_location = maildir:~/Maildir
mail_fsync = never
postmaster_address = postmaster@{self.domain}
hostname = primary.{self.domain}
lmtp_save_to_detail_mailbox = no
mail_plugins = $mail_plugins quota
lmtp_rcpt_check_quota = yes
plugin {{
  quota = maildir:User quota
{self._max_mail_size_config()}}}

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d / "master-users"}
  master = yes
  result_success = continue
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu {d / "users"}
}}
userdb {{
  driver = passwd-file
  args = username_format=%Lu {d / "users"}
  default_fields = uid={mail.pw_uid} gid={mail.pw_gid} home={self.mail_dir}/%Ld/%Ln
}}

namespace inbox {{
  inbox = yes
  separator = /
  mailbox Drafts {{
    special_use = \\Drafts
  }}
  mailbox Junk {{
    special_use = \\Junk
  }}
  mailbox Sent {{
    special_use = \\Sent
  }}
  mailbox Trash {{
    special_use = \\Trash
  }}
}}

service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self.imaps_port}
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {self.host}
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {self.host}
    port = {self.lmtp_port}
  }}
}}
"""
        self.dovecot_conf.write_text(conf)

    def _ssl_config(self) -> str:
        if self.tls is None:
            return "ssl = no"
        cert, key = self.tls
        return f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}\nssl_min_protocol = TLSv1.2"

    def _max_mail_size_config(self) -> str:
        return "" if self.max_mail_size is None else f"  quota_max_mail_size = {self.max_mail_size}\n"

    def _recipient_checks(self) -> str:
        conf = self.postfix_conf
        checks = [f"check_recipient_access texthash:{conf / 'recipient_access'}", "reject_unlisted_recipient"]
        if self.log_recipients:
            (conf / "recipient_log").write_text("/^/ INFO rcpt\n")
            os.utime(conf / "recipient_log", (time.time() - 60, time.time() - 60))
            checks.insert(0, f"check_recipient_access regexp:{conf / 'recipient_log'}")
        return ", ".join(checks)

    def _write_postfix_config(self) -> None:
        self._write_recipient_access()
        vmailbox = self.postfix_conf / "vmailbox"
        vmailbox.write_text("".join(f"{addr} OK\n" for addr in sorted(self.users)))
        valias = self.postfix_conf / "valias"
        valias.write_text("".join(f"{a} {t}\n" for a, t in sorted(self.aliases.items())))
        if self.relayhost:
            outbound = f"relayhost = {self.relayhost}\n"
            if self.fallback_relay:  # a sender whose first MX is dead tries the next one, as with a backup MX
                outbound += f"smtp_fallback_relay = {self.fallback_relay}\n"
        else:
            outbound = "default_transport = error:5.7.1 test primary has no outbound route\n"
        if self.milters:
            # A milter that times out or is down must never cost mail: see milter_default_action.
            outbound += (
                f"smtpd_milters = {self.milters}\nmilter_protocol = 6\n"
                f"milter_default_action = {self.milter_default_action}\n"
                "milter_connect_timeout = 5s\nmilter_command_timeout = 10s\nmilter_content_timeout = 30s\n"
            )
        main = f"""\
# Private Postfix instance for tests (generated by tests/support/primary.py).
compatibility_level = 3.6
config_directory = {self.postfix_conf}
queue_directory = {self.queue_dir}
data_directory = {self.data_dir}
maillog_file = {self.postfix_log}
maillog_file_prefixes = {self.log_dir}
syslog_name = postfix-{self._instance}

myhostname = primary.{self.domain}
mydomain = {self.domain}
myorigin = $mydomain
mydestination =
local_recipient_maps =
local_transport = error:5.1.1 local delivery disabled
alias_maps =
alias_database =
biff = no
append_dot_mydomain = no
readme_directory = no

inet_interfaces = {self.host}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtp_dns_support_level = disabled
{outbound}
virtual_mailbox_domains = {" ".join(self._domains)}
virtual_mailbox_maps = texthash:{vmailbox}
virtual_alias_maps = texthash:{valias}
virtual_transport = lmtp:inet:{self.host}:{self.lmtp_port}
relay_domains =

smtpd_relay_restrictions = permit_mynetworks reject_unauth_destination
smtpd_recipient_restrictions = {self._recipient_checks()}
unknown_virtual_mailbox_reject_code = 550
smtpd_tls_security_level = none
smtp_tls_security_level = none
lmtp_tls_security_level = none
smtputf8_enable = yes
message_size_limit = 104857600
mailbox_size_limit = 0
virtual_mailbox_limit = 0

queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
delay_warning_time = 0
lmtp_connect_timeout = 5s
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
smtpd_client_connection_rate_limit = 0
anvil_rate_time_unit = 1s
"""
        (self.postfix_conf / "main.cf").write_text(main)
        # No chroot anywhere ("n" in column 5).  Only the services we need.
        master = f"""\
# service     type  private unpriv  chroot  wakeup  maxproc command
{self.host}:{self.smtp_port} inet n - n - - smtpd
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
local         unix  -       n       n       -       -       local
virtual       unix  -       n       n       -       -       virtual
lmtp          unix  -       -       n       -       -       lmtp
anvil         unix  -       -       n       -       1       anvil
scache        unix  -       -       n       -       1       scache
postlog       unix-dgram n  -       n       -       1       postlogd
"""
        (self.postfix_conf / "master.cf").write_text(master)
        # Postfix re-reads a config/table file whose mtime is within the last second or
        # so, sleeping 300 ms per round ("is it still being written?"): ~2.5 s per
        # command.  Backdate everything it reads.
        past = time.time() - 60
        for name in ("main.cf", "master.cf", "vmailbox", "valias"):
            os.utime(self.postfix_conf / name, (past, past))
