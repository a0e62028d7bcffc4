"""Connection caps shared by every listener (SMTP, IMAP, POP3, milter, the admin HTTP server).

A client is counted by its address, an IPv6 client by its /64 (one host
easily owns a whole /64, so counting single IPv6 addresses would cap
nothing). `ConnectionCaps` holds the count per client and in total; a
listener asks `admit` when a connection arrives and calls `release` exactly
once when it ends. `allowed` checks a peer against an allow-list of networks
(the milter listener's `allowed_peers`). `MemoryBudget` bounds the message
data all sessions of a listener hold at once (SMTP DATA).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from enum import Enum

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def peer_ip(host: str) -> IPAddress | None:
    """The address a transport reports (a zone id dropped, IPv4-mapped IPv6 as IPv4), or None."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def client_key(host: str) -> str:
    """The unit a connection is counted against: the IPv4 address, or the IPv6 /64."""
    ip = peer_ip(host)
    if ip is None:
        return host  # not an IP (a Unix socket, "?"): counted as itself
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def networks(values: Iterable[str]) -> list[IPNetwork]:
    """Parse `10.0.0.0/8`, `::1`, `192.0.2.7` (a bare address is a /32 or /128); raises ValueError."""
    return [ipaddress.ip_network(v, strict=False) for v in values]


def allowed(host: str, nets: list[IPNetwork]) -> bool:
    """Whether `host` (an IP address as a transport reports it) lies in one of `nets`."""
    ip = peer_ip(host)
    return ip is not None and any(ip.version == net.version and ip in net for net in nets)


class Refusal(Enum):
    """Why a connection was not admitted."""

    TOTAL = "total"  # the listener holds its maximum number of connections
    PER_CLIENT = "per-client"  # this client (address or IPv6 /64) holds its maximum
    RATE = "rate"  # this client opened its maximum of connections in the current window (ratelimit)


class ConnectionCaps:
    """Open connections per client and in total, against two limits (None: no limit)."""

    def __init__(self, total: int | None, per_client: int | None) -> None:
        self.total_limit = total
        self.per_client_limit = per_client
        self.total = 0
        self._per_client: dict[str, int] = {}

    def admit(self, host: str, *, shared: bool = False) -> Refusal | None:
        """Count a new connection from `host`, or say why it is refused (then nothing is counted).

        A `shared` host (a trusted proxy speaking for many clients) is held to the total only.
        """
        key = client_key(host)
        n = self._per_client.get(key, 0)
        if self.total_limit is not None and self.total >= self.total_limit:
            return Refusal.TOTAL
        if self.per_client_limit is not None and n >= self.per_client_limit and not shared:
            return Refusal.PER_CLIENT
        self._per_client[key] = n + 1
        self.total += 1
        return None

    def release(self, host: str) -> None:
        """Uncount a connection `admit` counted."""
        key = client_key(host)
        n = self._per_client.get(key, 0) - 1
        if n > 0:
            self._per_client[key] = n
        else:
            self._per_client.pop(key, None)
        self.total = max(0, self.total - 1)

    def count(self, host: str) -> int:
        return self._per_client.get(client_key(host), 0)


class MemoryBudget:
    """Bytes all sessions of a listener may hold at once; each session holds a `Reservation`.

    One reservation may always grow while it is the only one holding anything,
    so a message of any allowed size can still be received alone.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    def reservation(self) -> Reservation:
        return Reservation(self)


class Reservation:
    """One session's share of a `MemoryBudget`; `release` gives it back (safe to call twice)."""

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.held = 0

    def grow_to(self, size: int) -> bool:
        """Hold `size` bytes in all; False (and nothing more held) when the budget cannot give them."""
        extra = size - self.held
        if extra <= 0:
            return True
        b = self.budget
        if b.in_use + extra > b.limit and b.in_use > self.held:
            return False
        b.in_use += extra
        self.held = size
        return True

    def release(self) -> None:
        self.budget.in_use -= self.held
        self.held = 0
