#!/usr/bin/env python3
"""IMAP read path: mailstandby vs a private Dovecot, same 10,000-message mailbox, same client.

Usage (as root: Dovecot's master needs it; run with the venv's python so that
`python -m mailstandby` works):

    /tmp/venv/bin/python bench/imap_fetch.py                          # 10,000 msgs, 1,000 BODY[], best of 3
    /tmp/venv/bin/python bench/imap_fetch.py --messages 1000 --fetches 200 --repeat 1   # quick run
    /tmp/venv/bin/python bench/imap_fetch.py --profile-out ms.prof    # mailstandby under cProfile

The last line printed is `ratio=<mailstandby seconds / dovecot seconds>` (2 decimals;
lower is better for mailstandby, the goal is <= 1.5); the two lines before it are
`dovecot: ...` and `mailstandby: ...` with the best round of each part. Exit status 1
when a server answered wrongly (a NO/BAD, a missing message, a body of the wrong
size), 2 on a setup problem.

What is measured
----------------
Both servers hold the same `--messages` generated messages in INBOX, loaded
beforehand over IMAP APPEND (untimed, but reported: `--load-connections`
concurrent sessions, one synchronizing literal per message since mailstandby
offers only LITERAL- <= 4 KiB). The messages are a deterministic mix (`--seed`):
sizes 1-50 KiB log-uniform, about a third multipart (text + HTML alternative,
some with a base64 attachment), 3-12 header fields of varied kinds (folded
Received, encoded-word names and subjects, Cc lists, References), some with
\\Seen / \\Flagged / a keyword.

Each round and server, over one new connection, with a lean socket client
(the same code for both: no imaplib, so the client's own parsing stays small):

  (a) connect + greeting, `LOGIN`, `SELECT INBOX`, `UID FETCH 1:* (FLAGS
      ENVELOPE RFC822.SIZE)` read to the tagged OK (every message must answer);
  (b) then `--fetches` x `UID FETCH <uid> BODY.PEEK[]`, one at a time (wait for
      the tagged OK before the next), on the same messages for both servers:
      random message indexes from `--seed`, mapped to each server's UID through
      the APPENDUID (RFC 4315) it returned at load time. Every literal must be
      RFC822.SIZE octets long.

Wall time with time.perf_counter; the best of `--repeat` rounds per part is
reported (a round is both parts; rounds alternate which server goes first).
The connect/LOGIN/SELECT/FETCH split of (a) is printed too: LOGIN differs by
design (Dovecot's passdb here is {PLAIN}; mailstandby verifies an argon2id hash).
Dovecot caches ENVELOPE fields in dovecot.index.cache after the first FETCH, so
its first round is slower than the others; best-of compares steady states.

The servers
-----------
* Dovecot: tests/support/primary.py `Primary` (private Postfix + Dovecot, maildir,
  `mail_fsync = never`); only its IMAP listener is used.
* mailstandby: tests/support/standby.py `Standby` (SQLite store, journal off,
  `[primary]` a closed port), `mailstandby passwd` for the login.

Everything lives in one temp dir, removed at the end unless --keep; both
servers are stopped on exit, error or Ctrl-C (SIGTERM too).

Profiling: `--profile-out FILE` restarts mailstandby after loading (same store)
as `python -m cProfile -o FILE -m mailstandby serve` with `[node] event_loop =
"asyncio"` (so coroutine frames show), so the profile covers the timed rounds
only; at the end it stops it with SIGTERM so the profile is written, and prints
the top functions (ours by cumulative time, then everything by own time). The
profiler slows mailstandby down: that run's ratio is not the number to quote.
Main thread only: the store's writer thread and the argon2 check of LOGIN (run
off the loop) are invisible; the FETCH path runs on the event loop and shows.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import pstats
import quopri
import random
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.harness import BenchError, run_in_workdir  # noqa: E402
from tests.support.primary import Primary, PrimaryError  # noqa: E402
from tests.support.standby import Standby  # noqa: E402

HOST = "127.0.0.1"
USER = "alice@corp.test"
PASSWORD = "bench-pw-long"
TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# -- the messages ------------------------------------------------------------------------

_WORDS_TEXT = (
    "the of and to in is for on that with as was by at from this be are have it not or an we "
    "can meeting report budget quarter review project update invoice schedule customer server "
    "backup release deadline contract proposal draft agenda minutes travel expense ticket "
    "outage standby primary mailbox storage network policy security audit training vendor "
    "payment renewal office"
)
_FIRST_TEXT = (
    "Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy Rupert Sybil Trent Victor"
)
_LAST_TEXT = "Smith Jones Miller Davis Garcia Wilson Moore Taylor Anderson Thomas Jackson White Harris Martin"
WORDS, FIRST, LAST = _WORDS_TEXT.split(), _FIRST_TEXT.split(), _LAST_TEXT.split()
UTF8_NAMES = ["Jürgen Müller", "Zoë Ångström", "François Lefèvre", "Søren Kierkegård", "José Núñez"]
DOMAINS = ["corp.test", "example.com", "example.org", "partner.example", "lists.example.net"]
KEYWORDS = ["$Forwarded", "$Label1", "Work", "$Junk"]


def _encoded_word(text: str, rng: random.Random) -> str:
    data = text.encode("utf-8")
    if rng.random() < 0.5:
        return "=?UTF-8?B?" + base64.b64encode(data).decode("ascii") + "?="
    q = quopri.encodestring(data, header=True).decode("ascii").replace("\n", "")
    return "=?UTF-8?Q?" + q + "?="


def _address(rng: random.Random) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    mailbox = f"{first.lower()}.{last.lower()}@{rng.choice(DOMAINS)}"
    kind = rng.random()
    if kind < 0.15:
        return mailbox
    if kind < 0.3:
        return f"{_encoded_word(rng.choice(UTF8_NAMES), rng)} <{mailbox}>"
    if kind < 0.4:
        return f'"{last}, {first}" <{mailbox}>'
    return f"{first} {last} <{mailbox}>"


def _words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choices(WORDS, k=count))


def _text(rng: random.Random, size: int) -> bytes:
    """About `size` bytes of CRLF text lines of up to ~76 characters."""
    lines, total = [], 0
    while total < size:
        line = _words(rng, rng.randint(4, 12))
        lines.append(line)
        total += len(line) + 2
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def make_message(i: int, rng: random.Random) -> tuple[bytes, tuple[str, ...]]:
    """Message number `i`: (raw CRLF bytes, flags)."""
    target = int(1024 * 50 ** rng.random())  # 1 KiB .. 50 KiB, log-uniform
    day = 1 + i % 28
    hour, minute, second = rng.randrange(24), rng.randrange(60), rng.randrange(60)
    headers = []
    for hop in range(rng.randint(1, 4)):
        headers.append(
            f"Received: from mx{hop}.{rng.choice(DOMAINS)} (mx{hop}.{rng.choice(DOMAINS)}"
            f" [192.0.2.{rng.randrange(1, 255)}])\r\n"
            f"\tby mail.corp.test (Postfix) with ESMTPS id {rng.getrandbits(40):X}\r\n"
            f"\tfor <alice@corp.test>; Mon, {day} Mar 2025 {hour:02}:{minute:02}:{second:02} +0000"
        )
    headers.append(f"Date: Mon, {day} Mar 2025 {hour:02}:{minute:02}:{second:02} +0{rng.randrange(10)}00")
    headers.append(f"From: {_address(rng)}")
    headers.append("To: " + ", ".join(_address(rng) for _ in range(rng.randint(1, 3))))
    if rng.random() < 0.4:
        headers.append("Cc: " + ",\r\n ".join(_address(rng) for _ in range(rng.randint(1, 4))))
    if rng.random() < 0.1:
        headers.append(f"Reply-To: {_address(rng)}")
    subject = _words(rng, rng.randint(2, 9)).capitalize()
    if rng.random() < 0.2:
        subject = _encoded_word(subject + " " + rng.choice(UTF8_NAMES), rng)
    elif rng.random() < 0.2:
        subject = "Re: " + subject
    headers.append(f"Subject: {subject}")
    headers.append(f"Message-ID: <{i}.{rng.getrandbits(48):x}@bench.corp.test>")
    if rng.random() < 0.3:
        refs = [f"<{rng.getrandbits(48):x}@{rng.choice(DOMAINS)}>" for _ in range(rng.randint(1, 5))]
        headers.append(f"In-Reply-To: {refs[-1]}")
        headers.append("References: " + "\r\n ".join(refs))
    if rng.random() < 0.2:
        headers.append(f"List-Id: {rng.choice(WORDS)} list <{rng.choice(WORDS)}.lists.example.net>")
    if rng.random() < 0.3:
        headers.append(f"X-Mailer: BenchMailer {rng.randint(1, 9)}.{rng.randint(0, 99)}")
    headers.append("MIME-Version: 1.0")
    kind = rng.random()
    if kind < 0.65:
        headers.append("Content-Type: text/plain; charset=us-ascii")
        body = _text(rng, target)
    else:
        boundary = f"=_bench_{rng.getrandbits(64):016x}"
        headers.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
        attach = kind > 0.8
        text_size = target // 3 if attach else target // 2
        alt = f"=_alt_{rng.getrandbits(64):016x}"
        plain = _text(rng, text_size)
        html = b"<html><body><p>" + _text(rng, text_size).replace(b"\r\n", b"</p>\r\n<p>") + b"</p></body></html>\r\n"
        parts = [
            f'Content-Type: multipart/alternative; boundary="{alt}"\r\n\r\n'.encode()
            + f"--{alt}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n".encode()
            + plain
            + f"--{alt}\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n".encode()
            + html
            + f"--{alt}--\r\n".encode()
        ]
        if attach:
            name = f"{rng.choice(WORDS)}-{i}.{rng.choice(['pdf', 'png', 'zip', 'xlsx'])}"
            parts.append(
                f'Content-Type: application/octet-stream; name="{name}"\r\n'
                f'Content-Disposition: attachment; filename="{name}"\r\n'
                "Content-Transfer-Encoding: base64\r\n\r\n".encode()
                + _b64(rng.randbytes(max(64, target - 2 * text_size) * 3 // 4))
            )
        body = b"This is a multi-part message in MIME format.\r\n\r\n"
        for part in parts:
            body += f"--{boundary}\r\n".encode() + part
        body += f"--{boundary}--\r\n".encode()
    raw = ("\r\n".join(headers) + "\r\n\r\n").encode("ascii") + body
    flags = []
    if rng.random() < 0.6:
        flags.append("\\Seen")
    if rng.random() < 0.05:
        flags.append("\\Flagged")
    if rng.random() < 0.05:
        flags.append(rng.choice(KEYWORDS))
    return raw, tuple(flags)


def make_messages(count: int, seed: int) -> list[tuple[bytes, tuple[str, ...]]]:
    rng = random.Random(seed)
    return [make_message(i, rng) for i in range(count)]


# -- a lean IMAP client ----------------------------------------------------------------------

_LITERAL = re.compile(rb"\{(\d+)\}\r\n\Z")


@dataclass
class Response:
    lines: list[bytes]  # the response's line fragments (each literal's "{n}" line and what follows)
    literals: list[bytes] = field(default_factory=list)


class Wire:
    """One IMAP connection: raw commands, responses split into line fragments and literals."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0
        self.tags = 0
        greeting = self._line()
        if not greeting.startswith(b"* OK"):
            raise BenchError(f"unexpected greeting: {greeting[:200]!r}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def _fill(self) -> None:
        if self.pos > 1 << 20:
            del self.buf[: self.pos]
            self.pos = 0
        data = self.sock.recv(1 << 20)
        if not data:
            raise BenchError("connection closed by the server")
        self.buf += data

    def _line(self) -> bytes:
        while True:
            end = self.buf.find(b"\r\n", self.pos)
            if end >= 0:
                line = bytes(self.buf[self.pos : end + 2])
                self.pos = end + 2
                return line
            self._fill()

    def _exact(self, n: int) -> bytes:
        while len(self.buf) - self.pos < n:
            self._fill()
        data = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return data

    def _response(self) -> Response:
        resp = Response([self._line()])
        while (m := _LITERAL.search(resp.lines[-1])) is not None:
            resp.literals.append(self._exact(int(m.group(1))))
            resp.lines.append(self._line())
        return resp

    def command(self, text: bytes, literal: bytes | None = None) -> tuple[bytes, list[Response]]:
        """Send `TAG text` (with one synchronizing literal at its end); (tagged line, untagged responses)."""
        self.tags += 1
        tag = b"b%d" % self.tags
        if literal is None:
            self.sock.sendall(tag + b" " + text + b"\r\n")
        else:
            self.sock.sendall(tag + b" " + text + b" {%d}\r\n" % len(literal))
        untagged = []
        sent = literal is None
        while True:
            resp = self._response()
            first = resp.lines[0]
            if first.startswith(tag + b" "):
                status = first[len(tag) + 1 :]
                if not status.startswith(b"OK"):
                    raise BenchError(f"{text[:80]!r}: {status[:300]!r}")
                return status, untagged
            if first.startswith(b"+") and not sent:
                self.sock.sendall(literal + b"\r\n")  # type: ignore[operator]
                sent = True
                continue
            untagged.append(resp)

    def login(self) -> None:
        self.command(b'LOGIN "%s" "%s"' % (USER.encode(), PASSWORD.encode()))


# -- loading -------------------------------------------------------------------------------

_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")


def load(port: int, messages: list[tuple[bytes, tuple[str, ...]]], connections: int) -> tuple[list[int], float]:
    """APPEND every message to INBOX over `connections` sessions; (UID of each message, seconds)."""
    uids = [0] * len(messages)
    lock = threading.Lock()
    todo = iter(range(len(messages)))
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            wire = Wire(port)
            try:
                wire.login()
                while not errors:
                    with lock:
                        i = next(todo, None)
                    if i is None:
                        break
                    raw, flags = messages[i]
                    status, _ = wire.command(b"APPEND INBOX (%s)" % " ".join(flags).encode(), raw)
                    m = _APPENDUID.search(status)
                    if m is None:
                        raise BenchError(f"APPEND without APPENDUID: {status[:200]!r}")
                    uids[i] = int(m.group(2))
                wire.command(b"LOGOUT")
            finally:
                wire.close()
        except BaseException as e:
            errors.append(e)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, connections))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    if len(set(uids)) != len(uids):
        raise BenchError("APPENDUID gave duplicate UIDs")
    return uids, time.perf_counter() - started


# -- the timed part --------------------------------------------------------------------------

_FETCH_UID = re.compile(rb"[( ]UID (\d+)")
_FETCH_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


@dataclass
class Round:
    server: str
    connect: float
    login: float
    select: float
    fetch_all: float
    bodies: float
    body_bytes: int

    @property
    def part_a(self) -> float:
        return self.connect + self.login + self.select + self.fetch_all

    @property
    def total(self) -> float:
        return self.part_a + self.bodies

    def detail(self) -> str:
        return (
            f"{self.server}: (a) {self.part_a:.3f} s [connect {self.connect * 1000:.1f} ms, LOGIN "
            f"{self.login * 1000:.1f} ms, SELECT {self.select * 1000:.1f} ms, FETCH 1:* {self.fetch_all:.3f} s]"
            f"  (b) {self.bodies:.3f} s  total {self.total:.3f} s"
        )


def one_round(name: str, port: int, expected: int, picks: list[int]) -> Round:
    """Parts (a) and (b) on one connection; `picks` are UIDs for the BODY.PEEK[] fetches."""
    t0 = time.perf_counter()
    wire = Wire(port)
    try:
        t1 = time.perf_counter()
        wire.login()
        t2 = time.perf_counter()
        wire.command(b"SELECT INBOX")
        t3 = time.perf_counter()
        _, responses = wire.command(b"UID FETCH 1:* (FLAGS ENVELOPE RFC822.SIZE)")
        t4 = time.perf_counter()
        sizes: dict[int, int] = {}
        for resp in responses:
            if b" FETCH (" not in resp.lines[0]:
                continue
            text = b"".join(resp.lines)
            uid, size = (
                _FETCH_UID.search(resp.lines[0]),
                _FETCH_SIZE.findall(resp.lines[-1]) or _FETCH_SIZE.findall(text),
            )
            if uid is None or not size or b"ENVELOPE (" not in text:
                raise BenchError(f"{name}: odd FETCH response {text[:300]!r}")
            sizes[int(uid.group(1))] = int(size[-1])
        if len(sizes) != expected:
            raise BenchError(f"{name}: UID FETCH 1:* answered for {len(sizes)} of {expected} messages")
        body_bytes = 0
        t5 = time.perf_counter()
        for uid in picks:
            _, responses = wire.command(b"UID FETCH %d BODY.PEEK[]" % uid)
            got = [r.literals[-1] for r in responses if b" FETCH (" in r.lines[0] and r.literals]
            if len(got) != 1 or len(got[0]) != sizes[uid]:
                raise BenchError(f"{name}: UID {uid} BODY[] gave {[len(g) for g in got]} octets, want {sizes[uid]}")
            body_bytes += len(got[0])
        t6 = time.perf_counter()
        with contextlib.suppress(BenchError, OSError):
            wire.command(b"LOGOUT")
    finally:
        wire.close()
    return Round(name, t1 - t0, t2 - t1, t3 - t2, t4 - t3, t6 - t5, body_bytes)


def best(rounds: list[Round]) -> Round:
    """The best of each part (parts are timed separately, so each has its own best round)."""
    return Round(
        rounds[0].server,
        min(r.connect for r in rounds),
        min(r.login for r in rounds),
        min(r.select for r in rounds),
        min(r.fetch_all for r in rounds),
        min(r.bodies for r in rounds),
        rounds[0].body_bytes,
    )


# -- mailstandby under cProfile ----------------------------------------------------------------


class BenchStandby(Standby):
    """`Standby`; with `profile_out` set, start() runs `python -m cProfile -o OUT -m mailstandby serve -c CFG`
    (stop(), a SIGTERM, makes cProfile write OUT)."""

    profile_out: Path | None = None

    def start(self, timeout: float = 20) -> None:
        if self.profile_out is None:
            super().start(timeout)
            return
        listeners = self.data_dir / "run" / "listeners.json"
        listeners.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "cProfile", "-o", str(self.profile_out)]
        argv += ["-m", "mailstandby", "serve", "-c", str(self.config_path)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd=self.root, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"mailstandby exited with {self.proc.returncode}:\n{self.log()}")
            try:
                info = json.loads(listeners.read_text())
            except (OSError, ValueError):
                time.sleep(0.05)
                continue
            self.listeners = {name: int(addrs[0].rsplit(":", 1)[1]) for name, addrs in info.items() if name != "pid"}
            self.port = self.listeners.get("smtp", 0)
            return
        raise BenchError(f"mailstandby did not start listening:\n{self.log()}")


def print_profile(path: Path, top: int) -> None:
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("cumulative").print_stats(r"/mailstandby/", top)  # our own code, by time inside
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    for line in out.getvalue().splitlines():
        if line.strip():
            print(f"#   {line}")


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="IMAP FETCH time of mailstandby vs Dovecot on the same mailbox (see the module docstring).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--messages", "-m", type=int, default=10_000, help="messages in the mailbox")
    p.add_argument("--fetches", "-f", type=int, default=1000, help="single-message BODY.PEEK[] fetches in part (b)")
    p.add_argument("--repeat", "-n", type=int, default=3, help="timed rounds per server; the best is reported")
    p.add_argument("--seed", type=int, default=20250301, help="seed of the messages and of the fetched UIDs")
    p.add_argument("--load-connections", type=int, default=8, help="concurrent APPEND sessions while loading")
    p.add_argument("--profile-out", type=Path, help="run mailstandby under cProfile, writing this file")
    p.add_argument("--profile-top", type=int, default=25, help="functions listed from the profile")
    p.add_argument("--tmpdir", type=Path, help="parent of the bench's temp dir (default: the system's)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, stores)")
    args = p.parse_args(argv)
    if min(args.messages, args.fetches, args.repeat, args.load_connections) < 1:
        p.error("--messages, --fetches, --repeat and --load-connections must be >= 1")
    if args.load_connections > 10:
        p.error("--load-connections: at most 10 (Dovecot's mail_max_userip_connections)")
    return args


def run(args: argparse.Namespace, root: Path) -> int:
    started = time.perf_counter()
    messages = make_messages(args.messages, args.seed)
    total = sum(len(raw) for raw, _ in messages)
    multipart = sum(b"multipart/mixed" in raw[:4096] for raw, _ in messages)
    print(
        f"# {args.messages} msgs ({total / 2**20:.1f} MiB, {multipart} multipart, "
        f"{min(len(r) for r, _ in messages)}-{max(len(r) for r, _ in messages)} B) generated in "
        f"{time.perf_counter() - started:.1f} s; {args.fetches} BODY[] fetches; best of {args.repeat}; "
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    primary = Primary(root / "primary", users={USER: PASSWORD})
    overrides: dict[str, dict[str, object]] = {
        "imap": {"listen": ["127.0.0.1:0"], "allow_plaintext_auth_on_loopback": True},
        "node": {"log_level": "WARNING"},
        "journal": {"enabled": False},
    }
    profile_out = args.profile_out.resolve() if args.profile_out else None
    if profile_out is not None:
        overrides["node"]["event_loop"] = "asyncio"
    standby = BenchStandby(root / "standby", primary_port=free_port(), **overrides)  # type: ignore[arg-type]
    profiled = False
    try:
        primary.start()
        standby.set_password(USER, PASSWORD)
        standby.start()
        ports = {"dovecot": primary.imap_port, "mailstandby": standby.listeners["imap"]}
        uids: dict[str, list[int]] = {}
        for name, port in ports.items():
            uids[name], seconds = load(port, messages, args.load_connections)
            print(
                f"# loaded {name}: {args.messages} APPENDs in {seconds:.1f} s = {args.messages / seconds:.0f} msgs/s "
                f"({args.load_connections} sessions)",
                flush=True,
            )
        if profile_out is not None:  # profile the timed rounds only: restart on the loaded store under cProfile
            standby.stop()
            standby.profile_out = profile_out
            standby.start()
            ports["mailstandby"] = standby.listeners["imap"]
        rng = random.Random(args.seed + 1)
        indexes = [rng.randrange(args.messages) for _ in range(args.fetches)]
        picks = {name: [uids[name][i] for i in indexes] for name in ports}
        rounds: dict[str, list[Round]] = {name: [] for name in ports}
        order = list(ports)
        for n in range(args.repeat):
            for name in order if n % 2 == 0 else order[::-1]:
                result = one_round(name, ports[name], args.messages, picks[name])
                rounds[name].append(result)
                print(f"  round {n + 1}/{args.repeat} {result.detail()}", flush=True)
        if rounds["dovecot"][0].body_bytes != rounds["mailstandby"][0].body_bytes:
            raise BenchError(
                f"BODY[] octets differ: dovecot {rounds['dovecot'][0].body_bytes}, "
                f"mailstandby {rounds['mailstandby'][0].body_bytes}"
            )
        if profile_out is not None:
            code = standby.stop()  # SIGTERM: cProfile writes its file at a clean exit
            profiled = True
            if not profile_out.exists():
                raise BenchError(f"no profile written (exit {code}):\n{standby.log()}")
    finally:
        try:
            standby.kill()
        finally:
            primary.close()
    if profiled and profile_out is not None:
        print(f"# profile of mailstandby (slowed down by cProfile) in {profile_out}:")
        print_profile(profile_out, args.profile_top)
    results = {name: best(rs) for name, rs in rounds.items()}
    for name in ports:
        b = results[name]
        print(
            f"{name}: (a) LOGIN+SELECT+UID FETCH 1:* {b.part_a:.3f} s  "
            f"(b) {args.fetches} x BODY[] {b.bodies:.3f} s  total {b.total:.3f} s"
        )
    print(f"ratio={results['mailstandby'].total / results['dovecot'].total:.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    errors = (PrimaryError, AssertionError, subprocess.SubprocessError, OSError)
    return run_in_workdir(
        parse_args(argv), "mailstandby-imapbench-", run, setup_errors=errors, root_for="Dovecot's master needs it"
    )


if __name__ == "__main__":
    sys.exit(main())
