"""Mail value types: addresses, envelopes, identifiers.

An `Address` keeps the local part exactly as received (local parts are
case-sensitive per RFC 5321 §2.4) and the domain lower-cased; `key` is the
case-folded form used for directory lookups.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from enum import StrEnum

_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass(frozen=True, slots=True)
class Address:
    local: str
    domain: str

    @classmethod
    def parse(cls, text: str) -> Address:
        """Split `local@domain`; raises ValueError when there is no usable domain."""
        local, at, domain = text.rpartition("@")
        if not at or not local or not domain:
            raise ValueError(f"not an address: {text!r}")
        return cls(local, domain.lower().rstrip("."))

    @property
    def key(self) -> str:
        return f"{self.local.lower()}@{self.domain}"

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"


class Mode(StrEnum):
    """Where mail for the company's users goes (the failover state machine's states)."""

    NORMAL = "normal"  # to the primary
    FAILED_OVER = "failed-over"  # to the standby mailboxes (for the users in scope)
    FAILING_BACK = "failing-back"  # new mail to the primary again; outage mail being synchronized back


class BodyType(StrEnum):
    SEVEN_BIT = "7BIT"
    EIGHT_BIT = "8BITMIME"


@dataclass(frozen=True, slots=True)
class RcptDsn:
    """What the sender asked about one recipient (RFC 3461 §4.1-4.2); empty: the defaults."""

    notify: frozenset[str] = frozenset()  # {"NEVER"} or a subset of SUCCESS, FAILURE, DELAY
    orcpt: str = ""  # "addr-type;address", decoded from xtext

    def wants(self, event: str) -> bool:
        """Whether a DSN for `event` (SUCCESS, FAILURE, DELAY) goes out; unset NOTIFY means FAILURE, DELAY."""
        return event in (self.notify or {"FAILURE", "DELAY"})


@dataclass(slots=True)
class Envelope:
    """What the SMTP transaction says about a message, apart from its content."""

    sender: str  # "" is the null reverse-path (bounces, DSNs)
    recipients: list[str] = field(default_factory=list)
    body_type: BodyType = BodyType.SEVEN_BIT
    smtputf8: bool = False
    declared_size: int | None = None
    auth_user: str | None = None  # the authenticated submitter (submission only)
    client_ip: str = ""  # the SMTP client's address (for content checks such as rspamd)
    helo: str = ""  # what the client said in HELO/EHLO
    ret: str = ""  # RFC 3461 RET: "FULL", "HDRS" or "" (unset)
    envid: str = ""  # RFC 3461 ENVID, decoded from xtext
    dsn: dict[str, RcptDsn] = field(default_factory=dict)  # per recipient, only where the sender said something


_PAIRS = [a + b for a in _B32 for b in _B32]  # 10 bits per lookup


def new_queue_id() -> str:
    """A 16-character, time-ordered, unique id: 48 bits of milliseconds and 32 random bits."""
    n = (int(time.time() * 1000) << 32) | random.getrandbits(32)
    p = _PAIRS
    return (
        _B32[(n >> 75) & 31]
        + p[(n >> 65) & 1023]
        + p[(n >> 55) & 1023]
        + p[(n >> 45) & 1023]
        + p[(n >> 35) & 1023]
        + p[(n >> 25) & 1023]
        + p[(n >> 15) & 1023]
        + p[(n >> 5) & 1023]
        + _B32[n & 31]
    )
