"""The admin HTTP listener (API and public setup pages) against a running mailstandby, as an attacker
would try it: half-open connections, huge bodies, forged X-Forwarded-For (issue 16, findings 4-6).

Attack connections come from 127.0.0.2 and up; the administrator and the phone from 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from tests.support.database import change
from tests.support.standby import Standby

from mailstandby.notify import tokens

ADMIN_PW = "correct horse battery staple"
MiB = 1024 * 1024
TIMEOUT = 30.0


def closed_port() -> int:
    """A port nothing listens on (the primary is down; these tests are about the admin listener)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(tmp_path: Path, **admin: Any) -> Iterator[Standby]:
    standby = Standby(
        tmp_path / "standby", primary_port=closed_port(), admin={"tls": False, "max_failures": 3, **admin}
    )
    with standby:
        standby.add_admin("admin", ADMIN_PW)
        yield standby


def client(standby: Standby, password: str = ADMIN_PW) -> httpx.Client:
    url = f"http://127.0.0.1:{standby.listeners['admin']}"
    return httpx.Client(base_url=url, auth=("admin", password), timeout=TIMEOUT)


def connect(port: int, source: str) -> socket.socket:
    s = socket.socket()
    s.settimeout(TIMEOUT)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def half_open(port: int, source: str) -> socket.socket:
    """A connection that sends the start of a request and never finishes its headers."""
    s = connect(port, source)
    s.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: standby\r\nX-Slow: ")
    return s


def until_closed(s: socket.socket) -> bytes:
    got = b""
    while chunk := s.recv(65536):
        got += chunk
    return got


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_half_open_connections_neither_starve_the_api_nor_linger(tmp_path: Path) -> None:
    with running(tmp_path, header_timeout=2.0, body_timeout=2.0, max_connections_per_client=20) as standby:
        port = standby.listeners["admin"]
        attack = [half_open(port, f"127.0.0.{2 + n % 6}") for n in range(120)]  # 20 from each of 6 addresses
        slow_body = connect(port, "127.0.0.8")  # headers complete, the body never
        slow_body.sendall(b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: s\r\nContent-Length: 100\r\n\r\n<")
        attack.append(slow_body)
        extra = [connect(port, "127.0.0.2") for _ in range(5)]  # past that address's share (sending nothing,
        # so that closing does not reset the connection before the client reads the 503)
        try:
            with client(standby) as api:
                assert api.get("/api/v1/status").status_code == 200
                assert api.get("/.well-known/autoconfig/mail/config-v1.1.xml").status_code == 200
            for s in extra:
                assert until_closed(s).startswith(b"HTTP/1.1 503 ")
            for s in attack[:-1]:  # closed by the header deadline, with a 408
                assert until_closed(s).startswith(b"HTTP/1.1 408 ")
            assert until_closed(slow_body) == b""  # closed by the body deadline
        finally:
            for s in attack + extra:
                s.close()
        with client(standby) as api:
            assert api.get("/api/v1/status").status_code == 200


def fifty_megabytes() -> Iterator[bytes]:
    chunk = b"<" * MiB
    for _ in range(50):
        yield chunk


def test_big_bodies_are_refused_without_being_held(tmp_path: Path) -> None:
    with running(tmp_path) as standby:
        assert standby.proc is not None
        token = "t" * 43
        change(
            standby.data_dir,
            "INSERT INTO setup_tokens (hash, user, purpose, created_at, expires_at) VALUES (?,?,?,?,?)",
            (tokens.token_hash(token), "alice@corp.test", tokens.Purpose.LINK.value, time.time(), time.time() + 3600),
        )
        before = peak_rss(standby.proc.pid)
        url = f"http://127.0.0.1:{standby.listeners['admin']}"
        with httpx.Client(base_url=url, timeout=TIMEOUT) as phone:
            for path in ("/autodiscover/autodiscover.xml", f"/setup/{token}/password"):
                streamed = phone.post(path, content=fifty_megabytes())  # chunked: no length announced
                assert streamed.status_code == 413, path
                declared = phone.post(path, content=b"<" * (50 * MiB))  # Content-Length: refused before reading
                assert declared.status_code == 413, path
            assert phone.post("/autodiscover/autodiscover.xml", content=b"<Autodiscover/>").status_code == 404
        grown = peak_rss(standby.proc.pid) - before
        assert grown < 20 * MiB, f"the server's peak RSS grew by {grown / MiB:.0f} MiB"


def audit_peers(standby: Standby) -> set[str]:
    db = sqlite3.connect(f"file:{standby.data_dir / 'mailstandby.db'}?mode=ro", uri=True)
    try:
        return {peer for (peer,) in db.execute("SELECT peer FROM audit WHERE action LIKE 'admin.login%'")}
    finally:
        db.close()


def test_a_forged_forwarded_for_neither_escapes_the_throttle_nor_reaches_the_audit(tmp_path: Path) -> None:
    with running(tmp_path) as standby, client(standby, password="wrong") as api:
        codes = [
            api.get("/api/v1/status", headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code for n in range(8)
        ]
        assert codes == [401] * 3 + [429] * 5
        assert audit_peers(standby) == {"127.0.0.1"}


def test_a_configured_proxy_speaks_for_its_clients(tmp_path: Path) -> None:
    with running(tmp_path, trusted_proxies=["127.0.0.0/8"]) as standby, client(standby, password="wrong") as api:
        for n in range(2):
            assert api.get("/api/v1/status", headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code == 401
        assert audit_peers(standby) == {"198.51.100.0", "198.51.100.1"}
