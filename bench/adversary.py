#!/usr/bin/env python3
"""The attacks of docs/security.md against a running mailstandby, while a probe times the service.

Usage (with the venv's python, from the checkout):

    .venv/bin/python bench/adversary.py            # every attack, default sizes
    .venv/bin/python bench/adversary.py --body-mb 256 --logins 120   # a quicker run

The last line printed is

    max_stall_s=… logins_verified_past_limit=… codes_past_limit=… peak_rss_mb=…

with the goals `max_stall_s < 0.5`, both counts 0 and `peak_rss_mb < 400`; the lines before it
give each attack's own figures. Exit status 1 when a goal is missed, 2 on a setup problem.

The instance
------------
mailstandby as a subprocess (tests/support/standby.py) with default limits: implicit-TLS IMAP,
SMTP on 127.0.0.1, the admin HTTPS server (which also serves the public setup pages), a fake
primary and a fake smarthost (tests/component/fake_primary.py) in this process. alice has a
standby password and `forward = "summary"` to alice@home.test; bob has an alternate address and
no password (he gets a setup link). An administrator fails the standby over first, so alice's
mail is delivered into her standby mailbox and summarised to her phone.

The probe
---------
A separate process (so this process's own attack work does not slow it) that, every 50 ms,
opens an SMTP connection and reads the banner, and sends NOOP on an IMAP session it logged in
before the attacks. Its longest wait during each attack is that attack's stall; `max_stall_s`
is the longest of all. A wait that does not end within `--probe-timeout` counts as that long.

The attacks, in order
---------------------
1. logins: `--logins` parallel IMAP LOGINs from one address, all wrong but one (alice's real
   password). Verified = audit entries of this phase with outcome `failed` (a password that was
   checked and wrong); past the limit = verified - auth.max_failures.
2. admin logins: `--admin-logins` parallel wrong HTTP Basic logins; past the limit = 401s beyond
   admin.max_failures (the others must be 429). Added to logins_verified_past_limit.
3. LIST regex: a long mailbox name, then `LIST "" "*a*a*…*b"` with `--stars` stars.
4. HTML summary: a `--html-kb` KiB text/html body of "<" to alice (summarised while failed over).
5. half-open admin connections: `--half-open` connections that never finish their request
   headers, then an authenticated API request and a setup page request (each must answer).
6. big bodies: `--body-mb` MiB POSTed to /autodiscover/autodiscover.xml and to the setup
   password form, streamed; peak_rss_mb is the server's VmHWM afterwards.
7. code races: `--code-requests` parallel "send me a code" requests on bob's link;
   codes_past_limit = code mails the smarthost received beyond 3.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import multiprocessing
import multiprocessing.connection
import re
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from bench.harness import BenchError, run_in_workdir
from tests.component.fake_primary import FakePrimary
from tests.support.database import query
from tests.support.standby import Standby

ALICE_PW = "alice standby password 2026"
CAROL_PW = "carol standby password 2026"
ATTACKER = "127.0.0.2"  # the guessing attacks come from here (the throttles then leave 127.0.0.1 alone)
CAROL = "127.0.0.3"  # a legitimate user who abuses LIST
ADMIN_PW = "correct horse battery staple"
MAX_CODES = 3


# -- the probe (its own process) ------------------------------------------------------------------
def probe(smtp_port: int, imaps_port: int, cafile: str, conn: multiprocessing.connection.Connection) -> None:
    """Every 50 ms: SMTP banner on a new connection, IMAP NOOP on one session. On "mark", send back
    the longest wait since the previous mark; on "stop", send it and end."""
    import imaplib

    context = ssl.create_default_context(cafile=cafile)
    context.check_hostname = False
    imap = imaplib.IMAP4_SSL("127.0.0.1", imaps_port, ssl_context=context, timeout=60)
    imap.login("alice@corp.test", ALICE_PW)
    conn.send("ready")
    worst = 0.0
    while True:
        if conn.poll(0.05):
            command = conn.recv()
            conn.send(worst)
            worst = 0.0
            if command == "stop":
                break
        started = time.perf_counter()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", smtp_port), timeout=60) as s:
            s.recv(512)
            s.sendall(b"QUIT\r\n")
        smtp_wait = time.perf_counter() - started
        started = time.perf_counter()
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            imap.noop()
        worst = max(worst, smtp_wait, time.perf_counter() - started)
    with contextlib.suppress(Exception):
        imap.logout()


class Probe:
    def __init__(self, smtp_port: int, imaps_port: int, cafile: Path) -> None:
        spawn = multiprocessing.get_context("spawn")  # no fork of a process with threads and a loop
        self.conn, child = spawn.Pipe()
        self.proc = spawn.Process(target=probe, args=(smtp_port, imaps_port, str(cafile), child))
        self.proc.start()
        if not self.conn.poll(60) or self.conn.recv() != "ready":
            raise BenchError("the probe could not log in")

    def mark(self) -> float:
        """The longest wait since the last mark."""
        self.conn.send("mark")
        if not self.conn.poll(120):
            return 120.0  # the probe itself is stuck waiting for the server
        return float(self.conn.recv())

    def stop(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self.conn.send("stop")
            self.conn.poll(120) and self.conn.recv()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


# -- raw clients ----------------------------------------------------------------------------------
def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def imap_login(port: int, password: str) -> str:
    """One IMAP connection from the attacker's address: greeting, LOGIN; the tagged answer's first word."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_tls(), local_addr=(ATTACKER, 0))
    except OSError as e:
        return f"connect:{type(e).__name__}"
    try:
        await reader.readline()
        writer.write(f'a1 LOGIN alice@corp.test "{password}"\r\n'.encode())
        await writer.drain()
        while True:
            line = await reader.readline()
            if not line:
                return "closed"
            if line.startswith(b"a1 "):
                return line.split()[1].decode()
    except OSError as e:
        return f"error:{type(e).__name__}"
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def imap_command(port: int, command: str, *, timeout: float = 60.0) -> str:
    """carol, from her own address, logs in and sends one command: its tagged answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_tls(), local_addr=(CAROL, 0))
    try:
        async with asyncio.timeout(timeout):
            await reader.readline()
            writer.write(f'l LOGIN carol@corp.test "{CAROL_PW}"\r\n'.encode())
            while not (await reader.readline()).startswith(b"l "):
                pass
            writer.write(f"c {command}\r\n".encode())
            while True:
                line = await reader.readline()
                if not line:
                    return "closed"
                if line.startswith(b"c "):
                    return line.decode().strip()
    except TimeoutError:
        return "timeout"
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


def audit_count(standby: Standby, action: str, outcome: str, since: float) -> int:
    [(count,)] = query(
        standby.data_dir,
        "SELECT count(*) FROM audit WHERE action = ? AND outcome = ? AND at >= ?",
        (action, outcome, since),
        timeout=30,
    )
    return int(count)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def setting(standby: Standby, section: str, key: str) -> Any:
    from mailstandby.config import load

    return getattr(getattr(load(standby.config_path), section), key)


# -- the attacks ----------------------------------------------------------------------------------
class Attacks:
    def __init__(self, args: argparse.Namespace, standby: Standby, smarthost: FakePrimary, bob_link: str) -> None:
        self.args = args
        self.standby = standby
        self.smarthost = smarthost
        self.bob_link = bob_link
        self.imaps = standby.listeners["imaps"]
        self.admin_url = f"https://127.0.0.1:{standby.listeners['admin']}"
        self.results: dict[str, Any] = {}

    def http(self, *, source: str = "127.0.0.1", **kw: Any) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(verify=False, local_address=source)
        return httpx.AsyncClient(base_url=self.admin_url, transport=transport, timeout=60, **kw)

    async def logins(self) -> None:
        since = time.time()
        passwords = [f"wrong password {i}" for i in range(self.args.logins)]
        passwords[len(passwords) // 2] = ALICE_PW
        answers = await asyncio.gather(*(imap_login(self.imaps, p) for p in passwords))
        verified = audit_count(self.standby, "login.imap", "failed", since)
        limit = setting(self.standby, "auth", "max_failures")
        right = answers[len(passwords) // 2]
        self.results["imap_verified"] = verified
        self.results["imap_past_limit"] = max(0, verified - limit)
        print(
            f"logins: {len(passwords)} parallel IMAP LOGINs, {verified} verified wrong (limit {limit}), "
            f"the right one got {right}"
        )

    async def admin_logins(self) -> None:
        wrong = base64.b64encode(b"admin:not the password").decode()
        async with self.http(source=ATTACKER) as http:
            replies = await asyncio.gather(
                *(
                    http.get("/api/v1/status", headers={"Authorization": f"Basic {wrong}"})
                    for _ in range(self.args.admin_logins)
                ),
                return_exceptions=True,
            )
        codes = [r.status_code if isinstance(r, httpx.Response) else type(r).__name__ for r in replies]
        limit = setting(self.standby, "admin", "max_failures")
        denied = codes.count(401)
        self.results["admin_past_limit"] = max(0, denied - limit)
        print(
            f"admin logins: {len(codes)} parallel wrong, {denied} x 401 (limit {limit}), "
            f"{codes.count(429)} x 429, others {[c for c in codes if c not in (401, 429)][:5]}"
        )

    async def list_regex(self) -> None:
        name = "a" * 200
        await imap_command(self.imaps, f'CREATE "{name}"')
        pattern = "*a" * self.args.stars + "*b"
        answer = await imap_command(self.imaps, f'LIST "" "{pattern}"', timeout=self.args.probe_timeout)
        print(f"LIST regex: {self.args.stars} stars against a 200-character name: {answer[:60]}")

    async def html_summary(self) -> None:
        before = len(self.smarthost.messages)
        body = (
            (
                b"From: someone@ext.test\r\nTo: alice@corp.test\r\nSubject: angles\r\nMIME-Version: 1.0\r\n"
                b"Content-Type: text/html; charset=us-ascii\r\n\r\n"
            )
            + b"<" * (self.args.html_kb * 1024)
            + b"\r\n"
        )
        await asyncio.to_thread(send_smtp, self.standby.port, "someone@ext.test", "alice@corp.test", body)
        with contextlib.suppress(TimeoutError):
            await self.smarthost.wait_for(
                lambda: any(m.rcpts == ["alice@home.test"] for m in self.smarthost.messages[before:]),
                timeout=self.args.probe_timeout,
            )
        got = any(m.rcpts == ["alice@home.test"] for m in self.smarthost.messages[before:])
        print(f"HTML summary: {self.args.html_kb} KiB of '<' to a summarised user; summary sent: {got}")

    async def half_open(self) -> None:
        held = []
        for _ in range(self.args.half_open):
            try:
                _, writer = await asyncio.open_connection(
                    "127.0.0.1", self.standby.listeners["admin"], ssl=client_tls(), local_addr=(ATTACKER, 0)
                )
            except OSError:
                break
            writer.write(b"GET /api/v1/status HTTP/1.1\r\nHost: standby\r\n")  # never the blank line
            held.append(writer)
        try:
            started = time.perf_counter()
            async with self.http(auth=("admin", ADMIN_PW)) as http:
                api = await self.status_or_error(http.get("/api/v1/status"))
                page = await self.status_or_error(http.get(self.bob_link))
            took = time.perf_counter() - started
        finally:
            for writer in held:
                writer.close()
        self.results["half_open_ok"] = api == 200 and page == 200
        print(f"half-open admin: {len(held)} held; API answered {api}, setup page {page} in {took:.2f} s")

    @staticmethod
    async def status_or_error(request: Awaitable[httpx.Response]) -> int | str:
        try:
            return (await request).status_code
        except httpx.HTTPError as e:
            return type(e).__name__

    async def big_bodies(self) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            chunk = b"x" * (1024 * 1024)
            for _ in range(self.args.body_mb):
                yield chunk

        before = peak_rss_mb(self.standby.proc.pid)  # type: ignore[union-attr]
        outcomes = []
        for path in ("/autodiscover/autodiscover.xml", self.bob_link + "/password"):
            async with self.http(source=ATTACKER) as http:
                outcomes.append(await self.status_or_error(http.post(path, content=chunks())))
        after = peak_rss_mb(self.standby.proc.pid)  # type: ignore[union-attr]
        print(
            f"big bodies: {self.args.body_mb} MiB twice, answers {outcomes}; "
            f"server peak RSS {before:.0f} -> {after:.0f} MiB"
        )

    async def code_race(self) -> None:
        def codes() -> int:
            return sum(1 for m in self.smarthost.messages if m.rcpts == ["bob@home.test"] and is_code(m.body))

        async with self.http(source=ATTACKER) as http:
            replies = await asyncio.gather(
                *(self.status_or_error(http.post(self.bob_link + "/code")) for _ in range(self.args.code_requests))
            )
        last, stable_since = -1, time.monotonic()
        while time.monotonic() - stable_since < 3:  # code mails go out asynchronously: wait for quiet
            await asyncio.sleep(0.2)
            if codes() != last:
                last, stable_since = codes(), time.monotonic()
        self.results["codes_past_limit"] = max(0, last - MAX_CODES)
        print(
            f"code race: {len(replies)} parallel requests, answers {sorted(set(map(str, replies)))}, "
            f"{last} codes mailed (limit {MAX_CODES})"
        )


def is_code(body: bytes) -> bool:
    msg = message_from_bytes(body, policy=policy.default)
    part = msg.get_body(("plain",))  # type: ignore[attr-defined]
    return part is not None and re.search(r"\b\d{6}\b", part.get_content()) is not None


def send_smtp(port: int, sender: str, rcpt: str, body: bytes) -> None:
    import smtplib

    with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
        client.sendmail(sender, [rcpt], body)


# -- set-up and the run ---------------------------------------------------------------------------
async def failed_over_standby(root: Path, smarthost: FakePrimary, primary: FakePrimary) -> tuple[Standby, str]:
    standby = Standby(
        root / "standby",
        primary_port=primary.port,
        imap={"listen_tls": ["127.0.0.1:0"]},
        outbound={"host": "127.0.0.1", "port": smarthost.port, "tls": "none", "connect_timeout": 5.0},
        notify={"setup_url": "https://standby.corp.test", "organization": "Corp"},
        journal={"enabled": False},
    )
    config = standby.config_path.read_text()
    config = config.replace(
        'address = "alice@corp.test"\n',
        'address = "alice@corp.test"\nalternates = ["alice@home.test"]\nforward = "summary"\nnotify = []\n',
    ).replace('address = "bob@corp.test"\n', 'address = "bob@corp.test"\nalternates = ["bob@home.test"]\n')
    standby.config_path.write_text(config)
    await asyncio.to_thread(standby.set_password, "alice@corp.test", ALICE_PW)
    await asyncio.to_thread(standby.set_password, "carol@corp.test", CAROL_PW)
    await asyncio.to_thread(standby.start)
    await asyncio.to_thread(standby.add_admin, "admin", ADMIN_PW)
    done = await asyncio.to_thread(standby.cli, "failover", "--reason", "adversary bench", password=ADMIN_PW)
    if done.returncode != 0:
        raise BenchError(f"failover refused: {done.stderr}")
    await smarthost.wait_for(lambda: any(m.rcpts == ["bob@home.test"] for m in smarthost.messages), timeout=60)
    notice = next(m for m in smarthost.messages if m.rcpts == ["bob@home.test"])
    text = message_from_bytes(notice.body, policy=policy.default).get_body(("plain",)).get_content()  # type: ignore[union-attr]
    found = re.search(r"https://standby\.corp\.test(/setup/[\w-]+)", text)
    if found is None:
        raise BenchError("bob's notice has no setup link")
    return standby, found.group(1)


async def run_attacks(args: argparse.Namespace, root: Path) -> int:
    smarthost, primary = FakePrimary(), FakePrimary()
    await smarthost.start()
    await primary.start()
    standby: Standby | None = None
    probe_: Probe | None = None
    try:
        standby, bob_link = await failed_over_standby(root, smarthost, primary)
        cafile = standby.data_dir / "tls" / "selfsigned.crt"
        probe_ = await asyncio.to_thread(Probe, standby.port, standby.listeners["imaps"], cafile)
        attacks = Attacks(args, standby, smarthost, bob_link)
        phases: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("logins", attacks.logins),
            ("admin_logins", attacks.admin_logins),
            ("list_regex", attacks.list_regex),
            ("html_summary", attacks.html_summary),
            ("half_open", attacks.half_open),
            ("big_bodies", attacks.big_bodies),
            ("code_race", attacks.code_race),
        ]
        stalls = {}
        await asyncio.to_thread(probe_.mark)
        for name, attack in phases:
            await attack()
            attacks.results["peak_rss_mb"] = peak_rss_mb(standby.proc.pid)  # type: ignore[union-attr]
            stalls[name] = await asyncio.to_thread(probe_.mark)
            rss = peak_rss_mb(standby.proc.pid)  # type: ignore[union-attr]
            print(f"  {name}: longest wait of the probe {stalls[name]:.3f} s; server peak RSS so far {rss:.0f} MiB")
    finally:
        if probe_ is not None:
            await asyncio.to_thread(probe_.stop)
        if standby is not None:
            await asyncio.to_thread(standby.kill)
        await smarthost.stop()
        await primary.stop()
    r = attacks.results
    max_stall = max(stalls.values())
    past = r["imap_past_limit"] + r["admin_past_limit"]
    codes_past, rss = r["codes_past_limit"], r["peak_rss_mb"]  # the peak over the whole run
    ok = max_stall < 0.5 and past == 0 and codes_past == 0 and rss < 400 and r["half_open_ok"]
    print(
        f"goals {'met' if ok else 'MISSED'}: max_stall_s < 0.5, both counts 0, peak_rss_mb < 400, "
        "the admin listener answers beside half-open connections"
    )
    print(
        f"max_stall_s={max_stall:.3f} logins_verified_past_limit={past} codes_past_limit={codes_past} "
        f"peak_rss_mb={rss:.0f}"
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=300, help="parallel IMAP LOGINs (one right)")
    parser.add_argument("--admin-logins", type=int, default=90, help="parallel wrong admin logins")
    parser.add_argument("--stars", type=int, default=12, help="stars in the LIST pattern")
    parser.add_argument("--html-kb", type=int, default=300, help="KiB of '<' in the HTML message")
    parser.add_argument("--half-open", type=int, default=150, help="admin connections left half-open")
    parser.add_argument("--body-mb", type=int, default=1024, help="MiB in each big body")
    parser.add_argument("--code-requests", type=int, default=30, help="parallel code requests")
    parser.add_argument("--probe-timeout", type=float, default=60.0, help="longest wait for one attack's answer")
    parser.add_argument("--tmpdir", default=None, help="where the work directory goes")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    return run_in_workdir(
        args, "msb-adversary-", lambda a, root: asyncio.run(run_attacks(a, root)), setup_errors=(OSError,)
    )


if __name__ == "__main__":
    sys.exit(main())
