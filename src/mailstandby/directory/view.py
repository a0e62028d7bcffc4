"""The directory the running server reads: one object whose contents are replaced whole.

The SMTP intake, router, authenticator and queue hold a `DirectoryView` for
the life of the process; a refresh builds a complete new `StaticDirectory`
and swaps one reference, so a lookup sees the old directory or the new one,
never a mixture, and nobody needs a restart or a new reference.

`combine` joins the config file's users and the imported ones: a user the
config file defines keeps the config's identity (address, aliases, enabled)
and takes everything else (display name, devices, keys, preferences,
alternates) from the import; an address the config gives one user cannot be
taken by an imported one; enabled users come before disabled ones, so a
disabled user's old address can go to someone new.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace

from mailstandby.core.model import Address
from mailstandby.directory.base import User
from mailstandby.directory.records import Stored, address_key
from mailstandby.directory.static import StaticDirectory

log = logging.getLogger(__name__)


def combine(domains: Iterable[str], static: Iterable[User], imported: Mapping[str, Stored]) -> StaticDirectory:
    users: list[User] = []
    static_keys = set()
    for user in static:
        key = address_key(user.address)
        static_keys.add(key)
        got = imported.get(key)
        if got is not None:
            user = replace(got.user, address=user.address, aliases=user.aliases, enabled=user.enabled)
        users.append(user)
    rest = [s.user for k, s in imported.items() if k not in static_keys and s.source != "config"]
    users += sorted(rest, key=lambda u: not u.enabled)
    directory = StaticDirectory(domains, users, first_wins=True)
    for clash in directory.shadowed:
        log.warning("directory: %s", clash)
    return directory


class DirectoryView:
    """The `Directory` protocol over a replaceable `StaticDirectory` snapshot."""

    def __init__(self, current: StaticDirectory, generation: int = 0) -> None:
        self._current = current
        self.generation = generation

    @property
    def current(self) -> StaticDirectory:
        return self._current

    def replace(self, new: StaticDirectory, generation: int) -> None:
        self._current = new  # one reference: atomic for every reader
        self.generation = generation

    @property
    def domains(self) -> frozenset[str]:
        return self._current.domains

    def __len__(self) -> int:
        return len(self._current)

    def serves(self, domain: str) -> bool:
        return self._current.serves(domain)

    def lookup(self, address: Address) -> User | None:
        return self._current.lookup(address)

    def users(self) -> Iterator[User]:
        return self._current.users()
