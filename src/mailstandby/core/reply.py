"""A protocol reply is a value; a rejection carries one.

Every error that crosses a component boundary says whether it is temporary or
permanent. Unknown means temporary: a retry is cheaper than lost mail.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMTP reply: basic code, RFC 3463 enhanced status (may be empty), text."""

    code: int
    status: str
    text: str

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    def wire(self, *, enhanced: bool = True) -> bytes:
        """The reply as sent on the wire, CRLF-terminated; multi-line text joined with '-'."""
        return _wire(self, enhanced)

    def _render(self, enhanced: bool) -> bytes:
        lines = self.text.split("\n")
        prefix = f"{self.status} " if enhanced and self.status else ""
        out = [f"{self.code}{'-' if i < len(lines) - 1 else ' '}{prefix}{line}\r\n" for i, line in enumerate(lines)]
        return "".join(out).encode("utf-8")

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}".replace("  ", " ")


@lru_cache(maxsize=512)
def _wire(reply: Reply, enhanced: bool) -> bytes:
    return reply._render(enhanced)


class Rejected(Exception):
    """Raised to answer a command with `reply`; `detail` goes to the log only."""

    def __init__(self, reply: Reply, *, detail: str = "", user_fault: bool = True) -> None:
        super().__init__(str(reply))
        self.reply = reply
        self.detail = detail
        self.user_fault = user_fault


class CloseSession(Rejected):
    """Answer with `reply`, then close the connection (abuse, shutdown, 421)."""
