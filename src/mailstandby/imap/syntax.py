"""IMAP4rev1 lexical layer: a cursor over one command's wire bytes (RFC 3501 §9).

The buffer holds the command exactly as the client sent it, lines joined with
CRLF and each literal's octets after its `{n}` / `{n+}` line, without the final
CRLF. Argument parsers in `parser`, `fetch` and `search` consume it through
`Cursor`; nothing here does I/O.

Invariants:
- Every failure raises `BadSyntax` (turned into a tagged BAD/NO by the reader).
- In *partial* mode (the command so far ends in a literal announcement whose
  octets have not arrived) running off the end raises `NeedMore` instead: the
  reader then knows the command is well-formed so far and asks for the literal.
- NUL is refused in quoted strings and literals (RELIABILITY P10; RFC 3501 CHAR8
  excludes it). 8-bit octets in quoted strings must be valid UTF-8 (RFC 9051 §4.3).
- Numbers are bounded: `number` is 32-bit (RFC 3501 §9 "number"), mod-sequences
  are 63-bit (RFC 7162 §7 "mod-sequence-value").
"""

from __future__ import annotations

import bisect
import calendar
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

T = TypeVar("T")

MAX_NUMBER = 2**32 - 1  # RFC 3501 §9 number
MAX_MODSEQ = 2**63 - 1  # RFC 7162 §7 mod-sequence-value

_CTL = set(range(0x00, 0x20)) | {0x7F}
_ATOM_SPECIALS = {ord(c) for c in '(){ %*"\\]'} | _CTL
ATOM_CHARS = frozenset(b for b in range(0x21, 0x7F) if b not in _ATOM_SPECIALS)
ASTRING_CHARS = ATOM_CHARS | {ord("]")}
LIST_CHARS = ATOM_CHARS | {ord("%"), ord("*"), ord("]")}
TAG_CHARS = ASTRING_CHARS - {ord("+")}
DIGITS = frozenset(b"0123456789")
ALPHA = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


class BadSyntax(Exception):
    """An argument is malformed; `status`/`code` say how to answer (BAD unless told)."""

    def __init__(self, message: str, *, status: str = "BAD", code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class NeedMore(Exception):
    """Partial parse reached the pending literal: the command is well-formed so far."""


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """RFC 3501 §9 sequence-set; `None` stands for "*"; `saved` is RFC 5182 "$"."""

    ranges: tuple[tuple[int | None, int | None], ...] = ()
    saved: bool = False

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Sorted, merged (low, high) ranges with "*" replaced by `largest`."""
        spans = sorted(
            (min(a, b), max(a, b))
            for a, b in ((largest if lo is None else lo, largest if hi is None else hi) for lo, hi in self.ranges)
        )
        merged: list[tuple[int, int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        return merged

    def members(self, values: Sequence[int], largest: int | None = None) -> list[int]:
        """The items of sorted `values` inside the set ("*" = `largest`, default the last value)."""
        if not values:
            return []
        top = values[-1] if largest is None else largest
        out: list[int] = []
        for lo, hi in self.resolve(top):
            out.extend(values[bisect.bisect_left(values, lo) : bisect.bisect_right(values, hi)])
        return out

    def __str__(self) -> str:
        if self.saved:
            return "$"

        def one(n: int | None) -> str:
            return "*" if n is None else str(n)

        return ",".join(one(lo) if lo == hi else f"{one(lo)}:{one(hi)}" for lo, hi in self.ranges)


class Cursor:
    """A read position over one command; see the module docstring for `partial`."""

    def __init__(self, buf: bytes, *, partial: bool = False) -> None:
        self.buf = buf
        self.pos = 0
        self.partial = partial

    # -- primitives -------------------------------------------------------------
    def peek(self) -> int | None:
        if self.pos < len(self.buf):
            return self.buf[self.pos]
        if self.partial:
            raise NeedMore
        return None

    def at_end(self) -> bool:
        return self.peek() is None

    def expect(self, byte: bytes, what: str | None = None) -> None:
        if self.peek() != byte[0]:
            raise BadSyntax(f"expected {what or byte.decode()}")
        self.pos += 1

    def accept(self, byte: bytes) -> bool:
        if self.peek() == byte[0]:
            self.pos += 1
            return True
        return False

    def sp(self) -> None:
        self.expect(b" ", "SP")

    def end(self) -> None:
        if not self.at_end():
            raise BadSyntax("unexpected extra arguments")

    def take(self, chars: frozenset[int]) -> bytes:
        start = self.pos
        buf = self.buf
        while self.pos < len(buf) and buf[self.pos] in chars:
            self.pos += 1
        if self.pos == len(buf) and self.partial:
            raise NeedMore
        return buf[start : self.pos]

    def atom(self, what: str = "atom") -> str:
        raw = self.take(ATOM_CHARS)
        if not raw:
            raise BadSyntax(f"expected {what}")
        return raw.decode("ascii")

    def keyword(self) -> str:
        return self.atom("keyword").upper()

    def peek_keyword(self) -> str:
        """The upper-cased atom at the cursor, without consuming it ("" if none)."""
        start = self.pos
        try:
            return self.take(ATOM_CHARS).decode("ascii").upper()
        finally:
            self.pos = start

    # -- numbers ----------------------------------------------------------------
    def number(self, limit: int = MAX_NUMBER) -> int:
        raw = self.take(DIGITS)
        if not raw:
            raise BadSyntax("expected a number")
        if len(raw) > 20 or int(raw) > limit:
            raise BadSyntax("number out of range")
        return int(raw)

    def nz_number(self, limit: int = MAX_NUMBER) -> int:
        n = self.number(limit)
        if n == 0:
            raise BadSyntax("zero is not allowed here")
        return n

    # -- strings ----------------------------------------------------------------
    def quoted(self) -> bytes:
        """RFC 3501 quoted: '"' *QUOTED-CHAR '"', escapes only for '"' and '\\'."""
        self.expect(b'"')
        out = bytearray()
        while True:
            b = self.peek()
            if b is None:
                raise BadSyntax("unterminated quoted string")
            self.pos += 1
            if b == 0x22:
                break
            if b == 0x5C:
                esc = self.peek()
                if esc not in (0x22, 0x5C):
                    raise BadSyntax("invalid escape in quoted string")
                self.pos += 1
                out.append(esc)
            elif b in (0x00, 0x0D, 0x0A):
                raise BadSyntax("NUL, CR or LF in quoted string")
            else:
                out.append(b)
        raw = bytes(out)
        if not raw.isascii():
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                raise BadSyntax("8-bit quoted string is not UTF-8") from None
        return raw

    def literal(self, *, allow_nul: bool = False) -> bytes:
        """RFC 3501 literal / RFC 7888 non-synchronizing literal: "{" n ["+"] "}" CRLF n*CHAR8."""
        self.expect(b"{")
        size = self.number(2**63)
        self.accept(b"+")
        self.expect(b"}")
        if self.buf[self.pos : self.pos + 2] != b"\r\n":
            if self.partial and self.pos + 2 > len(self.buf):
                raise NeedMore
            raise BadSyntax("literal announcement must end the line")
        start = self.pos + 2
        if start + size > len(self.buf):
            if self.partial:
                raise NeedMore
            raise BadSyntax("literal shorter than announced")
        data = self.buf[start : start + size]
        if not allow_nul and b"\x00" in data:
            raise BadSyntax("NUL in literal")
        self.pos = start + size
        return data

    def string(self) -> bytes:
        b = self.peek()
        if b == 0x22:
            return self.quoted()
        if b == 0x7B:
            return self.literal()
        raise BadSyntax("expected a string")

    def astring(self) -> bytes:
        b = self.peek()
        if b in (0x22, 0x7B):
            return self.string()
        raw = self.take(ASTRING_CHARS)
        if not raw:
            raise BadSyntax("expected an astring")
        return raw

    def nstring(self) -> bytes | None:
        if self.peek() in (0x22, 0x7B):
            return self.string()
        if self.keyword() != "NIL":
            raise BadSyntax("expected a string or NIL")
        return None

    def list_mailbox(self) -> bytes:
        """RFC 3501 list-mailbox: 1*list-char / string (wildcards allowed)."""
        if self.peek() in (0x22, 0x7B):
            return self.string()
        raw = self.take(LIST_CHARS)
        if not raw:
            raise BadSyntax("expected a mailbox pattern")
        return raw

    # -- structured arguments ---------------------------------------------------
    def paren_list(self, item: Callable[[], T], *, allow_empty: bool = True) -> list[T]:
        self.expect(b"(")
        items: list[T] = []
        if self.accept(b")"):
            if not allow_empty:
                raise BadSyntax("empty list")
            return items
        while True:
            items.append(item())
            if self.accept(b")"):
                return items
            self.sp()

    def seq_number(self) -> int | None:
        return None if self.accept(b"*") else self.nz_number()

    def sequence_set(self, *, allow_saved: bool = True) -> SequenceSet:
        if self.peek() == 0x24:  # "$" RFC 5182
            if not allow_saved:
                raise BadSyntax("$ is not allowed here")
            self.pos += 1
            return SequenceSet(saved=True)
        ranges: list[tuple[int | None, int | None]] = []
        while True:
            lo = self.seq_number()
            hi = self.seq_number() if self.accept(b":") else lo
            ranges.append((lo, hi))
            if not self.accept(b","):
                return SequenceSet(tuple(ranges))

    def flag(self) -> str:
        """RFC 3501 flag: a system flag (canonical case), "\\" extension, or keyword atom."""
        if self.accept(b"\\"):
            name = self.atom("flag")
            canonical = SYSTEM_FLAGS.get(name.upper())
            return canonical if canonical is not None else "\\" + name
        return self.atom("flag keyword")

    def flag_list(self) -> list[str]:
        return self.paren_list(self.flag)

    def date(self) -> date:
        """RFC 3501 date (SEARCH): date-text or DQUOTE date-text DQUOTE."""
        quoted = self.accept(b'"')
        day = self.number(31)
        self.expect(b"-")
        month = _month(self.take(ALPHA))
        self.expect(b"-")
        year = _year(self.take(DIGITS))
        if quoted:
            self.expect(b'"')
        try:
            return date(year, month, day)
        except ValueError:
            raise BadSyntax("invalid date") from None

    def date_time(self) -> float:
        """RFC 3501 date-time (APPEND) as seconds since the epoch, UTC."""
        self.expect(b'"')
        self.accept(b" ")  # date-day-fixed may be SP DIGIT
        day = self.number(31)
        self.expect(b"-")
        month = _month(self.take(ALPHA))
        self.expect(b"-")
        year = _year(self.take(DIGITS))
        self.sp()
        hms = [self._two_digits(), self._colon_two(), self._colon_two()]
        self.sp()
        sign = -1 if self.peek() == 0x2D else 1
        if not (self.accept(b"+") or self.accept(b"-")):
            raise BadSyntax("expected a time zone")
        zone = self.take(DIGITS)
        self.expect(b'"')
        return _epoch(year, month, day, hms, sign, zone)

    def _two_digits(self) -> int:
        raw = self.take(DIGITS)
        if len(raw) != 2:
            raise BadSyntax("expected two digits")
        return int(raw)

    def _colon_two(self) -> int:
        self.expect(b":")
        return self._two_digits()


SYSTEM_FLAGS = {f.upper(): "\\" + f for f in ("Seen", "Answered", "Flagged", "Deleted", "Draft", "Recent")}


def utf8(raw: bytes, what: str) -> str:
    """Decode a string argument as UTF-8 (a literal may carry any 8-bit octets)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadSyntax(f"{what} is not UTF-8") from None


def _month(name: bytes) -> int:
    try:
        return MONTHS.index(name.decode("ascii").upper()) + 1
    except ValueError:
        raise BadSyntax("invalid month") from None


def _year(raw: bytes) -> int:
    if len(raw) != 4:
        raise BadSyntax("expected a four-digit year")
    year = int(raw)
    if year < 1:
        raise BadSyntax("invalid year")
    return year


def _epoch(year: int, month: int, day: int, hms: list[int], sign: int, zone: bytes) -> float:
    hour, minute, second = hms
    if len(zone) != 4 or int(zone[2:]) > 59 or hour > 23 or minute > 59 or second > 60:
        raise BadSyntax("invalid time or zone")
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        raise BadSyntax("invalid date")
    offset = sign * (int(zone[:2]) * 3600 + int(zone[2:]) * 60)
    days = date(year, month, day).toordinal() - date(1970, 1, 1).toordinal()
    return float(days * 86400 + hour * 3600 + minute * 60 + min(second, 59) - offset)
