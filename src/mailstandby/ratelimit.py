"""Per-client event rates, counted as Postfix's anvil counts them.

A `ClientRate` counts one kind of event (connections, MAIL commands, RCPT
commands) per client in fixed windows: a client's window opens at its first
event and lasts `window` seconds (anvil_rate_time_unit, 60 s); within it,
every event counts, allowed or not, and an event past `limit` is refused.
A client is its IPv4 address or its IPv6 /64 (`limits.client_key`), and
clients in `exempt` networks are never counted (Postfix
smtpd_client_event_limit_exceptions).

Pure: no I/O, no event loop; the clock is injected so that tests step time.
Memory is bounded: past `max_clients` tracked clients, expired windows are
dropped, then the oldest ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailstandby.limits import IPNetwork, allowed, client_key

MAX_CLIENTS = 65536


@dataclass(slots=True)
class _Window:
    start: float
    count: int = 0


class ClientRate:
    """`limit` events per client per `window` seconds; `limit` 0 or None: no limit."""

    def __init__(
        self,
        limit: int | None,
        *,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        exempt: Sequence[IPNetwork] = (),
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.limit = limit or None
        self.window = window
        self.clock = clock
        self.exempt = list(exempt)
        self.max_clients = max_clients
        self._windows: dict[str, _Window] = {}

    def allow(self, host: str, events: int = 1) -> bool:
        """Count `events` for `host`; False when that takes it past the limit in its window."""
        if self.limit is None or (self.exempt and allowed(host, self.exempt)):
            return True
        key = client_key(host)
        now = self.clock()
        w = self._windows.get(key)
        if w is None or now - w.start >= self.window:
            self._windows.pop(key, None)
            if len(self._windows) >= self.max_clients:
                self._prune(now)
            w = self._windows[key] = _Window(now)
        w.count += events
        return w.count <= self.limit

    def count(self, host: str) -> int:
        """Events counted for `host` in its current window."""
        w = self._windows.get(client_key(host))
        return 0 if w is None or self.clock() - w.start >= self.window else w.count

    def _prune(self, now: float) -> None:
        for key in [k for k, w in self._windows.items() if now - w.start >= self.window]:
            del self._windows[key]
        while len(self._windows) >= self.max_clients:  # windows are kept in the order they opened
            del self._windows[next(iter(self._windows))]


@dataclass(frozen=True, slots=True)
class ClientRates:
    """The three rates an SMTP listener keeps (Postfix smtpd_client_{connection,message,recipient}_rate_limit)."""

    connections: ClientRate
    messages: ClientRate
    recipients: ClientRate

    @classmethod
    def unlimited(cls) -> ClientRates:
        return cls(ClientRate(None), ClientRate(None), ClientRate(None))
