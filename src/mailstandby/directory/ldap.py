"""Read users from the primary's LDAP / Active Directory with ldap3 (synchronous: run it in a thread).

One connection per import: connect (`ldap://`, `ldaps://`, or `ldap://` plus
StartTLS), bind with the configured DN and the password from a file or the
environment, then one subtree search in simple paged results (RFC 2696) so a
server's size limit never truncates the list silently. Every failure is a
`DirectoryError` saying what failed (connect, TLS, bind, search) and where;
the password never appears in it.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import ssl
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import (
    LDAPException,
    LDAPInvalidCredentialsResult,
    LDAPOperationResult,
    LDAPSocketOpenError,
)

from mailstandby.config import LDAPSettings
from mailstandby.directory.ldapmap import AttributeMap, LDAPResult, LDAPUser, entry_to_user, mapping_for
from mailstandby.directory.static import DirectoryError


def bind_password(settings: LDAPSettings) -> str | None:
    """The bind password from `password_file` or `password_env`; None for an anonymous bind."""
    if settings.password_file is not None:
        try:
            return settings.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            raise DirectoryError(f"directory.ldap.password_file {settings.password_file}: {e.strerror}") from None
    if settings.password_env:
        value = os.environ.get(settings.password_env)
        if value is None:
            raise DirectoryError(f"directory.ldap.password_env: ${settings.password_env} is not set")
        return value
    if settings.bind_dn:
        raise DirectoryError("directory.ldap: bind_dn needs password_file or password_env")
    return None


class _VerifiedTLS(ldap3.Tls):
    """TLS for ldap3 through one standard-library context that checks the certificate *and* the host name
    during the handshake: ldap3's own check is skipped for ldaps:// and relies on the deprecated
    `ssl.match_hostname` for StartTLS."""

    def __init__(self, context: ssl.SSLContext, hostname: str) -> None:
        super().__init__(validate=context.verify_mode)
        self._context = context
        self._hostname = hostname

    def wrap_socket(self, connection: ldap3.Connection, do_handshake: bool = False) -> None:
        connection.socket = self._context.wrap_socket(
            connection.socket,
            server_side=False,
            do_handshake_on_connect=do_handshake,
            server_hostname=self._hostname,
        )


def _tls(settings: LDAPSettings, hostname: str) -> _VerifiedTLS:
    try:
        context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    except (OSError, ssl.SSLError) as e:
        raise DirectoryError(f"directory.ldap.ca_file {settings.ca_file}: cannot load: {e}") from None
    if not settings.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return _VerifiedTLS(context, hostname)


def _server(settings: LDAPSettings) -> ldap3.Server:
    url = urlsplit(settings.url)
    if url.scheme not in ("ldap", "ldaps") or not url.hostname:
        raise DirectoryError(f"directory.ldap.url {settings.url!r}: must be ldap://HOST[:PORT] or ldaps://HOST[:PORT]")
    tls = _tls(settings, url.hostname) if url.scheme == "ldaps" or settings.start_tls else None
    return ldap3.Server(
        url.hostname,
        port=url.port or (636 if url.scheme == "ldaps" else 389),
        use_ssl=url.scheme == "ldaps",
        tls=tls,
        get_info=ldap3.NONE,
        connect_timeout=settings.timeout,
    )


def fetch(settings: LDAPSettings) -> LDAPResult:
    """Every user under `base_dn` matching the filter, mapped; raises DirectoryError naming the step or DN."""
    mapping = mapping_for(settings.preset, settings.attributes, settings.filter)
    password = bind_password(settings)
    conn = ldap3.Connection(
        _server(settings),
        user=settings.bind_dn or None,
        password=password,
        auto_bind=ldap3.AUTO_BIND_NONE,
        read_only=True,
        receive_timeout=math.ceil(settings.timeout),  # ldap3 packs it as an integer (SO_RCVTIMEO)
        raise_exceptions=True,
        auto_referrals=False,
    )
    where = settings.url
    try:
        step = "connect to"
        conn.open()
        if settings.start_tls and not settings.url.startswith("ldaps:"):
            step = "StartTLS with"
            conn.start_tls()
        step = "bind to"
        conn.bind()
        step = "search"
        return _search(conn, settings, mapping)
    except LDAPInvalidCredentialsResult:
        raise DirectoryError(f"LDAP {where}: bind as {settings.bind_dn!r} refused: invalid credentials") from None
    except LDAPSocketOpenError as e:
        raise DirectoryError(f"LDAP {where}: cannot {step} the server: {_reason(e)}") from None
    except LDAPException as e:
        raise DirectoryError(
            f"LDAP {where}: cannot {step} {settings.base_dn if step == 'search' else 'the server'}: {_reason(e)}"
        ) from None
    except (OSError, ssl.SSLError) as e:
        raise DirectoryError(f"LDAP {where}: cannot {step} the server: {e}") from None
    finally:
        _close(conn)


def _close(conn: ldap3.Connection) -> None:
    with contextlib.suppress(LDAPException, OSError):
        if not conn.closed:
            conn.unbind()
    if conn.socket is not None:  # ldap3 leaves a socket that failed to connect (or to start TLS) open
        conn.socket.close()


def _reason(e: LDAPException) -> str:
    """ldap3's exception text without its tuple wrapping (e.g. `("('socket ssl wrapping error: ...',)",)`)."""
    if isinstance(e, LDAPOperationResult):
        text = f"{e.description}: {e.message}" if e.message else str(e.description)
    else:
        text = str(e).strip("()'\", ") or type(e).__name__
    return re.sub(r"\s*\(_ssl\.c:\d+\)?", "", text)[:300]


def _search(conn: ldap3.Connection, settings: LDAPSettings, mapping: AttributeMap) -> LDAPResult:
    users, skipped = [], []
    entries = conn.extend.standard.paged_search(
        settings.base_dn,
        mapping.filter,
        search_scope=ldap3.SUBTREE,
        attributes=mapping.attributes(),
        paged_size=settings.page_size,
        generator=True,
    )
    for entry in entries:
        if entry.get("type") != "searchResEntry":
            continue  # referrals: not followed (the import reads one directory)
        user = entry_to_user(entry["dn"], entry["raw_attributes"], mapping)
        if user is None:
            skipped.append(entry["dn"])
        else:
            users.append(LDAPUser(entry["dn"], user))
    return LDAPResult(users, skipped)
