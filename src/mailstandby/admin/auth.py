"""Administrator authentication for the HTTP API: HTTP Basic over TLS, argon2id hashes.

Every failed attempt is audited and delayed; a client address with too many
failures in the window is refused (429) without a password check. A user name
that does not exist costs a real argon2 verification, like a wrong password.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections import deque
from typing import Protocol

from mailstandby.auth import MAX_PASSWORD, VerifiedCache, hash_password, verify_password
from mailstandby.config import AdminSettings
from mailstandby.core.events import Event

log = logging.getLogger(__name__)


class AdminStore(Protocol):
    async def admin_hash(self, name: str) -> str | None: ...

    async def set_admin_hash(self, name: str, hashed: str, *, actor: str) -> None: ...


class AuditTrail(Protocol):
    async def audit(self, actor: str, action: str, outcome: str, *, peer: str = "", detail: str = "") -> None: ...


class Throttled(Exception):
    """Too many failed logins from this client address."""


_DUMMY: list[str] = []


class AdminAuthenticator:
    def __init__(
        self, admins: AdminStore, audit: AuditTrail, settings: AdminSettings, *, failure_delay: float = 1.0
    ) -> None:
        self.admins = admins
        self.audit = audit
        self.settings = settings
        self.failure_delay = failure_delay
        self._failures: dict[str, deque[float]] = {}
        self._verified = VerifiedCache(ttl=300.0, size=100)

    def throttled(self, peer: str) -> bool:
        window = self._failures.get(peer)
        if not window:
            return False
        cutoff = time.monotonic() - self.settings.failure_window
        while window and window[0] < cutoff:
            window.popleft()
        return len(window) >= self.settings.max_failures

    async def check(self, authorization: str | None, *, peer: str) -> str | None:
        """The administrator named by a Basic `Authorization` header, or None. Raises Throttled."""
        if self.throttled(peer):
            await self._audit("?", "throttled", peer)
            raise Throttled
        name, password = _basic(authorization)
        if name is None:
            return None  # no credentials offered: a challenge, not a failed login
        stored = await self.admins.admin_hash(name) if 0 < len(password) <= MAX_PASSWORD else None
        ok = stored is not None and self._verified.get(name, password) == stored
        if not ok and stored is not None:
            ok = await asyncio.to_thread(verify_password, stored, password)
        elif not ok:
            if not _DUMMY:
                _DUMMY.append(hash_password("mailstandby: no such administrator"))
            await asyncio.to_thread(verify_password, _DUMMY[0], password)
        if ok:
            self._verified.put(name, password, stored)  # type: ignore[arg-type]
            return name
        self._failures.setdefault(peer, deque()).append(time.monotonic())
        log.warning("%s: admin=%r peer=%s", Event.ADMIN_LOGIN_FAILED, name[:64], peer)
        await self._audit(name, "failed", peer)
        await asyncio.sleep(self.failure_delay)
        return None

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
