"""Is this delivery already in the primary mailbox? The queue's look-up before sending again.

A delivery whose outcome is unknown (the standby was killed while sending it, or
the primary never answered the end of data: RFC 5321 §6.1, RELIABILITY D11/D12)
may already be in the user's mailbox. Our queue id is in the Received header we
add (`by <host> (mailstandby) with ESMTP id <queue id>`), so one IMAP
`UID SEARCH HEADER Received <queue id>` in the user's INBOX, through the sync's
master login to the primary, tells. Found: the delivery is recorded as done and
nothing is sent; not found: it is sent again. With LMTP to the primary a message
is in the mailbox as soon as it is accepted, so this makes the relay exactly
once; with SMTP the primary's own queue may still hold it, and a look-up in that
instant finds nothing (the window that remains, docs/mail-path.md).

Only the INBOX is searched: mail the primary files elsewhere (a Sieve rule, a
spam folder) is not found and is sent again, as it would be without a look-up.
"""

from __future__ import annotations

import logging
import ssl

from mailstandby.config import SyncSettings
from mailstandby.sync.access import AccessError, master_login, read_password, tls_context
from mailstandby.sync.imapclient import IMAPClient, IMAPClientError

log = logging.getLogger(__name__)


class LookupFailed(Exception):
    """The look-up could not tell (the primary's IMAP is down, the login was refused...)."""


class PrimaryMailboxLookup:
    """`delivered(user, queue_id)`: whether the primary's INBOX of `user` holds our message."""

    def __init__(self, settings: SyncSettings, *, password: str | None = None) -> None:
        self.settings = settings
        self._password = password  # tests; otherwise `settings.password_file`, read at each look-up
        self._tls: ssl.SSLContext | None = None

    @staticmethod
    def configured(settings: SyncSettings) -> bool:
        """The sync's IMAP access is set up: a host, a master user and its password file."""
        return bool(settings.imap_host and settings.master_user and settings.password_file)

    async def delivered(self, user: str, queue_id: str) -> bool:
        """True when found, False when certainly not there; LookupFailed when it cannot tell."""
        try:
            client = await self._login(user, self._read_password())
        except (IMAPClientError, OSError) as e:
            raise LookupFailed(f"cannot log in to the primary's IMAP as {user}: {e}") from None
        try:
            await client.examine("INBOX")
            return bool(await client.uid_search_header("Received", queue_id))
        except IMAPClientError as e:
            raise LookupFailed(f"search in {user}'s INBOX failed: {e}") from None
        finally:
            await client.logout()

    async def _login(self, user: str, password: str) -> IMAPClient:
        try:
            if self._tls is None:
                self._tls = tls_context(self.settings)
        except AccessError as e:
            raise LookupFailed(str(e)) from None
        return await master_login(self.settings, self._tls, user, password)

    def _read_password(self) -> str:
        if self._password is not None:
            return self._password
        try:
            return read_password(self.settings)
        except AccessError as e:
            raise LookupFailed(str(e)) from None
