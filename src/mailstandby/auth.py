"""Who may read a standby mailbox: the contract the IMAP, POP3 and submission servers use,
and its implementation over argon2 password hashes.

An `Authenticator` checks a user name and password and answers with the
canonical user (the directory's primary address) or None. It never says why
a login failed, applies the failure delay itself (Dovecot auth_failure_delay)
and throttles (`throttle.LoginGate`: per client network and per account, the
attempt counted before the password is checked); callers only count the
attempt. Passwords are never logged, and a user name that does not exist costs
as much time as a wrong password (a dummy hash is verified), so logins do not
reveal who exists. argon2 never runs on the event loop: `HashingPool` runs it
in worker threads, a bounded number at once.

Every new password passes `password_problem` (length, a small deny-list, not
the account's own name or address): `hash_password` refuses any other.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mailstandby.config import AuthSettings
from mailstandby.core.model import Address
from mailstandby.directory.base import Directory
from mailstandby.limits import peer_ip
from mailstandby.throttle import LoginGate

log = logging.getLogger(__name__)

HASHER = PasswordHasher()  # argon2id with the library's current defaults (RFC 9106)
MAX_PASSWORD = 1024
MIN_PASSWORD = 12  # the default of `auth.min_password_length`
MAX_VERIFICATIONS = 4  # the default of `auth.max_verifications`

# Passwords (and, with trailing digits and symbols removed, stems) that lead every leaked-password
# list; a guesser tries them first. Compared case-insensitively.
# fmt: off
COMMON_PASSWORDS = frozenset((
    "password", "passw0rd", "p@ssw0rd", "p@ssword", "passwort", "motdepasse", "contraseña", "wachtwoord",
    "salasana", "qwerty", "qwertyuiop", "qwertyuiopasdfghjkl", "qwertz", "azerty", "asdfghjkl", "zxcvbnm", "qazwsx",
    "qazwsxedc", "1qaz2wsx", "1qaz2wsx3edc", "zaq12wsx", "zaq1zaq1", "1q2w3e4r", "1q2w3e4r5t", "1q2w3e4r5t6y",
    "q1w2e3r4", "q1w2e3r4t5", "abc", "abcd", "abcdef", "abcdefg", "abcdefgh", "abcdefghijkl", "letmein", "welcome",
    "iloveyou", "trustno", "monkey", "dragon", "sunshine", "princess", "football", "baseball", "superman", "batman",
    "starwars", "master", "shadow", "michael", "jennifer", "admin", "administrator", "root", "changeme", "default",
    "secret", "login", "guest", "test", "tester", "mailstandby", "standby", "email", "mailbox", "outlook",
    "exchange", "office", "summer", "winter", "spring", "autumn",
))
# fmt: on
_SEQUENCES = ("0123456789012345678901", "abcdefghijklmnopqrstuvwxyz", "qwertyuiopasdfghjklzxcvbnm")


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


# -- new passwords ----------------------------------------------------------------------------


class PasswordRefused(ValueError):
    """A new password fails the policy; the message says why, in words for the person choosing it."""


def password_problem(password: str, *, account: str = "", min_length: int = MIN_PASSWORD) -> str | None:
    """Why `password` may not be set for `account` (a user address or administrator name), or None."""
    if len(password) < min_length:
        return f"The password is too short: use at least {min_length} characters."
    if len(password) > MAX_PASSWORD:
        return f"The password is too long: use at most {MAX_PASSWORD} characters."
    folded = password.casefold()
    stem = folded.rstrip("0123456789!?.,;:-_+*#$%&@ ")
    if folded in COMMON_PASSWORDS or stem in COMMON_PASSWORDS or any(folded in s for s in _SEQUENCES):
        return "The password is one of the most common ones: choose another."
    if len(set(folded)) < 4:
        return "The password has too few different characters: choose another."
    name = account.casefold()
    if name and ({folded, stem} & {name, name.partition("@")[0]}):
        return "The password must not be the user name."
    return None


def hash_password(password: str, *, account: str = "", min_length: int = MIN_PASSWORD) -> str:
    """An argon2id hash of a new password; raises PasswordRefused when the policy refuses it.
    Blocking (tens of milliseconds): from the event loop, check `password_problem` and then use
    `HashingPool.make_hash`."""
    problem = password_problem(password, account=account, min_length=min_length)
    if problem is not None:
        raise PasswordRefused(problem)
    return HASHER.hash(password)


def verify_password(hashed: str, password: str) -> bool:
    try:
        return HASHER.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


_dummy: list[str] = []


class HashingPool:
    """argon2 in worker threads, at most `limit` runs at once: each takes a core and 64 MiB (RFC 9106
    defaults), so a burst of logins queues here instead of exhausting memory and stalling the loop.
    A throttled attempt never gets here (`LoginGate`). `min_length` is the policy's minimum for the
    new passwords hashed through it (`auth.min_password_length`)."""

    def __init__(self, limit: int = MAX_VERIFICATIONS, *, min_length: int = MIN_PASSWORD) -> None:
        self.limit = limit
        self.min_length = min_length
        self._slots = asyncio.Semaphore(limit)

    async def verify(self, hashed: str, password: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(verify_password, hashed, password)

    async def make_hash(self, password: str) -> str:
        """A hash of a password that was just verified, or that passed `password_problem` already."""
        async with self._slots:
            return await asyncio.to_thread(HASHER.hash, password)

    async def dummy_hash(self) -> str:
        """A real hash to verify against when the user does not exist (equal timing)."""
        if not _dummy:
            hashed = await self.make_hash("mailstandby: no such user")
            if not _dummy:
                _dummy.append(hashed)
        return _dummy[0]


# -- logins -----------------------------------------------------------------------------------


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


def account_key(username: str) -> str:
    """What a login names when it is not a known user: counted all the same (equal behaviour)."""
    return username.strip().casefold()[:320]


class PasswordAuthenticator:
    """argon2id hashes from a CredentialStore, users and aliases from the Directory."""

    def __init__(
        self,
        directory: Directory,
        credentials: CredentialStore,
        settings: AuthSettings,
        *,
        hashing: HashingPool | None = None,
    ) -> None:
        self.directory = directory
        self.credentials = credentials
        self.settings = settings
        self.hashing = hashing or HashingPool(settings.max_verifications, min_length=settings.min_password_length)
        self.gate = LoginGate(settings.max_failures, settings.max_account_failures, settings.failure_window)
        self._verified = VerifiedCache()

    def throttled(self, peer: str) -> bool:
        return self.gate.network_full(peer)

    async def authenticate(self, username: str, password: str, *, peer: str, protocol: str) -> str | None:
        user = self._canonical(username)
        reservation = self.gate.reserve(peer, user or account_key(username))  # before any await
        if reservation is not None and 0 < len(password) <= MAX_PASSWORD and await self._verify(user, password):
            self.gate.succeeded(reservation)
            log.info("login ok: user=%s peer=%s protocol=%s", user, peer, protocol)
            await self._audit(user or username, "ok", peer, protocol)
            return user
        log.warning("login failed: user=%r peer=%s protocol=%s", username[:256], peer, protocol)
        await self._audit(username, "throttled" if reservation is None else "failed", peer, protocol)
        await asyncio.sleep(self.settings.failure_delay)
        return None

    async def _verify(self, user: str | None, password: str) -> bool:
        stored = await self.credentials.password_hash(user) if user else None
        if user is None or stored is None:
            await self.hashing.verify(await self.hashing.dummy_hash(), password)  # same cost as a wrong password
            return False
        if self._verified.get(user, password) == stored:
            return True
        if not await self.hashing.verify(stored, password):
            return False
        self._verified.put(user, password, stored)
        if HASHER.check_needs_rehash(stored):
            await self.credentials.set_password_hash(user, await self.hashing.make_hash(password))
        return True

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


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and IPv4-mapped loopback: where plaintext logins may be allowed."""
    ip = peer_ip(host)
    return ip is not None and ip.is_loopback


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
