"""Read users from the primary's LDAP / Active Directory with ldap3 (synchronous: run it in a thread).

One connection per import: connect (`ldap://`, `ldaps://`, or `ldap://` plus
StartTLS), bind with the configured DN and the password from a file or the
environment, then one subtree search in simple paged results (RFC 2696) so a
server's size limit never truncates the list silently. Every failure is a
`DirectoryError` saying what failed (connect, TLS, bind, search) and where;
the password never appears in it.
"""

from __future__ import annotations

import math
import os
import ssl
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import LDAPException, LDAPInvalidCredentialsResult, LDAPSocketOpenError

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


def _server(settings: LDAPSettings) -> ldap3.Server:
    url = urlsplit(settings.url)
    if url.scheme not in ("ldap", "ldaps") or not url.hostname:
        raise DirectoryError(f"directory.ldap.url {settings.url!r}: must be ldap://HOST[:PORT] or ldaps://HOST[:PORT]")
    tls = None
    if url.scheme == "ldaps" or settings.start_tls:
        tls = ldap3.Tls(
            validate=ssl.CERT_REQUIRED if settings.tls_verify else ssl.CERT_NONE,
            ca_certs_file=str(settings.ca_file) if settings.ca_file else None,
            version=ssl.PROTOCOL_TLS_CLIENT,
        )
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
        if not conn.closed:
            conn.unbind()
        if conn.socket is not None:  # ldap3 leaves a socket that failed to connect open
            conn.socket.close()


def _reason(e: LDAPException) -> str:
    text = str(e) or type(e).__name__
    return text.replace(" - ", ": ")[:300]


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
