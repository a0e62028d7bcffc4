"""Merging the sources into one imported directory, and the diff against the stored one (pure).

Sources: the config file's users (identity only), LDAP (identity and what its
attributes hold) and the device gateway (devices, keys, preferences). Rules:

- Identity (address, aliases, enabled) comes from LDAP; a user also defined
  in the config file keeps the config's identity (applied when the directory
  is combined, see `view.combine`).
- An address may belong to one enabled user. Two LDAP entries, or an LDAP
  entry and a config user, claiming one address is an error naming both.
- Device rows join a user by any of their addresses (primary or alias).
- Per field (`[directory.merge]`): `ldap` or `devices` prefers that source and
  falls back to the other when it has nothing; `union` keeps both.
- A user that disappears from LDAP is disabled, never deleted (its standby
  mail stays); device data for a config user that disappears is removed.
- An import that would disable more than `max_disable_fraction` of the
  enabled LDAP users is refused (an emptied or mis-filtered directory).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from mailstandby.config import DirectoryMergeSettings
from mailstandby.directory.base import Preferences, User
from mailstandby.directory.devices import DeviceRecord
from mailstandby.directory.ldapmap import LDAPUser
from mailstandby.directory.records import Stored, address_key
from mailstandby.directory.static import DirectoryError

COMPARED = (
    "address",
    "aliases",
    "enabled",
    "display_name",
    "alternates",
    "notify_urls",
    "devices",
    "keys",
    "preferences",
)
DisableReason = Literal["gone-from-source", "disabled-in-source"]


@dataclass(frozen=True, slots=True)
class Fresh:
    """What the sources say now, merged; `notes` lists what was left out and why."""

    users: list[Stored]
    notes: list[str] = field(default_factory=list)


def build(
    static: Iterable[User],
    ldap: list[LDAPUser] | None,
    devices: Mapping[str, DeviceRecord],
    merge: DirectoryMergeSettings,
    *,
    unknown_users: Literal["skip", "error"] = "skip",
) -> Fresh:
    static_users = list(static)
    ldap_users = list(ldap or [])
    owners = _owners(static_users, ldap_users)
    joined: dict[str, DeviceRecord] = {}
    notes: list[str] = []
    for key, rec in devices.items():
        owner = owners.get(key)
        if owner is None:
            msg = f"{rec.rows[0]}: user {rec.user} is not in the directory"
            if unknown_users == "error":
                raise DirectoryError(msg)
            notes.append(f"{msg}; its devices are skipped")
            continue
        if owner in joined:  # two addresses of one user: one record
            _absorb(joined[owner], rec)
        else:
            joined[owner] = rec
    out: list[Stored] = []
    ldap_keys = set()
    for entry in ldap_users:
        key = address_key(entry.user.address)
        ldap_keys.add(key)
        out.append(Stored("ldap", merged(entry.user, joined.get(key), merge)))
    for user in static_users:
        key = address_key(user.address)
        if key not in ldap_keys and key in joined:
            out.append(Stored("config", merged(User(user.address, user.aliases), joined[key], merge)))
    return Fresh(out, notes)


def _owners(static_users: list[User], ldap_users: list[LDAPUser]) -> dict[str, str]:
    """address key -> owner's primary key; raises on an address claimed by two enabled users."""
    owners: dict[str, str] = {}
    claimed_by: dict[str, str] = {}
    static_primary = {address_key(u.address) for u in static_users}
    for u in static_users:
        for a in u.addresses:
            owners.setdefault(address_key(a), address_key(u.address))
            claimed_by.setdefault(address_key(a), f"config user {u.address}")
    for entry in sorted(ldap_users, key=lambda e: not e.user.enabled):
        primary = address_key(entry.user.address)
        for a in entry.user.addresses:
            k = address_key(a)
            if k not in owners:
                owners[k], claimed_by[k] = primary, f"entry {entry.dn}"
                continue
            other_user = owners[k] != primary and entry.user.enabled
            same_primary_twice = owners[k] == primary and claimed_by[k] != f"entry {entry.dn}"
            if other_user or (same_primary_twice and primary not in static_primary):
                raise DirectoryError(f"entry {entry.dn}: address {a} also belongs to {claimed_by[k]}")
    return owners


def _absorb(into: DeviceRecord, other: DeviceRecord) -> None:
    for attr in ("rows", "devices", "keys", "alternates", "notify_urls"):
        items = getattr(into, attr)
        items += [x for x in getattr(other, attr) if x not in items]
    for column, (value, where) in other.settings.items():
        old = into.settings.get(column)
        if old is not None and old[0] != value:
            raise DirectoryError(f"{where}: {column} contradicts {old[1]} for {into.user}")
        into.settings[column] = (value, where)


def _pick(prefer: str, ldap: tuple[object, ...], devices: tuple[object, ...]) -> tuple[object, ...]:
    if prefer == "union":
        return tuple(dict.fromkeys((*ldap, *devices)))
    first, second = (ldap, devices) if prefer == "ldap" else (devices, ldap)
    return first or second


def merged(user: User, rec: DeviceRecord | None, m: DirectoryMergeSettings) -> User:
    """`user` (from LDAP or the config) with the gateway's data, field by field as `m` says."""
    if rec is None:
        return user
    first, second = (user.display_name, rec.display_name)
    if m.display_name == "devices":
        first, second = second, first
    return replace(
        user,
        display_name=first or second,
        alternates=_pick(m.alternates, user.alternates, tuple(rec.alternates)),  # type: ignore[arg-type]
        notify_urls=_pick(m.notify_urls, user.notify_urls, tuple(rec.notify_urls)),  # type: ignore[arg-type]
        devices=_pick(m.devices, user.devices, tuple(rec.devices)),  # type: ignore[arg-type]
        keys=_pick(m.keys, user.keys, tuple(rec.keys)),  # type: ignore[arg-type]
        preferences=rec.preferences() if rec.settings else Preferences(),
    )


# -- the diff ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    address: str
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Diff:
    added: tuple[str, ...] = ()
    changed: tuple[Change, ...] = ()
    disabled: tuple[tuple[str, DisableReason], ...] = ()
    removed: tuple[str, ...] = ()  # device data of a config user that the gateway no longer lists

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.disabled or self.removed)

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.changed)} changed, {len(self.disabled)} disabled,"
            f" {len(self.removed)} removed"
        )

    def lines(self) -> list[str]:
        out = [f"+ {a}" for a in self.added]
        out += [f"~ {c.address}: {', '.join(c.fields)}" for c in self.changed]
        out += [f"- {a} (disabled: {reason})" for a, reason in self.disabled]
        out += [f"x {a} (device data removed)" for a in self.removed]
        return [*out, self.summary()]


@dataclass(frozen=True, slots=True)
class Plan:
    diff: Diff
    write: tuple[Stored, ...]
    delete: tuple[str, ...]  # keys


def changed_fields(old: User, new: User) -> tuple[str, ...]:
    return tuple(f for f in COMPARED if getattr(old, f) != getattr(new, f))


def plan(previous: Mapping[str, Stored], fresh: list[Stored], *, max_disable_fraction: float = 1.0) -> Plan:
    """What applying `fresh` over `previous` changes; raises when it would disable too many users."""
    added, changed, disabled, removed = [], [], [], []
    write: list[Stored] = []
    delete: list[str] = []
    seen = set()
    for s in fresh:
        seen.add(s.key)
        old = previous.get(s.key)
        if old is None:
            added.append(s.user.address)
            write.append(s)
            continue
        fields = changed_fields(old.user, s.user)
        if old.user.enabled and not s.user.enabled:
            disabled.append((s.user.address, "disabled-in-source"))
            fields = tuple(f for f in fields if f != "enabled")
        if fields:
            changed.append(Change(s.user.address, fields))
        if fields or old.user.enabled != s.user.enabled or old.source != s.source:
            write.append(s)
    for key, old in previous.items():
        if key in seen:
            continue
        if old.source == "config":
            removed.append(old.user.address)
            delete.append(key)
        elif old.user.enabled:
            disabled.append((old.user.address, "gone-from-source"))
            write.append(Stored(old.source, replace(old.user, enabled=False)))
    _check_disable_fraction(previous, len(disabled), max_disable_fraction)
    diff = Diff(
        tuple(sorted(added)),
        tuple(sorted(changed, key=lambda c: c.address)),
        tuple(sorted(disabled)),
        tuple(sorted(removed)),
    )
    return Plan(diff, tuple(write), tuple(delete))


def _check_disable_fraction(previous: Mapping[str, Stored], disabling: int, fraction: float) -> None:
    enabled = sum(1 for s in previous.values() if s.source == "ldap" and s.user.enabled)
    if disabling > max(1.0, fraction * enabled):
        raise DirectoryError(
            f"the import would disable {disabling} of {enabled} users (more than"
            f" directory.max_disable_fraction = {fraction}); refusing: check the LDAP base DN and filter"
        )
