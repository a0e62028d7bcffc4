"""Who may read a standby mailbox: the contract the IMAP, POP3 and submission servers use.

An `Authenticator` checks a user name and password and answers with the
canonical user (the directory's primary address) or None. It never says why
a login failed, applies the failure delay itself, and throttles by client
address; callers only count the attempt. Passwords are never logged.
"""

from __future__ import annotations

from typing import Protocol


class Authenticator(Protocol):
    async def authenticate(self, username: str, password: str, *, peer: str, protocol: str) -> str | None:
        """The canonical user for these credentials, or None (after the configured delay)."""
        ...
