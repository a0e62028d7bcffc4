"""Administrator authentication for the HTTP API: HTTP Basic over TLS, argon2id hashes.

Every attempt is counted before its password is checked (`throttle.LoginGate`:
per client network and per administrator name) and forgiven when it succeeds;
failures are audited and delayed. A client or name out of attempts is refused
(429) without a password check. A name that does not exist costs a real argon2
verification, like a wrong password; argon2 runs in the shared `HashingPool`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import Protocol

from mailstandby.auth import MAX_PASSWORD, HashingPool, VerifiedCache
from mailstandby.config import AdminSettings
from mailstandby.core.events import Event
from mailstandby.throttle import LoginGate

log = logging.getLogger(__name__)


class AdminStore(Protocol):
    async def admin_hash(self, name: str) -> str | None: ...

    async def set_admin_hash(self, name: str, hashed: str, *, actor: str) -> None: ...


class AuditTrail(Protocol):
    async def audit(self, actor: str, action: str, outcome: str, *, peer: str = "", detail: str = "") -> None: ...


class Throttled(Exception):
    """Too many failed logins from this client network, or for this administrator."""


class AdminAuthenticator:
    def __init__(
        self,
        admins: AdminStore,
        audit: AuditTrail,
        settings: AdminSettings,
        *,
        failure_delay: float = 1.0,
        hashing: HashingPool | None = None,
    ) -> None:
        self.admins = admins
        self.audit = audit
        self.settings = settings
        self.failure_delay = failure_delay
        self.hashing = hashing or HashingPool()
        self.gate = LoginGate(settings.max_failures, settings.max_account_failures, settings.failure_window)
        self._verified = VerifiedCache(ttl=300.0, size=100)

    def throttled(self, peer: str) -> bool:
        return self.gate.network_full(peer)

    async def check(self, authorization: str | None, *, peer: str) -> str | None:
        """The administrator named by a Basic `Authorization` header, or None. Raises Throttled."""
        name, password = _basic(authorization)
        if name is None:  # no credentials offered: a challenge, not a failed login
            if self.throttled(peer):
                await self._audit("?", "throttled", peer)
                raise Throttled
            return None
        reservation = self.gate.reserve(peer, name)  # before any await
        if reservation is None:
            await self._audit(name or "?", "throttled", peer)
            raise Throttled
        if 0 < len(password) <= MAX_PASSWORD and await self._verify(name, password):
            self.gate.succeeded(reservation)
            return name
        log.warning("%s: admin=%r peer=%s", Event.ADMIN_LOGIN_FAILED, name[:64], peer)
        await self._audit(name, "failed", peer)
        await asyncio.sleep(self.failure_delay)
        return None

    async def _verify(self, name: str, password: str) -> bool:
        stored = await self.admins.admin_hash(name)
        if stored is None:
            await self.hashing.verify(await self.hashing.dummy_hash(), password)  # same cost as a wrong password
            return False
        if self._verified.get(name, password) == stored:
            return True
        if not await self.hashing.verify(stored, password):
            return False
        self._verified.put(name, password, stored)
        return True

    async def _audit(self, who: str, outcome: str, peer: str) -> None:
        try:
            await self.audit.audit(who[:256], "admin.login", outcome, peer=peer)
        except Exception:
            log.exception("could not record an admin login in the audit trail")


def _basic(authorization: str | None) -> tuple[str | None, str]:
    if not authorization:
        return None, ""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic" or len(value) > 4 * MAX_PASSWORD:
        return "", ""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else ("", "")
