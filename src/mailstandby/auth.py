"""Who may read a standby mailbox: the contract the IMAP, POP3 and submission servers use,
and its implementation over argon2 password hashes.

An `Authenticator` checks a user name and password and answers with the
canonical user (the directory's primary address) or None. It never says why
a login failed, applies the failure delay itself (Dovecot auth_failure_delay)
and throttles by client address; callers only count the attempt. Passwords
are never logged, and a user name that does not exist costs as much time as
a wrong password (a dummy hash is verified), so logins do not reveal who exists.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from collections import OrderedDict, deque
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mailstandby.config import AuthSettings
from mailstandby.core.model import Address
from mailstandby.directory.base import Directory

log = logging.getLogger(__name__)

HASHER = PasswordHasher()  # argon2id with the library's current defaults (RFC 9106)
MAX_PASSWORD = 1024


class Authenticator(Protocol):
    async def authenticate(self, username: str, password: str, *, peer: str, protocol: str) -> str | None:
        """The canonical user for these credentials, or None (after the configured delay)."""
        ...


class CredentialStore(Protocol):
    async def password_hash(self, user: str) -> str | None: ...

    async def set_password_hash(self, user: str, hashed: str) -> None: ...

    async def audit(self, actor: str, action: str, outcome: str, *, peer: str = "", detail: str = "") -> None:
        """Record who did what, from where, and how it ended (never a password)."""
        ...


def hash_password(password: str) -> str:
    if not password or len(password) > MAX_PASSWORD:
        raise ValueError(f"a password must have 1 to {MAX_PASSWORD} characters")
    return HASHER.hash(password)


_dummy: list[str] = []


def _dummy_hash() -> str:
    """A real hash to verify against when the user does not exist (equal timing)."""
    if not _dummy:
        _dummy.append(HASHER.hash("mailstandby: no such user"))
    return _dummy[0]


class VerifiedCache:
    """Credentials verified recently, so a phone's every reconnect does not cost an argon2 run
    (Dovecot's auth_cache). Keyed by an HMAC of user and password under a per-process secret;
    each entry remembers the hash it was checked against, so a changed password (e.g. by
    `mailstandby passwd`, in another process) misses at once."""

    def __init__(self, ttl: float = 600.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._secret = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, tuple[float, str]] = OrderedDict()

    def _key(self, user: str | None, password: str) -> bytes:
        return hmac.new(self._secret, f"{user}\0{password}".encode(), hashlib.sha256).digest()

    def get(self, user: str | None, password: str) -> str | None:
        """The hash these credentials were verified against, if that was recent."""
        entry = self._entries.get(self._key(user, password))
        if entry is None or time.monotonic() - entry[0] > self.ttl:
            return None
        return entry[1]

    def put(self, user: str, password: str, stored_hash: str) -> None:
        self._entries[self._key(user, password)] = (time.monotonic(), stored_hash)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


class PasswordAuthenticator:
    """argon2id hashes from a CredentialStore, users and aliases from the Directory."""

    def __init__(self, directory: Directory, credentials: CredentialStore, settings: AuthSettings) -> None:
        self.directory = directory
        self.credentials = credentials
        self.settings = settings
        self._failures: dict[str, deque[float]] = {}
        self._verified = VerifiedCache()

    def throttled(self, peer: str) -> bool:
        window = self._failures.get(peer)
        if not window:
            return False
        cutoff = time.monotonic() - self.settings.failure_window
        while window and window[0] < cutoff:
            window.popleft()
        return len(window) >= self.settings.max_failures

    async def authenticate(self, username: str, password: str, *, peer: str, protocol: str) -> str | None:
        user = self._canonical(username)
        ok = False
        if not self.throttled(peer) and 0 < len(password) <= MAX_PASSWORD:
            stored = await self.credentials.password_hash(user) if user else None
            ok = stored is not None and self._verified.get(user, password) == stored
            if not ok:
                ok = await asyncio.to_thread(verify_password, stored or _dummy_hash(), password) and stored is not None
                if ok:
                    self._verified.put(user, password, stored)  # type: ignore[arg-type]
            if ok and stored is not None and HASHER.check_needs_rehash(stored):
                await self.credentials.set_password_hash(user, hash_password(password))  # type: ignore[arg-type]
        if ok:
            log.info("login ok: user=%s peer=%s protocol=%s", user, peer, protocol)
            await self._audit(user or username, "ok", peer, protocol)
            return user
        throttled = self.throttled(peer)
        self._failures.setdefault(peer, deque()).append(time.monotonic())
        log.warning("login failed: user=%r peer=%s protocol=%s", username[:256], peer, protocol)
        await self._audit(username, "throttled" if throttled else "failed", peer, protocol)
        await asyncio.sleep(self.settings.failure_delay)
        return None

    async def _audit(self, who: str, outcome: str, peer: str, protocol: str) -> None:
        try:
            await self.credentials.audit(who, f"login.{protocol}", outcome, peer=peer)
        except Exception:  # the audit trail must not decide whether a login works
            log.exception("could not record a login in the audit trail")

    def _canonical(self, username: str) -> str | None:
        try:
            found = self.directory.lookup(Address.parse(username))
        except ValueError:
            return None
        return found.address if found is not None else None


def verify_password(hashed: str, password: str) -> bool:
    try:
        return HASHER.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and IPv4-mapped loopback: where plaintext logins may be allowed."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


class SessionSlots:
    """Logged-in sessions per (user, client address): RELIABILITY A8."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._count: dict[tuple[str, str], int] = {}

    def acquire(self, key: tuple[str, str]) -> bool:
        n = self._count.get(key, 0)
        if n >= self.limit:
            return False
        self._count[key] = n + 1
        return True

    def release(self, key: tuple[str, str]) -> None:
        n = self._count.get(key, 0) - 1
        if n > 0:
            self._count[key] = n
        else:
            self._count.pop(key, None)
