"""What the notifications keep in the store: their rows, setup tokens and one-time codes (the contract).

Per (user, kind, occurrence, mode, destination) there is exactly one row;
adding rows that exist already adds nothing. Every write is durable when its
call returns, and each named write is one step (a count and the insert that
depends on it cannot be separated by a parallel request). store/sqlite_notify.py
implements it on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from mailstandby.notify.compose import Mode
from mailstandby.notify.tokens import TokenProblem, TokenRow
from mailstandby.store.base import NewMessage, QueuedMessage

# (user, kind, occurrence, mode, destination, payload): one notification to record
NewRow = tuple[str, str, str, Mode, str, str]


class State(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    user: str
    kind: str
    occurrence: str
    mode: Mode
    destination: str
    payload: str
    attempts: int


class NotifyStore(Protocol):
    """What the notifier, the forwarder and the setup pages need of the store."""

    async def accept(self, message: NewMessage) -> QueuedMessage:
        """Queue a notice durably (the MailStore's accept)."""
        ...

    def queued(self, message_id: str) -> bool:
        """Whether a message with this queue id was ever accepted (it may be delivered by now)."""
        ...

    # -- notification rows ----------------------------------------------------------------------
    async def add_notices(
        self, rows: Sequence[NewRow], now: float, *, links: Sequence[tuple[str, str]] = (), link_expires: float = 0.0
    ) -> int:
        """Add the rows that do not exist yet and the setup links (token hash, user); the count of rows added."""
        ...

    async def add_code(
        self, hashed: str, user: str, rows: Sequence[NewRow], now: float, expires: float, *, limit: int
    ) -> bool:
        """A one-time code and its notices, unless `user` has `limit` live codes already (False)."""
        ...

    async def add_forward_summary(
        self, rows: Sequence[NewRow], *, user: str, kind: str, occurrence: str, now: float, limit: int
    ) -> bool:
        """The summary rows of one forwarded message, unless `user` had `limit` others in the last hour (False)."""
        ...

    def due(self, now: float) -> tuple[list[Row], float | None]:
        """Pending rows due at `now` (oldest first, at most 500) and when the next one falls due."""
        ...

    async def postpone(self, row_id: int, until: float, reason: str, now: float) -> None: ...

    async def record_attempt(
        self,
        row_id: int,
        *,
        term: int,
        state: State,
        attempts: int,
        next_attempt: float,
        error: str,
        message_id: str,
        now: float,
    ) -> None:
        """The outcome of one delivery attempt of a pending row, made by the leader in `term`
        (NotLeading, nothing recorded, when that term is over)."""
        ...

    def status(
        self, *, user: str | None = None, kind: str | None = None, occurrence: str | None = None
    ) -> list[dict[str, Any]]:
        """Every notification matching the filters with its queue state, as plain data."""
        ...

    # -- setup links and codes ----------------------------------------------------------------
    def find_token(self, hashed: str) -> TokenRow | None: ...

    async def consume_token(self, hashed: str, now: float) -> TokenProblem | None:
        """Mark a token used, atomically; the problem when it cannot be."""
        ...

    async def try_code(self, user: str, hashed: str, now: float) -> TokenProblem | None:
        """Use the user's code with hash `hashed`; a wrong code counts against every live code of the user."""
        ...

    # -- credentials (read) ---------------------------------------------------------------------
    def has_password(self, user: str) -> bool: ...

    def passwords(self) -> set[str]:
        """Every user with a standby password."""
        ...
