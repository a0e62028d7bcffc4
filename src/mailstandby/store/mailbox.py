"""Standby mailboxes: the contract the IMAP and POP3 servers (and local delivery) rely on.

Model (RFC 3501 / RFC 9051 §2.3.1.1, RFC 7162 for MODSEQ):
- every user has mailboxes; INBOX always exists; Sent, Drafts, Trash are created
  on first use of the account with their SPECIAL-USE attribute (RFC 6154);
- a mailbox has a UIDVALIDITY fixed at creation and a UIDNEXT that never goes
  back; UIDs are strictly ascending and never reused under one UIDVALIDITY;
- each message in a mailbox has a UID, a set of flags, an internal date, a size
  (RFC822.SIZE, exact bytes of the stored message), and a MODSEQ that is raised
  by every change of its flags; the mailbox's HIGHESTMODSEQ is the largest;
- expunge removes messages for good (their bodies once no mailbox refers to them);
- `journaled` marks a copy filed while the primary was healthy: the primary
  already has it, so failback sync never copies it back (only its flag changes);
- `\\Recent` (RFC 3501 §2.3.2) is a session's, never stored on a message: the
  mailbox keeps the highest UID some session has claimed as recent
  (`claim_recent`), so exactly one session gets each message; messages above
  it are unclaimed (`MailboxInfo.recent`, STATUS RECENT).

Mailbox names are UTF-8 strings with "/" as the hierarchy separator, validated by
`check_mailbox_name()` before they reach a store (no "..", no control characters,
no empty levels, bounded length). Every call names the user: an implementation
must never let one user's call touch another user's mailboxes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

SEPARATOR = "/"
MAX_NAME = 255
MAX_DEPTH = 16

SYSTEM_FLAGS = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"})


class SpecialUse(StrEnum):
    SENT = "\\Sent"
    DRAFTS = "\\Drafts"
    TRASH = "\\Trash"
    JUNK = "\\Junk"
    ARCHIVE = "\\Archive"


DEFAULT_MAILBOXES: dict[str, SpecialUse | None] = {
    "INBOX": None,
    "Sent": SpecialUse.SENT,
    "Drafts": SpecialUse.DRAFTS,
    "Trash": SpecialUse.TRASH,
}


class MailboxError(Exception):
    """A mailbox operation cannot be done; `reason` is a closed code for protocol replies."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason  # "nonexistent" | "exists" | "invalid-name" | "cannot" | "over-quota" | "too-big"


def check_mailbox_name(name: str) -> str:
    """The canonical name (INBOX case-folded), or MailboxError("invalid-name")."""
    if not name or len(name.encode("utf-8")) > MAX_NAME:
        raise MailboxError("invalid-name", "empty or too long")
    if any(ord(c) < 0x20 or ord(c) == 0x7F or 0x80 <= ord(c) < 0xA0 for c in name):
        raise MailboxError("invalid-name", "control characters")
    parts = name.split(SEPARATOR)
    if len(parts) > MAX_DEPTH:
        raise MailboxError("invalid-name", "too deep")
    for part in parts:
        if part in ("", ".", ".."):
            raise MailboxError("invalid-name", "empty, '.' or '..' level")
        if part[0] in "~" or any(c in part for c in "*%\\"):
            raise MailboxError("invalid-name", "reserved character")
    if parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    return SEPARATOR.join(parts)


@dataclass(frozen=True, slots=True)
class MailboxInfo:
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: int
    unseen: int
    special_use: SpecialUse | None = None
    subscribed: bool = False
    recent: int = 0  # messages no session has claimed as \\Recent yet (RFC 3501 §6.3.10 STATUS RECENT)


@dataclass(frozen=True, slots=True)
class MessageMeta:
    uid: int
    flags: frozenset[str]
    internal_date: float  # seconds since the epoch, UTC
    size: int
    modseq: int
    body_id: int
    journaled: bool = False


@dataclass(slots=True)
class Snapshot:
    """A mailbox as seen at SELECT (or a POP3 login): metadata in UID order."""

    info: MailboxInfo
    messages: list[MessageMeta] = field(default_factory=list)


class FlagMode(StrEnum):
    SET = "set"  # FLAGS
    ADD = "add"  # +FLAGS
    REMOVE = "remove"  # -FLAGS


@dataclass(frozen=True, slots=True)
class Change:
    """What changed in a mailbox, pushed to every session that has it open (IDLE, NOOP)."""

    user: str
    mailbox: str
    added: tuple[MessageMeta, ...] = ()
    flags: tuple[MessageMeta, ...] = ()  # new metadata of messages whose flags changed
    expunged: tuple[int, ...] = ()  # UIDs


class MailboxStore(Protocol):
    async def ensure_user(self, user: str) -> None:
        """Create INBOX, Sent, Drafts and Trash for `user` if missing."""
        ...

    async def list_mailboxes(self, user: str) -> list[MailboxInfo]: ...

    async def create_mailbox(self, user: str, name: str, special_use: SpecialUse | None = None) -> MailboxInfo: ...

    async def delete_mailbox(self, user: str, name: str) -> None:
        """Delete a mailbox and its messages; INBOX cannot be deleted (MailboxError "cannot")."""
        ...

    async def rename_mailbox(self, user: str, old: str, new: str) -> None:
        """Rename (with its children); renaming INBOX moves its messages (RFC 3501 §6.3.5)."""
        ...

    async def set_subscribed(self, user: str, name: str, subscribed: bool) -> None: ...

    async def snapshot(self, user: str, name: str) -> Snapshot:
        """The mailbox with every message's metadata, in UID order."""
        ...

    async def append(
        self,
        user: str,
        name: str,
        body: bytes,
        flags: frozenset[str] = frozenset(),
        internal_date: float | None = None,
        *,
        journaled: bool = False,
    ) -> tuple[int, int]:
        """Store a message durably; returns (uidvalidity, uid)."""
        ...

    async def store_flags(
        self,
        user: str,
        name: str,
        uids: list[int],
        flags: frozenset[str],
        mode: FlagMode,
        *,
        unchanged_since: int | None = None,
    ) -> list[MessageMeta]:
        """Change flags; returns the new metadata of the messages that changed."""
        ...

    async def expunge(self, user: str, name: str, uids: list[int] | None = None) -> list[int]:
        """Remove messages flagged \\Deleted (restricted to `uids` when given); returns their UIDs."""
        ...

    async def copy(self, user: str, source: str, uids: list[int], target: str) -> list[tuple[int, int]]:
        """Copy messages (flags and internal date kept); returns (source uid, new uid) pairs."""
        ...

    async def move(self, user: str, source: str, uids: list[int], target: str) -> list[tuple[int, int]]:
        """Copy then expunge from `source`, atomically."""
        ...

    async def read_message(self, body_id: int) -> bytes:
        """The exact stored bytes of a message."""
        ...

    async def claim_recent(self, user: str, name: str, up_to: int) -> int:
        """Claim the messages up to UID `up_to` as \\Recent for the caller's session, atomically:
        returns the highest UID claimed before, so the caller's recent messages are those above
        it up to `up_to`, and no other call ever gets them. `up_to` 0 only reads (EXAMINE)."""
        ...

    def watch(self, user: str, name: str, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call `callback` on every change to the mailbox; returns the function that stops watching."""
        ...


def check_flags(flags: Iterable[str]) -> frozenset[str]:
    """Flags a message may store: system flags must be real ones (`\\Recent` is per session, never
    stored); keywords are atoms, and never `NIL` (a client would read `FLAGS (NIL)` as no flag list).
    Raises MailboxError("cannot")."""
    flags = frozenset(flags)
    for flag in flags:
        if flag.startswith("\\") and flag not in SYSTEM_FLAGS:
            raise MailboxError("cannot", f"not a storable system flag: {flag[:64]!r}")
        if not flag or any(c <= " " or c == "\x7f" for c in flag):
            raise MailboxError("cannot", "empty flag or flag with space or control characters")
        if flag.upper() == "NIL":
            raise MailboxError("cannot", "NIL is not a keyword")
    return flags


def apply_flags(current: frozenset[str], flags: frozenset[str], mode: FlagMode) -> frozenset[str]:
    """The flags after a STORE of `flags` in `mode` (RFC 3501 §6.4.6). Keywords compare without
    case, as Dovecot's: a message keeps the spelling it has (`+FLAGS ($LABEL)` on `$Label` changes
    nothing, `-FLAGS ($label)` removes it)."""
    if mode is FlagMode.SET:
        return frozenset(_by_case(sorted(flags)).values())
    have = _by_case(current)
    if mode is FlagMode.ADD:
        return current | frozenset(f for f in flags if f.casefold() not in have)
    gone = {f.casefold() for f in flags}
    return frozenset(f for f in current if f.casefold() not in gone)


def _by_case(flags: Iterable[str]) -> dict[str, str]:
    """casefolded flag -> the first spelling of it."""
    out: dict[str, str] = {}
    for f in flags:
        out.setdefault(f.casefold(), f)
    return out
