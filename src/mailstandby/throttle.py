"""Login attempt limits: counted when an attempt starts, per client network and per account.

Invariants (docs/security.md, "Logins and one-time codes"):

- An attempt is *reserved* before anything is awaited or verified, so attempts
  sent in parallel are counted as they arrive; a refused reservation means
  the attempt never reaches a password check.
- A success releases its reservation; a failure (or an error, or a client
  gone mid-check) leaves it counted for the window.
- Client addresses are grouped into networks: an IPv4 address is its own
  network, an IPv6 address counts as its /64 (one customer's allocation,
  RFC 6177), so fresh addresses from one prefix do not buy fresh guesses.
- The per-account limit counts across every network. So that guessing at an
  account does not lock its owner out, a network the account logged in from
  recently (`TRUSTED_FOR`) is still let through to the password check; the
  per-network limit still applies to it.
- Memory is bounded: at most `max_keys` keys per window; past that, expired
  keys are dropped first, then the oldest.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

IPV6_PREFIX = 64
TRUSTED_FOR = 24 * 3600.0  # seconds a network stays trusted for an account after a good login
MAX_KEYS = 100_000


def client_network(peer: str) -> str:
    """The key a client address counts under: IPv4 (also IPv4-mapped IPv6) per address, IPv6 per /64."""
    try:
        ip = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return peer
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


class Attempts:
    """Attempts per key in a sliding window of `window` seconds; `limit` counted ones make a key full."""

    def __init__(
        self, limit: int, window: float, *, max_keys: int = MAX_KEYS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._stamps: dict[str, deque[float]] = {}

    def count(self, key: str) -> int:
        stamps = self._stamps.get(key)
        if stamps is None:
            return 0
        cutoff = self.clock() - self.window
        while stamps and stamps[0] < cutoff:
            stamps.popleft()
        if not stamps:
            del self._stamps[key]
        return len(stamps)

    def full(self, key: str) -> bool:
        return self.count(key) >= self.limit

    def add(self, key: str) -> float:
        """Count an attempt now (whether or not the key is full); returns its stamp for `release`."""
        stamp = self.clock()
        if key not in self._stamps and len(self._stamps) >= self.max_keys:
            self._evict()
        self._stamps.setdefault(key, deque()).append(stamp)
        return stamp

    def release(self, key: str, stamp: float) -> None:
        stamps = self._stamps.get(key)
        if stamps is not None and stamp in stamps:
            stamps.remove(stamp)
            if not stamps:
                del self._stamps[key]

    def _evict(self) -> None:
        for key in list(self._stamps):
            self.count(key)  # drops the expired
        while len(self._stamps) >= self.max_keys:
            del self._stamps[next(iter(self._stamps))]


@dataclass(frozen=True, slots=True)
class Reservation:
    network: str
    account: str
    network_stamp: float
    account_stamp: float


class LoginGate:
    """Reserve before checking a password; release on success (see the module docstring)."""

    def __init__(
        self, per_network: int, per_account: int, window: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.clock = clock
        self.networks = Attempts(per_network, window, clock=clock)
        self.accounts = Attempts(per_account, window, clock=clock)
        self._trusted: OrderedDict[tuple[str, str], float] = OrderedDict()

    def network_full(self, peer: str) -> bool:
        return self.networks.full(client_network(peer))

    def reserve(self, peer: str, account: str) -> Reservation | None:
        """Count this attempt, or None when the client's network or the account is out of attempts."""
        network = client_network(peer)
        if self.networks.full(network):
            return None
        if self.accounts.full(account) and not self._is_trusted(account, network):
            return None
        return Reservation(network, account, self.networks.add(network), self.accounts.add(account))

    def succeeded(self, reservation: Reservation) -> None:
        self.networks.release(reservation.network, reservation.network_stamp)
        self.accounts.release(reservation.account, reservation.account_stamp)
        key = (reservation.account, reservation.network)
        self._trusted[key] = self.clock() + TRUSTED_FOR
        self._trusted.move_to_end(key)
        while len(self._trusted) > MAX_KEYS:
            self._trusted.popitem(last=False)

    def _is_trusted(self, account: str, network: str) -> bool:
        until = self._trusted.get((account, network))
        return until is not None and until > self.clock()
