"""A directory from the config file and an optional CSV file.

CSV columns: `address` (required) and `aliases` (optional; separated by spaces,
commas or semicolons). Every problem names the file and the row. Two users
claiming the same address is an error, not a silent override.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from mailstandby.config import DirectorySettings, UserEntry
from mailstandby.core.model import Address
from mailstandby.directory.base import Device, Forwarding, NoticeKind, Platform, Preferences, User


class DirectoryError(Exception):
    """A directory source is unusable; the message names the file and row."""


class StaticDirectory:
    """Users by address. With `first_wins`, an address a later user also claims stays with the
    first one and the clash is listed in `shadowed` (for a combined directory, see view.combine);
    otherwise it is an error."""

    def __init__(self, domains: Iterable[str], users: Iterable[User], *, first_wins: bool = False) -> None:
        self._domains = {d.lower().rstrip(".") for d in domains}
        self._by_address: dict[str, User] = {}
        self.shadowed: list[str] = []
        for user in users:
            for a in (user.address, *user.aliases):
                key = Address.parse(a).key
                other = self._by_address.get(key)
                if other is not None and other is not user:
                    if first_wins:
                        self.shadowed.append(f"address {a} stays with {other.address}, not {user.address}")
                        continue
                    raise DirectoryError(f"address {a} belongs to both {other.address} and {user.address}")
                self._by_address[key] = user
                self._domains.add(Address.parse(a).domain)

    @property
    def domains(self) -> frozenset[str]:
        return frozenset(self._domains)

    def __len__(self) -> int:
        return len({u.address for u in self._by_address.values()})

    def serves(self, domain: str) -> bool:
        return domain.lower().rstrip(".") in self._domains

    def lookup(self, address: Address) -> User | None:
        user = self._by_address.get(address.key)
        return user if user is not None and user.enabled else None

    def users(self) -> Iterator[User]:
        seen: set[str] = set()
        for user in self._by_address.values():
            if user.address not in seen:
                seen.add(user.address)
                yield user


def user_from_entry(u: UserEntry) -> User:
    """A `User` with the notification profile given inline in the config."""
    prefs = Preferences(
        notify=frozenset(NoticeKind(k) for k in u.notify) if u.notify is not None else frozenset(NoticeKind),
        forward=Forwarding(u.forward),
        summary_length=u.summary_length,
        quiet_hours=u.quiet_hours,
    )
    devices = tuple(Device(d.id, Platform(d.platform), d.phone, d.sms_gateway, d.push_url) for d in u.devices)
    return User(
        u.address,
        tuple(u.aliases),
        display_name=u.display_name,
        alternates=tuple(u.alternates),
        notify_urls=tuple(u.notify_urls),
        devices=devices,
        preferences=prefs,
    )


def from_settings(settings: DirectorySettings) -> StaticDirectory:
    return StaticDirectory(settings.domains, static_users(settings))


def static_users(settings: DirectorySettings) -> list[User]:
    """The users the config file defines, inline (with their notification profile) and in its CSV file."""
    users = [user_from_entry(u) for u in settings.users]
    if settings.csv is not None:
        users += read_csv(settings.csv)
    return users


_SPLIT = re.compile(r"[\s,;]+")


def read_csv(path: Path) -> list[User]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
            fields = set((f and rows and rows[0].keys()) or [])
    except OSError as e:
        raise DirectoryError(f"{path}: cannot read: {e.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise DirectoryError(f"{path}: not a readable CSV file: {e}") from None
    if rows and "address" not in fields:
        raise DirectoryError(f"{path}: missing column 'address' (found: {', '.join(sorted(fields))})")
    users = []
    for n, row in enumerate(rows, start=2):
        address = (row.get("address") or "").strip()
        aliases = tuple(a for a in _SPLIT.split(row.get("aliases") or "") if a)
        for a in (address, *aliases):
            try:
                Address.parse(a)
            except ValueError:
                raise DirectoryError(f"{path}: row {n}: {a!r} is not an address") from None
        users.append(User(address, aliases))
    return users
