"""SEARCH arguments (RFC 3501 §6.4.4, RFC 4731 RETURN, RFC 7162 MODSEQ) as a small AST.

The grammar's 30-odd keys reduce to nine node types: flag tests (`HasFlag`,
with NEW/OLD/UN* desugared through `Not`/`And`), header and text matches,
date and size comparisons, sequence sets, MODSEQ, and the boolean `And`, `Or`,
`Not`. The evaluator (in the session) therefore needs no table of keys.

Invariants: strings are decoded per CHARSET (only UTF-8 and US-ASCII are known;
another charset raises `BadSyntax` with status NO and code BADCHARSET so the
server can answer `NO [BADCHARSET (US-ASCII UTF-8)]`, RFC 3501 §6.4.4); nesting
is bounded (`MAX_DEPTH`) so a hostile `NOT NOT NOT …` cannot exhaust the stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from mailstandby.imap.syntax import MAX_MODSEQ, BadSyntax, Cursor, SequenceSet, utf8

MAX_DEPTH = 64
CHARSETS = ("US-ASCII", "UTF-8")
BADCHARSET = "BADCHARSET (US-ASCII UTF-8)"


@dataclass(frozen=True, slots=True)
class All:
    pass


@dataclass(frozen=True, slots=True)
class HasFlag:
    flag: str  # "\\Seen", "\\Recent", or a keyword


@dataclass(frozen=True, slots=True)
class Header:
    field: str  # header name as given, e.g. "From", "X-Mailer"
    value: str  # substring to find ("" matches every message with the field)
    address: bool = False  # FROM/TO/CC/BCC: match the parsed address list, not the raw field


@dataclass(frozen=True, slots=True)
class Body:
    value: str
    whole: bool = False  # TEXT (header and body) rather than BODY


@dataclass(frozen=True, slots=True)
class DateKey:
    field: Literal["internal", "sent"]
    op: Literal["before", "on", "since"]
    day: date


@dataclass(frozen=True, slots=True)
class Size:
    op: Literal["larger", "smaller"]
    octets: int


@dataclass(frozen=True, slots=True)
class Seq:
    set: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class ModSeq:
    modseq: int
    entry: str | None = None  # RFC 7162 entry-name, e.g. "/flags/\\Seen"
    entry_type: str | None = None  # "priv" | "shared" | "all"


@dataclass(frozen=True, slots=True)
class Not:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class Or:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class And:
    keys: tuple[SearchKey, ...]


SearchKey = All | HasFlag | Header | Body | DateKey | Size | Seq | ModSeq | Not | Or | And


@dataclass(frozen=True, slots=True)
class Search:
    key: SearchKey
    charset: str | None = None
    returns: tuple[str, ...] | None = None  # RFC 4731 RETURN options, upper-cased; None if absent


_FLAG_KEYS = {
    "ANSWERED": HasFlag("\\Answered"),
    "DELETED": HasFlag("\\Deleted"),
    "DRAFT": HasFlag("\\Draft"),
    "FLAGGED": HasFlag("\\Flagged"),
    "RECENT": HasFlag("\\Recent"),
    "SEEN": HasFlag("\\Seen"),
    "UNANSWERED": Not(HasFlag("\\Answered")),
    "UNDELETED": Not(HasFlag("\\Deleted")),
    "UNDRAFT": Not(HasFlag("\\Draft")),
    "UNFLAGGED": Not(HasFlag("\\Flagged")),
    "UNSEEN": Not(HasFlag("\\Seen")),
    "NEW": And((HasFlag("\\Recent"), Not(HasFlag("\\Seen")))),
    "OLD": Not(HasFlag("\\Recent")),
    "ALL": All(),
}
_HEADER_KEYS = {"BCC": "Bcc", "CC": "Cc", "FROM": "From", "SUBJECT": "Subject", "TO": "To"}
_DATE_KEYS: dict[str, tuple[Literal["internal", "sent"], Literal["before", "on", "since"]]] = {
    "BEFORE": ("internal", "before"),
    "ON": ("internal", "on"),
    "SINCE": ("internal", "since"),
    "SENTBEFORE": ("sent", "before"),
    "SENTON": ("sent", "on"),
    "SENTSINCE": ("sent", "since"),
}
_RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})


def parse_search(cur: Cursor) -> Search:
    """`SEARCH` arguments after the command name's SP, up to the end of the command."""
    returns = _returns(cur) if cur.peek_keyword() == "RETURN" else None
    charset = None
    if cur.peek_keyword() == "CHARSET":
        cur.keyword()
        cur.sp()
        charset = utf8(cur.astring(), "charset").upper()
        if charset not in CHARSETS:
            raise BadSyntax("unsupported charset", status="NO", code=BADCHARSET)
        cur.sp()
    keys = [_key(cur, 0)]
    while not cur.at_end():
        cur.sp()
        keys.append(_key(cur, 0))
    return Search(keys[0] if len(keys) == 1 else And(tuple(keys)), charset, returns)


def _returns(cur: Cursor) -> tuple[str, ...]:
    cur.keyword()
    cur.sp()
    options = tuple(cur.paren_list(cur.keyword))
    if not set(options) <= _RETURN_OPTIONS:
        raise BadSyntax("unknown SEARCH RETURN option")
    cur.sp()
    return options or ("ALL",)  # RFC 4731 §3.1: "()" means ALL


def _key(cur: Cursor, depth: int) -> SearchKey:
    if depth > MAX_DEPTH:
        raise BadSyntax("search program nested too deeply")
    b = cur.peek()
    if b == 0x28:  # "("
        return _group(cur, depth)
    if b is not None and (0x30 <= b <= 0x39 or b in (0x2A, 0x24)):  # digit, "*", "$"
        return Seq(cur.sequence_set())
    name = cur.keyword()
    fixed = _FLAG_KEYS.get(name)
    if fixed is not None:
        return fixed
    return _key_with_args(cur, name, depth)


def _group(cur: Cursor, depth: int) -> SearchKey:
    keys = cur.paren_list(lambda: _key(cur, depth + 1), allow_empty=False)
    return keys[0] if len(keys) == 1 else And(tuple(keys))


def _key_with_args(cur: Cursor, name: str, depth: int) -> SearchKey:
    cur.sp()
    if name in _HEADER_KEYS:
        return Header(_HEADER_KEYS[name], _text(cur), address=name != "SUBJECT")
    if name in ("BODY", "TEXT"):
        return Body(_text(cur), whole=name == "TEXT")
    if name in _DATE_KEYS:
        field, op = _DATE_KEYS[name]
        return DateKey(field, op, cur.date())
    if name in ("LARGER", "SMALLER"):
        return Size("larger" if name == "LARGER" else "smaller", cur.number())
    if name in ("KEYWORD", "UNKEYWORD"):
        flag = HasFlag(cur.atom("keyword"))
        return flag if name == "KEYWORD" else Not(flag)
    if name == "HEADER":
        field = utf8(cur.astring(), "header name")
        cur.sp()
        return Header(field, _text(cur))
    if name == "UID":
        return Seq(cur.sequence_set(), uid=True)
    if name == "NOT":
        return Not(_key(cur, depth + 1))
    if name == "OR":
        left = _key(cur, depth + 1)
        cur.sp()
        return Or(left, _key(cur, depth + 1))
    if name == "MODSEQ":
        return _modseq(cur)
    raise BadSyntax("unknown search key")


def _text(cur: Cursor) -> str:
    return utf8(cur.astring(), "search string")


def _modseq(cur: Cursor) -> ModSeq:
    """RFC 7162 §3.1.5: MODSEQ [SP entry-name SP entry-type-req] SP mod-sequence-valzer."""
    entry = entry_type = None
    if cur.peek() == 0x22:
        entry = utf8(cur.quoted(), "entry name")
        cur.sp()
        entry_type = cur.keyword().lower()
        if entry_type not in ("priv", "shared", "all"):
            raise BadSyntax("invalid MODSEQ entry type")
        cur.sp()
    return ModSeq(cur.number(MAX_MODSEQ), entry, entry_type)
