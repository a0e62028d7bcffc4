"""What an IMAP session needs from its connection (implemented by `transport.Connection`).

A module of its own so that the session and the selected-state commands both
depend on it, and neither on the other's module (the seam runs one way:
session → selected → view).
"""

from __future__ import annotations

import ssl
from typing import Protocol


class SessionIO(Protocol):
    peer: tuple[str, int]
    tls_active: bool

    async def read_line(self, limit: int, timeout: float) -> bytes: ...
    async def read_exact(self, n: int, timeout: float) -> bytes: ...
    async def discard_exact(self, n: int, timeout: float) -> None: ...
    def write(self, data: bytes) -> None: ...
    async def flush(self) -> None: ...
    async def start_tls(self, context: ssl.SSLContext, timeout: float) -> None: ...
