"""The Directory contract read by the SMTP receiver, the router, the queue,
the notifier and the failback sync.

A `User` is everything the standby must know about a person while the
primary is dark: the addresses that reach them, how to reach them elsewhere
(alternate addresses, other notification modes, devices) and what they want.
All values are immutable; a directory refresh replaces whole `User` objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from mailstandby.core.model import Address


class Platform(StrEnum):
    IOS = "ios"
    ANDROID = "android"
    BLACKBERRY = "blackberry"
    WINDOWS = "windows"
    PAGER = "pager"
    OTHER = "other"


class NoticeKind(StrEnum):
    """The events a user can be told about (each has a template)."""

    FAILOVER = "failover"  # mail now flows through the standby
    FAILBACK = "failback"  # mail is back on the primary
    SYNC_FINISHED = "sync-finished"  # everything from the outage is in the primary mailbox
    SETUP = "setup"  # standby credentials / phone setup


class Forwarding(StrEnum):
    OFF = "off"
    FULL = "full"  # each outage message, whole, to the alternate addresses
    SUMMARY = "summary"  # an SMS-sized summary to every mode


@dataclass(frozen=True, slots=True)
class Device:
    """A phone or pager, as the device-management gateway knows it."""

    id: str
    platform: Platform = Platform.OTHER
    phone: str = ""  # E.164 where known
    sms_gateway: str = ""  # carrier email-to-SMS address, e.g. 15551234567@txt.example
    push_url: str = ""  # an Apprise URL for this device (ntfy, Gotify, ...)


@dataclass(frozen=True, slots=True)
class Key:
    """An encryption key for mail to this user: an S/MIME certificate or an OpenPGP key."""

    kind: str  # "smime" (PEM certificate) or "pgp" (ASCII-armored public key)
    data: str


@dataclass(frozen=True, slots=True)
class Preferences:
    notify: frozenset[NoticeKind] = frozenset(NoticeKind)
    forward: Forwarding = Forwarding.OFF
    summary_length: int = 160  # characters, for SMS-sized modes
    quiet_hours: tuple[int, int] | None = None  # (start hour, end hour) local to the standby; None: always


@dataclass(frozen=True, slots=True)
class User:
    address: str  # the primary address, as the primary knows it
    aliases: tuple[str, ...] = field(default=())
    enabled: bool = True
    display_name: str = ""
    alternates: tuple[str, ...] = field(default=())  # other email addresses (personal, SMS gateway)
    notify_urls: tuple[str, ...] = field(default=())  # Apprise URLs: SMS providers, push, chat, webhooks
    devices: tuple[Device, ...] = field(default=())
    keys: tuple[Key, ...] = field(default=())
    preferences: Preferences = field(default_factory=Preferences)

    @property
    def addresses(self) -> tuple[str, ...]:
        return (self.address, *self.aliases)


class Directory(Protocol):
    def serves(self, domain: str) -> bool:
        """True when mail for `domain` is ours to accept."""
        ...

    def lookup(self, address: Address) -> User | None:
        """The enabled user owning `address` (primary or alias), or None."""
        ...

    def users(self) -> Iterator[User]:
        """Every user, enabled or not, once each."""
        ...
