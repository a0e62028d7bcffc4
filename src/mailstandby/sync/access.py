"""The sync's way into the primary's mailboxes: TLS context, master password, master login.

Shared by the failback sync (`sync.engine`) and the queue's look-up of deliveries in doubt
(`sync.lookup`); each turns `AccessError` into its own error. The password file is read at
each use, so a changed password needs no restart.
"""

from __future__ import annotations

import ssl

from mailstandby.config import SyncSettings
from mailstandby.sync.imapclient import IMAPClient


class AccessError(Exception):
    """The settings do not let us in: no password file, an unreadable one, a bad CA file."""


def tls_context(settings: SyncSettings) -> ssl.SSLContext | None:
    """The context for `sync.imap_tls` (None without TLS): TLS 1.2 or later, verified unless told not to."""
    if settings.imap_tls == "none":
        return None
    try:
        ctx = ssl.create_default_context(cafile=settings.tls_ca_file)
    except (OSError, ssl.SSLError) as e:
        raise AccessError(f"sync.tls_ca_file: cannot load {settings.tls_ca_file}: {e}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not settings.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def read_password(settings: SyncSettings) -> str:
    path = settings.password_file
    if path is None or not settings.master_user:
        raise AccessError("sync.master_user and sync.password_file must be set to log in to the primary's IMAP")
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as e:
        raise AccessError(f"sync.password_file: cannot read {path}: {e.strerror}") from None


async def master_login(
    settings: SyncSettings, ssl_context: ssl.SSLContext | None, user: str, password: str
) -> IMAPClient:
    """A session on the primary as `user`, through the master user (`sync.login`); the client's
    errors pass through, the connection closed."""
    s = settings
    client = await IMAPClient.connect(
        s.imap_host, s.imap_port, tls=s.imap_tls, ssl_context=ssl_context, timeout=s.timeout
    )
    try:
        if s.login == "sasl-authzid":
            await client.authenticate_plain(user, s.master_user, password)
        else:
            await client.login(s.login_format.format(user=user, master=s.master_user), password)
    except BaseException:
        client.abort()
        raise
    return client
