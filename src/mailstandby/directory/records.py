"""Value checks shared by the importers, and the JSON form of a `User` kept in the store.

Every check raises `DirectoryError` with a message the caller prefixes with
the row or entry (DN) it came from; nothing here does I/O.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import textwrap
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from mailstandby.core.model import Address
from mailstandby.directory.base import Device, Forwarding, Key, NoticeKind, Platform, Preferences, User
from mailstandby.directory.static import DirectoryError

_ADDRESS = re.compile(r"^[^\s@<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.?$")
_PHONE = re.compile(r"^\+?[0-9]{3,20}$")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")
_PGP_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def check_address(text: str, what: str = "address") -> str:
    """`text` stripped, or DirectoryError when it is not `local@domain` without spaces."""
    value = text.strip()
    if not _ADDRESS.match(value):
        raise DirectoryError(f"{what} {text!r} is not an address (local@domain)")
    return value


def address_key(text: str) -> str:
    return Address.parse(text).key


def check_phone(text: str) -> str:
    """An E.164-style number: digits with an optional leading +; spaces, dots, dashes and parentheses dropped."""
    value = re.sub(r"[\s.()\-/]", "", text)
    if not _PHONE.match(value):
        raise DirectoryError(f"phone number {text!r} is not a number")
    return value


def check_url(text: str) -> str:
    value = text.strip()
    if not _URL.match(value):
        raise DirectoryError(f"notification URL {text!r} is not a URL (scheme://...)")
    return value


def smime_key(data: str | bytes) -> Key:
    """An S/MIME key from a PEM certificate, or DER bytes, or base64 DER text; checked by parsing it."""
    if isinstance(data, str) and "-----BEGIN CERTIFICATE-----" not in data:
        try:
            data = base64.b64decode("".join(data.split()), validate=True)
        except ValueError:
            raise DirectoryError("certificate is neither PEM nor base64 DER") from None
    try:
        if isinstance(data, bytes):
            cert = x509.load_der_x509_certificate(data)
        else:
            match = _PEM_CERT.search(data)
            cert = x509.load_pem_x509_certificate((match.group(0) if match else data).encode())
    except ValueError as e:
        raise DirectoryError(f"certificate does not parse: {e}") from None
    der = cert.public_bytes(Encoding.DER)
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return Key("smime", f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")


def pgp_key(text: str) -> Key:
    value = text.strip().replace("\r\n", "\n")
    if not value.startswith(_PGP_BEGIN) or "-----END PGP PUBLIC KEY BLOCK-----" not in value:
        raise DirectoryError("PGP key is not an ASCII-armored public key block")
    return Key("pgp", value + "\n")


def platform(text: str) -> Platform:
    """Gateway platform names to ours: iOS/iPhone/iPad, Android, BlackBerry, Windows (Phone), pager; else other."""
    t = text.strip().lower()
    for prefix, value in (
        ("ios", Platform.IOS),
        ("iphone", Platform.IOS),
        ("ipad", Platform.IOS),
        ("android", Platform.ANDROID),
        ("blackberry", Platform.BLACKBERRY),
        ("windows", Platform.WINDOWS),
        ("pager", Platform.PAGER),
    ):
        if t.startswith(prefix):
            return value
    return Platform.OTHER


# -- the stored form ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stored:
    """An imported user as kept in the store: `source` is `ldap` (a whole user) or `config`
    (device-gateway data for a user defined in the config file)."""

    source: str
    user: User

    @property
    def key(self) -> str:
        return address_key(self.user.address)


def to_json(user: User) -> str:
    p = user.preferences
    return json.dumps(
        {
            "address": user.address,
            "aliases": list(user.aliases),
            "enabled": user.enabled,
            "display_name": user.display_name,
            "alternates": list(user.alternates),
            "notify_urls": list(user.notify_urls),
            "devices": [[d.id, d.platform.value, d.phone, d.sms_gateway, d.push_url] for d in user.devices],
            "keys": [[k.kind, k.data] for k in user.keys],
            "preferences": {
                "notify": sorted(k.value for k in p.notify),
                "forward": p.forward.value,
                "summary_length": p.summary_length,
                "quiet_hours": list(p.quiet_hours) if p.quiet_hours else None,
            },
        },
        sort_keys=True,
    )


def from_json(text: str) -> User:
    d = json.loads(text)
    p = d["preferences"]
    return User(
        address=d["address"],
        aliases=tuple(d["aliases"]),
        enabled=d["enabled"],
        display_name=d["display_name"],
        alternates=tuple(d["alternates"]),
        notify_urls=tuple(d["notify_urls"]),
        devices=tuple(Device(i, _PLATFORMS[pl], ph, sms, push) for i, pl, ph, sms, push in d["devices"]),
        keys=tuple(Key(kind, data) for kind, data in d["keys"]),
        preferences=_preferences(
            tuple(p["notify"]), p["forward"], p["summary_length"], tuple(p["quiet_hours"] or ()) or None
        ),
    )


_PLATFORMS = {p.value: p for p in Platform}


@functools.lru_cache(maxsize=256)
def _preferences(
    notify: tuple[str, ...], forward: str, summary_length: int, quiet_hours: tuple[int, int] | None
) -> Preferences:
    """Most users share a handful of preference sets: build each once (reading 20,000 users stays fast)."""
    return Preferences(frozenset(NoticeKind(k) for k in notify), Forwarding(forward), summary_length, quiet_hours)
