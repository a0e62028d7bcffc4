"""Failback sync decisions, pure: what to do with one standby message, and why.

A standby message is one row of a standby mailbox. `decide()` looks at it and
at its sync record (if any) and returns a `Decision` whose `reason` comes from
the closed set `Reason`; it is logged, counted, stored with the record and
shown by `mailstandby sync status`.

Rules (docs/sync.md):
- a standby-only message (`journaled` = 0) is APPENDed once into the mapped
  primary folder; later flag changes on the standby are added to that copy;
- a journal copy (`journaled` = 1: the primary already has the message) is
  never copied; the flags set on the phone (\\Seen \\Answered \\Flagged \\Draft)
  are added to the primary's copy, found by Message-ID;
- flags are only ever added on the primary, never removed (the standby cannot
  tell "marked unread on the phone" from "never read there");
- a message flagged \\Deleted on the standby is not copied (unless
  `restore_deleted`); an expunged message no longer exists and never comes back;
- a record that failed `max_attempts` times stays failed (reported, not retried).
"""

from __future__ import annotations

import email.parser
import email.policy
from dataclasses import dataclass, field
from enum import StrEnum

SYNC_FLAGS = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Draft"})
TRACE_HEADER = "X-Mailstandby-Sync"


class Kind(StrEnum):
    APPEND = "append"  # a standby-only message: the primary gets a copy
    FLAGS = "flags"  # a journal copy: the primary's copy gets the phone's flags


class State(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"  # gave up after max_attempts refusals; reported


class Action(StrEnum):
    APPEND = "append"
    FLAGS = "flags"
    NOTHING = "nothing"


class Reason(StrEnum):
    NEW = "new"  # not yet on the primary
    RETRY = "retry"  # refused before, attempts left
    FLAGS_CHANGED = "flags-changed"  # on the primary, but the standby has flags it lacks
    IN_SYNC = "in-sync"
    JOURNAL_UNCHANGED = "journal-unchanged"  # a journal copy without flags from the phone
    DELETED_ON_STANDBY = "deleted-on-standby"
    FOLDER_EXCLUDED = "folder-excluded"  # folder_map maps the folder to ""
    GAVE_UP = "gave-up"
    # outcomes recorded by the engine
    APPENDED = "appended"
    FOUND_BY_TRACE = "found-by-trace"  # our earlier APPEND was there (crash before the record)
    FOUND_BY_MESSAGE_ID = "found-by-message-id"  # the primary had the message already
    FLAGS_APPLIED = "flags-applied"
    PRIMARY_COPY_MISSING = "primary-copy-missing"  # a journal copy the primary no longer has
    REFUSED = "refused"  # the primary answered NO
    REINJECTED = "reinjected"  # SMTP fallback
    NO_IMAP = "no-imap"  # not INBOX and no IMAP access: nothing sensible to re-inject
    GONE_FROM_STANDBY = "gone-from-standby"  # planned, then expunged or deleted on the phone: record dropped


@dataclass(frozen=True, slots=True)
class StandbyMessage:
    user: str
    mailbox: str  # standby name
    uid: int
    body_id: int
    flags: frozenset[str]
    internal_date: float
    journaled: bool


@dataclass(frozen=True, slots=True)
class Record:
    kind: Kind
    state: State
    flags: frozenset[str]  # the flags the primary's copy is known to have been given
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: Reason


def decide(msg: StandbyMessage, record: Record | None, *, restore_deleted: bool) -> Decision:
    wanted = msg.flags & SYNC_FLAGS
    if record is not None and record.state is State.FAILED:
        return Decision(Action.NOTHING, Reason.GAVE_UP)
    if msg.journaled:
        if not wanted:
            return Decision(Action.NOTHING, Reason.JOURNAL_UNCHANGED)
        if record is not None and record.state is State.DONE and wanted <= record.flags:
            return Decision(Action.NOTHING, Reason.IN_SYNC)
        return Decision(Action.FLAGS, Reason.FLAGS_CHANGED if record else Reason.NEW)
    if record is None or record.state is State.PENDING:
        if "\\Deleted" in msg.flags and not restore_deleted:
            return Decision(Action.NOTHING, Reason.DELETED_ON_STANDBY)
        return Decision(Action.APPEND, Reason.RETRY if record and record.attempts else Reason.NEW)
    if wanted - record.flags:
        return Decision(Action.FLAGS, Reason.FLAGS_CHANGED)
    return Decision(Action.NOTHING, Reason.IN_SYNC)


def map_folder(name: str, folder_map: dict[str, str]) -> str | None:
    """The primary folder for standby folder `name`; None when excluded (mapped to "")."""
    target = folder_map.get(name, name)
    return target or None


def trace_id(instance: int, body_id: int) -> str:
    """The value of our trace header: unique per standby installation and message body."""
    return f"{instance:x}.{body_id}"


def with_trace(body: bytes, trace: str) -> bytes:
    """The message as appended: our trace header first, the rest byte for byte."""
    return f"{TRACE_HEADER}: {trace}\r\n".encode("ascii") + body


def header_values(header: bytes) -> tuple[str | None, str | None]:
    """(Message-ID, trace id) from a message's header block (either may be missing)."""
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(header, headersonly=True)
    mid = parsed.get("Message-ID")
    trace = parsed.get(TRACE_HEADER)
    return (_norm(mid) or None if mid else None), (str(trace).strip() or None if trace else None)


def message_id_of(body: bytes) -> str | None:
    end = body.find(b"\r\n\r\n")
    if end < 0:
        end = body.find(b"\n\n")
    return header_values(body if end < 0 else body[: end + 2])[0]


def _norm(value: object) -> str:
    return "".join(str(value).split())


# -- what the engine reports --------------------------------------------------------------------------
@dataclass(slots=True)
class UserStatus:
    total: int = 0
    done: int = 0
    failed: int = 0
    pending: int = 0


@dataclass(slots=True)
class SyncStatus:
    """Per user: records in the store by state (plain data for the CLI and the admin API)."""

    users: dict[str, UserStatus] = field(default_factory=dict)

    @property
    def total(self) -> UserStatus:
        out = UserStatus()
        for s in self.users.values():
            out.total += s.total
            out.done += s.done
            out.failed += s.failed
            out.pending += s.pending
        return out

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {
            u: {"total": s.total, "done": s.done, "failed": s.failed, "pending": s.pending}
            for u, s in self.users.items()
        }


@dataclass(frozen=True, slots=True)
class Progress:
    """Sent to the progress callback after every batch."""

    user: str
    done: int  # items finished in this run, all users
    total: int  # items this run set out to do, all users
    failed: int


@dataclass(slots=True)
class Failure:
    user: str
    folder: str
    body_id: int
    error: str


@dataclass(slots=True)
class SyncReport:
    """What one run did. `complete` is True when nothing is left pending for the users it ran for."""

    planned: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # Reason value -> count, this run
    failures: list[Failure] = field(default_factory=list)  # gave up (max_attempts) in this run
    pending: int = 0  # left for a later run (refused, attempts left; users whose login failed)
    errors: dict[str, str] = field(default_factory=dict)  # user -> why nothing was done for them
    elapsed: float = 0.0

    @property
    def complete(self) -> bool:
        return self.pending == 0 and not self.errors

    def count(self, reason: Reason, n: int = 1) -> None:
        self.reasons[reason.value] = self.reasons.get(reason.value, 0) + n
