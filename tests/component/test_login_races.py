"""Guesses sent in parallel are counted as they arrive (docs/security.md, "Logins and one-time codes").

The real PasswordAuthenticator over the SQLite credential store, behind the real IMAP, POP3,
submission and admin HTTP servers on 127.0.0.1:0; every argon2 verification is counted. A burst
of wrong passwords from one address (or at one account from several addresses) runs at most the
limit of verifications, and the right password sent once the limit is reached does not get in.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from prometheus_client import CollectorRegistry
from raw_stream import TIMEOUT, RawStream
from served import served

import mailstandby.auth as auth_module
from mailstandby.admin.api import Services, create_app
from mailstandby.admin.auth import AdminAuthenticator
from mailstandby.auth import PasswordAuthenticator, hash_password
from mailstandby.config import (
    AdminSettings,
    AuthSettings,
    IMAPSettings,
    POP3Settings,
    StoreSettings,
    SubmissionSettings,
)
from mailstandby.directory.base import User
from mailstandby.directory.static import StaticDirectory
from mailstandby.imap.server import IMAPServer
from mailstandby.intake import SubmissionIntake
from mailstandby.pop3.server import POP3Server
from mailstandby.smtp.server import SMTPServer
from mailstandby.smtp.session import Login
from mailstandby.store.sqlite import SQLiteStore
from mailstandby.store.sqlite_failover import SQLiteFailoverStore
from mailstandby.store.sqlite_mailbox import SQLiteMailboxStore

ALICE, ALICE_PW = "alice@corp.test", "right horse battery"
DIRECTORY = StaticDirectory(["corp.test"], [User(ALICE, ("a.liddell@corp.test",)), User("bob@corp.test")])
FAILED_IMAP = b"NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"


@dataclass
class Verifications:
    """Every argon2 verification run: the passwords tried, and the most that ran at once."""

    passwords: list[str] = field(default_factory=list)
    running: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wrong(self) -> list[str]:
        return [p for p in self.passwords if p != ALICE_PW]


@pytest.fixture
def verified(monkeypatch: pytest.MonkeyPatch) -> Verifications:
    seen = Verifications()
    real = auth_module.verify_password

    def counting(hashed: str, password: str) -> bool:
        with seen.lock:
            seen.passwords.append(password)
            seen.running += 1
            seen.peak = max(seen.peak, seen.running)
        try:
            return real(hashed, password)
        finally:
            with seen.lock:
                seen.running -= 1

    monkeypatch.setattr(auth_module, "verify_password", counting)
    return seen


@pytest.fixture
async def base(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "data", StoreSettings())
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def creds(base: SQLiteStore) -> SQLiteMailboxStore:
    store = SQLiteMailboxStore(base)
    await store.set_password_hash(ALICE, hash_password(ALICE_PW))
    return store


class Client(RawStream):
    """One connection from a chosen loopback source address; reads replies line by line."""

    @classmethod
    async def open(cls, port: int, source: str = "127.0.0.1") -> Client:
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            client = cls(reader, writer)
            await client.line()  # the greeting
        return client

    async def line(self) -> bytes:
        async with asyncio.timeout(TIMEOUT):
            raw = await self.reader.readline()
        assert raw, "the server closed the connection where a reply was expected"
        return raw

    async def until(self, done: Callable[[bytes], bool]) -> bytes:
        while not done(raw := await self.line()):
            pass
        return raw


async def eventually(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.01)


async def close_all(clients: list[Client]) -> None:
    await asyncio.gather(*(c.close() for c in clients))


def tagged(tag: str) -> Callable[[bytes], bool]:
    return lambda line: line.startswith(tag.encode() + b" ")


# -- IMAP ---------------------------------------------------------------------------------------


async def imap_server(creds: SQLiteMailboxStore, auth: PasswordAuthenticator) -> IMAPServer:
    # the connection cap per client (100 by default) would refuse most of the 300 at connect:
    # raised here, so that every guess reaches the login throttle this file is about
    settings = IMAPSettings(
        listen=["127.0.0.1:0"], listen_tls=[], allow_plaintext_auth_on_loopback=True, max_connections_per_client=400
    )
    server = IMAPServer(settings, creds, auth, tls_context=None)
    await server.start()
    return server


async def imap_login(port: int, password: str, *, source: str = "127.0.0.1", tag: str = "a") -> bytes:
    client = await Client.open(port, source)
    try:
        await client.send(f'{tag} LOGIN {ALICE} "{password}"\r\n'.encode())
        return (await client.until(tagged(tag)))[len(tag) + 1 :]
    finally:
        await client.close()


async def test_300_parallel_imap_guesses_from_one_address_verify_at_most_the_limit(
    creds: SQLiteMailboxStore, verified: Verifications
) -> None:
    auth = PasswordAuthenticator(DIRECTORY, creds, AuthSettings(failure_delay=0, max_failures=10))
    server = await imap_server(creds, auth)
    clients = list(await asyncio.gather(*(Client.open(server.addresses[0][1]) for _ in range(300))))
    try:
        for i, client in enumerate(clients[:-1]):
            client.writer.write(f'g{i} LOGIN {ALICE} "guess-{i}"\r\n'.encode())
        await eventually(lambda: auth.throttled("127.0.0.1"))
        await clients[-1].send(f'r LOGIN {ALICE} "{ALICE_PW}"\r\n'.encode())
        assert await clients[-1].until(tagged("r")) == b"r " + FAILED_IMAP  # as any throttled login
        replies = await asyncio.gather(*(c.until(tagged(f"g{i}")) for i, c in enumerate(clients[:-1])))
        assert all(reply.endswith(b" " + FAILED_IMAP) for reply in replies)
        assert len(verified.wrong()) <= 10
        assert ALICE_PW not in verified.passwords  # throttled before any argon2 run
    finally:
        await close_all(clients)
        await server.stop(1.0)


async def test_guesses_at_one_account_from_many_addresses_are_limited_but_its_phone_still_gets_in(
    creds: SQLiteMailboxStore, verified: Verifications
) -> None:
    settings = AuthSettings(failure_delay=0, max_failures=3, max_account_failures=5)
    auth = PasswordAuthenticator(DIRECTORY, creds, settings)
    server = await imap_server(creds, auth)
    port = server.addresses[0][1]
    try:
        assert (await imap_login(port, ALICE_PW)).startswith(b"OK")  # the phone, before the attack
        sources = [f"127.0.0.{n}" for n in range(2, 6) for _ in range(3)]  # 4 addresses x 3 guesses
        replies = await asyncio.gather(*(imap_login(port, f"guess-{i}", source=s) for i, s in enumerate(sources)))
        assert replies == [FAILED_IMAP] * len(sources)
        assert len(verified.wrong()) <= 5
        assert await imap_login(port, ALICE_PW, source="127.0.0.9") == FAILED_IMAP  # a fresh address: refused
        assert (await imap_login(port, ALICE_PW, source="127.0.0.1")).startswith(b"OK")  # the phone's own
        assert len(verified.wrong()) <= 5
    finally:
        await server.stop(1.0)


async def test_argon2_runs_at_most_max_verifications_at_once(
    creds: SQLiteMailboxStore, verified: Verifications
) -> None:
    auth = PasswordAuthenticator(DIRECTORY, creds, AuthSettings(failure_delay=0, max_verifications=2))
    results = await asyncio.gather(
        *(auth.authenticate(f"user{i}@corp.test", "guess", peer=f"10.0.0.{i}", protocol="imap") for i in range(12)),
        auth.authenticate(ALICE, ALICE_PW, peer="10.0.1.1", protocol="imap"),
    )
    assert results == [None] * 12 + [ALICE]
    assert len(verified.passwords) == 13  # an unknown user costs a verification too (equal timing)
    assert verified.peak <= 2


# -- POP3 and submission -----------------------------------------------------------------------


async def test_parallel_pop3_guesses_from_one_address_verify_at_most_the_limit(
    creds: SQLiteMailboxStore, verified: Verifications
) -> None:
    auth = PasswordAuthenticator(DIRECTORY, creds, AuthSettings(failure_delay=0, max_failures=5))
    settings = POP3Settings(listen=["127.0.0.1:0"], listen_tls=[], allow_plaintext_auth_on_loopback=True)
    server = POP3Server(settings, creds, auth, hostname="standby.corp.test", tls_context=None)
    await server.start()
    clients = list(await asyncio.gather(*(Client.open(server.addresses[0][1]) for _ in range(40))))
    try:
        for i, client in enumerate(clients[:-1]):
            client.writer.write(f"USER {ALICE}\r\nPASS guess-{i}\r\n".encode())
        await eventually(lambda: auth.throttled("127.0.0.1"))
        await clients[-1].send(f"USER {ALICE}\r\nPASS {ALICE_PW}\r\n".encode())
        replies = await asyncio.gather(*(c.until(lambda line: not line.startswith(b"+OK")) for c in clients))
        assert replies == [b"-ERR [AUTH] Authentication failed.\r\n"] * len(clients)
        assert len(verified.wrong()) <= 5 and ALICE_PW not in verified.passwords
    finally:
        await close_all(clients)
        await server.stop(1.0)


async def test_parallel_submission_guesses_from_one_address_verify_at_most_the_limit(
    base: SQLiteStore, creds: SQLiteMailboxStore, verified: Verifications
) -> None:
    auth = PasswordAuthenticator(DIRECTORY, creds, AuthSettings(failure_delay=0, max_failures=5))
    settings = SubmissionSettings(listen=["127.0.0.1:0"], allow_plaintext_auth_on_loopback=True)
    intake = SubmissionIntake(DIRECTORY, base, settings, lambda _: None, creds)
    server = SMTPServer(settings, intake, hostname="standby.corp.test", tls_context=None, login=Login(auth, True))
    await server.start()
    clients = list(await asyncio.gather(*(Client.open(server.addresses[0][1]) for _ in range(40))))

    def plain(password: str) -> str:
        return base64.b64encode(f"\0{ALICE}\0{password}".encode()).decode()

    def last_line(line: bytes) -> bool:
        return line[3:4] == b" "

    try:
        for i, client in enumerate(clients[:-1]):
            client.writer.write(f"EHLO phone.test\r\nAUTH PLAIN {plain(f'guess-{i}')}\r\n".encode())
        await eventually(lambda: auth.throttled("127.0.0.1"))
        await clients[-1].send(f"EHLO phone.test\r\nAUTH PLAIN {plain(ALICE_PW)}\r\n".encode())
        for client in clients:
            assert (await client.until(last_line)).startswith(b"250 ")  # EHLO
        replies = await asyncio.gather(*(c.until(last_line) for c in clients))
        assert all(r.startswith(b"535 5.7.8 ") for r in replies), replies
        assert len(verified.wrong()) <= 5 and ALICE_PW not in verified.passwords
    finally:
        await close_all(clients)
        await server.stop(1.0)


# -- the admin API -------------------------------------------------------------------------------


async def test_90_parallel_wrong_admin_logins_get_at_most_max_failures_401s(
    base: SQLiteStore, verified: Verifications
) -> None:
    admins = SQLiteFailoverStore(base)
    await admins.set_admin_hash("ops", hash_password("correct horse battery staple"), actor="test")
    auth = AdminAuthenticator(admins, admins, AdminSettings(max_failures=5), failure_delay=0)
    services = Services(cast(Any, None), admins, auth, dict, lambda: 0, CollectorRegistry())  # no command runs
    async with served(create_app(services)) as url:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=TIMEOUT) as http:
            answers = await asyncio.gather(*(http.get("/api/v1/status", auth=("ops", f"guess-{i}")) for i in range(90)))
            statuses = [a.status_code for a in answers]
            assert statuses.count(401) <= 5 and statuses.count(401) + statuses.count(429) == 90
            right = await http.get("/api/v1/status", auth=("ops", "correct horse battery staple"))
            assert right.status_code == 429
    assert len(verified.passwords) <= 5
