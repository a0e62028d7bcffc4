"""The Directory contract read by the SMTP receiver, the router and the queue."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from mailstandby.core.model import Address


@dataclass(frozen=True, slots=True)
class User:
    address: str  # the primary address, as the primary knows it
    aliases: tuple[str, ...] = field(default=())
    enabled: bool = True


class Directory(Protocol):
    def serves(self, domain: str) -> bool:
        """True when mail for `domain` is ours to accept."""
        ...

    def lookup(self, address: Address) -> User | None:
        """The enabled user owning `address` (primary or alias), or None."""
        ...
