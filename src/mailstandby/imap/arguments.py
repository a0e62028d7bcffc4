"""Typed IMAP command arguments and their parsers (RFC 3501 §6 and §9, with extensions).

One parser per argument shape; each consumes the arguments after the command
name's SP up to the end of the command and returns a frozen dataclass, or
raises `BadSyntax`. `parser.COMMANDS` maps command names onto these.

Invariants: mailbox names are decoded from modified UTF-7 (RFC 3501 §5.1.3;
a name that is not valid mUTF-7 is a NO with Dovecot's text, not BAD: the
command was well formed) but not validated (`store.mailbox.check_mailbox_name`
is the session's, and an invalid name is a NO); a LIST/LSUB pattern that is not
valid mUTF-7 is matched as written, as Dovecot does; STORE and APPEND refuse
`\\Recent` and unknown system flags (RFC 3501 §2.3.2: clients cannot set them)
and the keyword `NIL` (a client reads `FLAGS (NIL)` as no list at all).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from mailstandby.imap import mutf7
from mailstandby.imap.fetch import Fetch
from mailstandby.imap.search import Search
from mailstandby.imap.syntax import MAX_MODSEQ, BadSyntax, Cursor, SequenceSet, utf8
from mailstandby.store.mailbox import SYSTEM_FLAGS, FlagMode


# -- typed arguments -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Login:
    user: str
    password: str


@dataclass(frozen=True, slots=True)
class Authenticate:
    mechanism: str  # upper-cased
    initial: bytes | None = None  # RFC 4959 SASL-IR, decoded; b"" for "="


@dataclass(frozen=True, slots=True)
class Mailbox:
    """CREATE, DELETE, SUBSCRIBE, UNSUBSCRIBE, and the target of COPY/MOVE."""

    name: str
    special_use: tuple[str, ...] = ()  # RFC 6154 CREATE ... (USE (\\Sent))


@dataclass(frozen=True, slots=True)
class Select:
    mailbox: str
    condstore: bool = False  # RFC 7162 §3.2.1 SELECT (CONDSTORE)


@dataclass(frozen=True, slots=True)
class Rename:
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class ListMailboxes:
    """LIST (RFC 3501 §6.3.8, RFC 5258 LIST-EXTENDED, RFC 6154, RFC 5819) and LSUB."""

    reference: str
    patterns: tuple[str, ...]
    selection: tuple[str, ...] = ()  # e.g. ("SPECIAL-USE",), ("SUBSCRIBED",)
    returns: tuple[str, ...] = ()  # e.g. ("SPECIAL-USE", "CHILDREN")
    return_status: tuple[str, ...] | None = None  # RFC 5819 RETURN (STATUS (...))


@dataclass(frozen=True, slots=True)
class Status:
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Append:
    mailbox: str
    flags: tuple[str, ...]
    internal_date: float | None
    message: bytes


@dataclass(frozen=True, slots=True)
class Store:
    sequence: SequenceSet
    mode: FlagMode
    silent: bool
    flags: tuple[str, ...]
    unchanged_since: int | None = None  # RFC 7162 §3.1.3


@dataclass(frozen=True, slots=True)
class Copy:
    """COPY (RFC 3501 §6.4.7) and MOVE (RFC 6851)."""

    sequence: SequenceSet
    mailbox: str


@dataclass(frozen=True, slots=True)
class Expunge:
    """UID EXPUNGE (RFC 4315 §2.1); plain EXPUNGE has no arguments."""

    sequence: SequenceSet


@dataclass(frozen=True, slots=True)
class Enable:
    capabilities: tuple[str, ...]  # upper-cased


@dataclass(frozen=True, slots=True)
class Id:
    params: tuple[tuple[str, str | None], ...] | None  # RFC 2971; None for "ID NIL"


Args = (
    Login | Authenticate | Mailbox | Select | Rename | ListMailboxes | Status | Append
    | Store | Copy | Expunge | Enable | Id | Search | Fetch | None
)  # fmt: skip


# -- argument parsers ------------------------------------------------------------------
def no_args(cur: Cursor) -> None:
    cur.end()


def mailbox_name(cur: Cursor) -> str:
    """An astring mailbox, decoded from modified UTF-7 (RFC 3501 §5.1.3); INBOX case-folded."""
    raw = cur.astring()
    try:
        name = mutf7.decode(raw)
    except mutf7.MUTF7Error:
        raise BadSyntax(INVALID_MUTF7, status="NO") from None
    return "INBOX" if name.upper() == "INBOX" else name


INVALID_MUTF7 = "Mailbox name is not valid mUTF-7"  # Dovecot's NO


def _pattern(cur: Cursor) -> str:
    """A LIST/LSUB pattern: decoded from mUTF-7, or else taken as written (as Dovecot: a phone
    sending a raw "&" gets a listing, never an error)."""
    raw = cur.list_mailbox()
    try:
        return mutf7.decode(raw)
    except mutf7.MUTF7Error:
        return raw.decode("utf-8", "replace")


def parse_login(cur: Cursor) -> Login:
    user = utf8(cur.astring(), "user name")
    cur.sp()
    password = utf8(cur.astring(), "password")
    cur.end()
    return Login(user, password)


def parse_authenticate(cur: Cursor) -> Authenticate:
    mechanism = cur.keyword()
    initial = None
    if not cur.at_end():
        cur.sp()
        raw = cur.take(frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="))
        initial = decode_sasl(raw)
    cur.end()
    return Authenticate(mechanism, initial)


def decode_sasl(raw: bytes) -> bytes:
    """An RFC 4959 initial response or a continuation line: base64, or "=" for empty."""
    if raw == b"=":
        return b""
    if not raw:
        raise BadSyntax("missing SASL response")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise BadSyntax("invalid base64") from None


def parse_mailbox(cur: Cursor) -> Mailbox:
    name = mailbox_name(cur)
    cur.end()
    return Mailbox(name)


def parse_create(cur: Cursor) -> Mailbox:
    name = mailbox_name(cur)
    uses: list[str] = []
    if not cur.at_end():
        cur.sp()

        def param() -> None:
            if cur.keyword() != "USE":
                raise BadSyntax("unknown CREATE parameter")
            cur.sp()
            uses.extend(cur.flag_list())

        cur.paren_list(param)
    cur.end()
    return Mailbox(name, tuple(uses))


def parse_select(cur: Cursor) -> Select:
    name = mailbox_name(cur)
    condstore = False
    if not cur.at_end():
        cur.sp()
        params = cur.paren_list(cur.keyword)
        if any(p != "CONDSTORE" for p in params):
            raise BadSyntax("unknown SELECT parameter")
        condstore = bool(params)
    cur.end()
    return Select(name, condstore)


def parse_rename(cur: Cursor) -> Rename:
    old = mailbox_name(cur)
    cur.sp()
    new = mailbox_name(cur)
    cur.end()
    return Rename(old, new)


def parse_list(cur: Cursor) -> ListMailboxes:
    selection: tuple[str, ...] = ()
    if cur.peek() == 0x28:
        selection = tuple(cur.paren_list(cur.keyword))
        cur.sp()
    reference = _pattern(cur)
    cur.sp()
    patterns = (
        tuple(cur.paren_list(lambda: _pattern(cur), allow_empty=False)) if cur.peek() == 0x28 else (_pattern(cur),)
    )
    returns: list[str] = []
    status = None
    if not cur.at_end():
        cur.sp()
        if cur.keyword() != "RETURN":
            raise BadSyntax("expected RETURN")
        cur.sp()
        status = _list_returns(cur, returns)
    cur.end()
    return ListMailboxes(reference, patterns, selection, tuple(returns), status)


def _list_returns(cur: Cursor, returns: list[str]) -> tuple[str, ...] | None:
    status: tuple[str, ...] | None = None

    def option() -> None:
        nonlocal status
        name = cur.keyword()
        returns.append(name)
        if name == "STATUS":
            cur.sp()
            status = tuple(_status_items(cur))

    cur.paren_list(option)
    return status


def parse_lsub(cur: Cursor) -> ListMailboxes:
    reference = _pattern(cur)
    cur.sp()
    pattern = _pattern(cur)
    cur.end()
    return ListMailboxes(reference, (pattern,), ("SUBSCRIBED",))


STATUS_ITEMS = frozenset({"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ", "SIZE"})


def _status_items(cur: Cursor) -> list[str]:
    items = cur.paren_list(cur.keyword, allow_empty=False)
    if not set(items) <= STATUS_ITEMS:
        raise BadSyntax("unknown STATUS item")
    return items


def parse_status(cur: Cursor) -> Status:
    name = mailbox_name(cur)
    cur.sp()
    items = _status_items(cur)
    cur.end()
    return Status(name, tuple(items))


def parse_append(cur: Cursor) -> Append:
    """RFC 3501 §6.3.11: APPEND mailbox [SP flag-list] [SP date-time] SP literal."""
    name = mailbox_name(cur)
    cur.sp()
    flags: list[str] = []
    if cur.peek() == 0x28:
        flags = cur.flag_list()
        cur.sp()
    when = None
    if cur.peek() == 0x22:
        when = cur.date_time()
        cur.sp()
    if cur.peek() != 0x7B:
        raise BadSyntax("APPEND needs the message as a literal")
    message = cur.literal()
    cur.end()
    return Append(name, _settable(flags), when, message)


def parse_store(cur: Cursor) -> Store:
    """RFC 3501 §6.4.6 with RFC 7162 §3.1.3 (UNCHANGEDSINCE n)."""
    sequence = cur.sequence_set()
    cur.sp()
    unchanged_since = None
    if cur.peek() == 0x28:
        cur.expect(b"(")
        if cur.keyword() != "UNCHANGEDSINCE":
            raise BadSyntax("unknown STORE modifier")
        cur.sp()
        unchanged_since = cur.number(MAX_MODSEQ)
        cur.expect(b")")
        cur.sp()
    mode, silent = _store_item(cur.keyword())
    cur.sp()
    flags = cur.flag_list() if cur.peek() == 0x28 else _flags_without_parens(cur)
    cur.end()
    return Store(sequence, mode, silent, _settable(flags), unchanged_since)


_STORE_MODES = {"FLAGS": FlagMode.SET, "+FLAGS": FlagMode.ADD, "-FLAGS": FlagMode.REMOVE}


def _store_item(item: str) -> tuple[FlagMode, bool]:
    silent = item.endswith(".SILENT")
    mode = _STORE_MODES.get(item.removesuffix(".SILENT"))
    if mode is None:
        raise BadSyntax("expected FLAGS, +FLAGS or -FLAGS")
    return mode, silent


def _settable(flags: list[str]) -> tuple[str, ...]:
    """RFC 3501 §2.3.2: \\Recent and unknown system flags cannot be set by a client; nor can
    the keyword NIL, which a client would read back in `FLAGS (NIL)` as NIL, not a flag."""
    if any(f.startswith("\\") and f not in SYSTEM_FLAGS for f in flags):
        raise BadSyntax("invalid system flag")
    if any(f.upper() == "NIL" for f in flags):
        raise BadSyntax("Invalid keyword: NIL")
    return tuple(dict.fromkeys(flags))


def _flags_without_parens(cur: Cursor) -> list[str]:
    flags = [cur.flag()]
    while not cur.at_end():
        cur.sp()
        flags.append(cur.flag())
    return flags


def parse_copy(cur: Cursor) -> Copy:
    sequence = cur.sequence_set()
    cur.sp()
    name = mailbox_name(cur)
    cur.end()
    return Copy(sequence, name)


def parse_uid_expunge(cur: Cursor) -> Expunge:
    sequence = cur.sequence_set()
    cur.end()
    return Expunge(sequence)


def parse_enable(cur: Cursor) -> Enable:
    names = [cur.keyword()]
    while not cur.at_end():
        cur.sp()
        names.append(cur.keyword())
    return Enable(tuple(names))


def parse_id(cur: Cursor) -> Id:
    """RFC 2971: ID ("key" "value" ...) or ID NIL; at most 30 pairs, keys <= 30 octets."""
    if cur.peek() != 0x28:
        if cur.keyword() != "NIL":
            raise BadSyntax("expected a list or NIL")
        cur.end()
        return Id(None)
    items = cur.paren_list(cur.nstring)
    cur.end()
    if len(items) % 2 or len(items) > 60 or any(k is None or len(k) > 30 for k in items[::2]):
        raise BadSyntax("invalid ID parameters")
    keys = [utf8(k or b"", "ID key") for k in items[::2]]
    values = [None if v is None else utf8(v, "ID value") for v in items[1::2]]
    return Id(tuple(zip(keys, values, strict=True)))
