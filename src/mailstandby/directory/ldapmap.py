"""LDAP entries to `User`s: the attribute mapping, its presets, and the pure conversion.

An entry arrives as its DN and raw attribute values (bytes, as on the wire);
`entry_to_user` decodes, checks and maps them, and every problem it raises
names the DN. Attribute names are matched case-insensitively.

Active Directory: `proxyAddresses` holds typed addresses; `SMTP:` (upper
case) marks the primary address, `smtp:` the others, and other types (`X500:`,
`SIP:`, ...) are ignored. The primary address is the `SMTP:` value, else
`mail`, else `userPrincipalName`. Bit 0x2 of `userAccountControl` means the
account is disabled.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace

from mailstandby.directory.base import Device, Key, User
from mailstandby.directory.records import check_address, check_phone, check_url, pgp_key, smime_key
from mailstandby.directory.static import DirectoryError

ACCOUNTDISABLE = 0x2  # userAccountControl ADS_UF_ACCOUNTDISABLE
LDAP_MOBILE_DEVICE = "ldap-mobile"  # the id of the device made from the `mobile` attribute


@dataclass(frozen=True, slots=True)
class LDAPUser:
    dn: str
    user: User


@dataclass(frozen=True, slots=True)
class LDAPResult:
    users: list[LDAPUser]
    skipped: list[str]  # DNs of entries without any mail address


@dataclass(frozen=True, slots=True)
class AttributeMap:
    """Which attribute feeds which field; an empty name means the field is not read.
    List fields take several attributes separated by commas."""

    filter: str
    address: str
    aliases: str
    display_name: str
    mobile: str
    certificate: str
    pgp_key: str = ""
    alternates: str = ""
    notify_urls: str = ""
    fallback_address: str = ""
    account_control: str = ""

    def attributes(self) -> list[str]:
        """Every attribute to request from the server."""
        names: list[str] = []
        for f in fields(self):
            if f.name != "filter":
                names += [a for a in _names(getattr(self, f.name)) if a not in names]
        return names


PRESETS: dict[str, AttributeMap] = {
    "openldap": AttributeMap(
        filter="(&(objectClass=inetOrgPerson)(mail=*))",
        address="mail",
        aliases="mailAlternateAddress",
        display_name="displayName",
        mobile="mobile",
        certificate="userCertificate;binary",
    ),
    "active-directory": AttributeMap(
        filter="(&(objectClass=user)(!(objectClass=computer))(|(mail=*)(proxyAddresses=*)))",
        address="mail",
        aliases="proxyAddresses",
        display_name="displayName",
        mobile="mobile",
        certificate="userCertificate",
        fallback_address="userPrincipalName",
        account_control="userAccountControl",
    ),
}

FIELDS = frozenset(f.name for f in fields(AttributeMap))


def mapping_for(preset: str, overrides: Mapping[str, str], filter_: str = "") -> AttributeMap:
    """The preset with `overrides` applied; an unknown field name is an error naming it."""
    unknown = sorted(set(overrides) - FIELDS)
    if unknown:
        raise DirectoryError(f"directory.ldap.attributes: unknown field(s) {', '.join(unknown)}")
    mapping = replace(PRESETS[preset], **dict(overrides))
    return replace(mapping, filter=filter_) if filter_ else mapping


def _names(value: str) -> list[str]:
    return [n.strip() for n in value.split(",") if n.strip()]


_TYPED = re.compile(r"^([A-Za-z0-9]+):(.*)$", re.S)


def entry_to_user(dn: str, raw: Mapping[str, Sequence[bytes]], mapping: AttributeMap) -> User | None:
    """The user this entry describes, None when it has no mail address at all."""
    attrs = {k.lower(): list(v) for k, v in raw.items()}
    try:
        return _convert(attrs, mapping)
    except DirectoryError as e:
        raise DirectoryError(f"entry {dn}: {e}") from None


def _values(attrs: dict[str, list[bytes]], names: str) -> list[bytes]:
    out: list[bytes] = []
    for name in _names(names):
        out += attrs.get(name.lower(), [])
    return out


def _text(attrs: dict[str, list[bytes]], names: str) -> list[str]:
    out = []
    for value in _values(attrs, names):
        try:
            out.append(value.decode("utf-8").strip())
        except UnicodeDecodeError:
            raise DirectoryError(f"{names}: value is not UTF-8 text") from None
    return [v for v in out if v]


def _addresses(values: list[str], what: str) -> tuple[str | None, list[str]]:
    """(the value typed `SMTP:`, every SMTP address) from plain or AD-typed values."""
    primary, found = None, []
    for value in values:
        m = _TYPED.match(value)
        if m and "@" not in m.group(1):
            if m.group(1).lower() != "smtp":
                continue  # X500:, SIP:, X400:, ... are not mail addresses
            address = check_address(m.group(2), what)
            if m.group(1) == "SMTP":
                primary = address
        else:
            address = check_address(value, what)
        found.append(address)
    return primary, found


def _convert(attrs: dict[str, list[bytes]], m: AttributeMap) -> User | None:
    typed_primary, alias_values = _addresses(_text(attrs, m.aliases), m.aliases)
    mail_primary, mails = _addresses(_text(attrs, m.address), m.address)
    address = typed_primary or mail_primary or (mails[0] if mails else None)
    if address is None and m.fallback_address:
        _, fallback = _addresses(_text(attrs, m.fallback_address)[:1], m.fallback_address)
        address = fallback[0] if fallback else None
    if address is None:
        return None
    aliases: list[str] = []
    for a in (*mails, *alias_values):
        if a.lower() != address.lower() and a.lower() not in (x.lower() for x in aliases):
            aliases.append(a)
    names = _text(attrs, m.display_name)
    return User(
        address=address,
        aliases=tuple(aliases),
        enabled=not _disabled(attrs, m),
        display_name=names[0] if names else "",
        alternates=tuple(_addresses(_text(attrs, m.alternates), m.alternates)[1]),
        notify_urls=tuple(check_url(u) for u in _text(attrs, m.notify_urls)),
        devices=_devices(attrs, m),
        keys=_keys(attrs, m),
    )


def _disabled(attrs: dict[str, list[bytes]], m: AttributeMap) -> bool:
    if not m.account_control:
        return False
    values = _text(attrs, m.account_control)
    try:
        return bool(values) and bool(int(values[0]) & ACCOUNTDISABLE)
    except ValueError:
        raise DirectoryError(f"{m.account_control}: {values[0]!r} is not a number") from None


def _devices(attrs: dict[str, list[bytes]], m: AttributeMap) -> tuple[Device, ...]:
    phones = _text(attrs, m.mobile)
    return (Device(LDAP_MOBILE_DEVICE, phone=check_phone(phones[0])),) if phones else ()


def _keys(attrs: dict[str, list[bytes]], m: AttributeMap) -> tuple[Key, ...]:
    keys: list[Key] = []
    for der in _values(attrs, m.certificate):
        keys.append(smime_key(der if not der.startswith(b"-----BEGIN") else der.decode("ascii", "replace")))
    for armored in _text(attrs, m.pgp_key):
        keys.append(pgp_key(armored))
    return tuple(dict.fromkeys(keys))
