"""IMAP4rev1 command parser, incremental over lines and literals (RFC 3501 §2.2, §6, §9).

The network layer drives a `CommandReader` and never looks inside commands:

    step = reader.feed_line(await conn.read_line(...))      # may raise ParseError
    while isinstance(step, LiteralRequest):
        if step.discard:                                     # command already failed (RFC 7888 §4,
            await conn.discard_exact(step.size)              # RELIABILITY P11): drop the octets
            reader.literal_discarded()
        else:
            if step.synchronizing:
                send(b"+ Ready for literal data\\r\\n")
            reader.feed_literal(await conn.read_exact(step.size))
        step = reader.feed_line(await conn.read_line(...))
    handle(step)                                             # a typed Command

`ParseError` carries everything the reply needs: tag, status (BAD, or NO for
`[TOOBIG]` and `[BADCHARSET]`), response code, text, and whether to close.

Invariants:
- A synchronizing literal is never invited (`+`) for a command that is already
  known to be bad or too big: the error is raised instead and the client sends
  nothing more for that command (RFC 3501 §7.5; RFC 7889 NO [TOOBIG]).
- A non-synchronizing literal is always consumed, even for a failed command, so
  its octets never run as commands (RELIABILITY P11); one larger than the
  LITERAL- limit (RFC 7888 §4: 4096) is `BAD [TOOBIG]` and the connection closes.
- Before the final parse the reader re-parses the command so far in "partial"
  mode, so an early syntax error is found before any literal is read.
- Mailbox names are decoded from modified UTF-7 (RFC 3501 §5.1.3); a decoding
  failure is BAD, but names are not validated here: `store.mailbox.check_mailbox_name`
  is the session's job and an invalid name is a NO.
- The command table (`COMMANDS`) is explicit: name -> (argument parser, UID-able).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from mailstandby.imap import arguments as a
from mailstandby.imap.arguments import (
    Append,
    Args,
    Authenticate,
    Copy,
    Enable,
    Expunge,
    Id,
    ListMailboxes,
    Login,
    Mailbox,
    Rename,
    Select,
    Status,
    Store,
)
from mailstandby.imap.fetch import Fetch, FetchItem, Section, parse_fetch
from mailstandby.imap.search import Search, parse_search
from mailstandby.imap.syntax import TAG_CHARS, BadSyntax, Cursor, NeedMore, SequenceSet

__all__ = [
    "COMMANDS",
    "Append",
    "Args",
    "Authenticate",
    "Command",
    "CommandReader",
    "Copy",
    "Enable",
    "Expunge",
    "Fetch",
    "FetchItem",
    "Id",
    "ListMailboxes",
    "LiteralRequest",
    "Login",
    "Mailbox",
    "ParseError",
    "Rename",
    "Search",
    "Section",
    "Select",
    "SequenceSet",
    "Status",
    "Store",
    "is_done",
    "parse_command",
    "parse_sasl_response",
]

LITERAL_MINUS_MAX = 4096  # RFC 7888 §4
MAX_LITERALS = 64  # literals in one command (LOGIN needs 2, APPEND 1)
TOOBIG = "TOOBIG"  # RFC 4469 / RFC 7889 response code


class ParseError(Exception):
    """A command that must be answered `tag status [code] message` (and maybe closed)."""

    def __init__(
        self,
        tag: str,
        message: str,
        *,
        status: str = "BAD",
        code: str | None = None,
        close: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(message)
        self.tag = tag
        self.message = message
        self.status = status
        self.code = code
        self.close = close
        self.name = name  # the command name when known, for logs and metrics

    def __repr__(self) -> str:
        return f"ParseError({self.tag!r}, {self.message!r}, status={self.status!r}, code={self.code!r})"


@dataclass(frozen=True, slots=True)
class LiteralRequest:
    """The line ended in `{size}` / `{size+}`: read (or, if `discard`, drop) that many octets."""

    size: int
    synchronizing: bool
    discard: bool = False


@dataclass(frozen=True, slots=True)
class Command:
    tag: str
    name: str  # upper-cased, without "UID"
    args: Args = None
    uid: bool = False  # "UID FETCH", "UID SEARCH", ...


Parser = Callable[[Cursor], Args]

# name -> (argument parser, allowed after "UID")
COMMANDS: dict[str, tuple[Parser, bool]] = {
    "CAPABILITY": (a.no_args, False),
    "NOOP": (a.no_args, False),
    "LOGOUT": (a.no_args, False),
    "STARTTLS": (a.no_args, False),
    "AUTHENTICATE": (a.parse_authenticate, False),  # RFC 4959 SASL-IR
    "LOGIN": (a.parse_login, False),
    "ENABLE": (a.parse_enable, False),  # RFC 5161
    "ID": (a.parse_id, False),  # RFC 2971
    "NAMESPACE": (a.no_args, False),  # RFC 2342
    "SELECT": (a.parse_select, False),
    "EXAMINE": (a.parse_select, False),
    "CREATE": (a.parse_create, False),
    "DELETE": (a.parse_mailbox, False),
    "RENAME": (a.parse_rename, False),
    "SUBSCRIBE": (a.parse_mailbox, False),
    "UNSUBSCRIBE": (a.parse_mailbox, False),
    "LIST": (a.parse_list, False),
    "LSUB": (a.parse_lsub, False),
    "STATUS": (a.parse_status, False),
    "APPEND": (a.parse_append, False),
    "CHECK": (a.no_args, False),
    "CLOSE": (a.no_args, False),
    "UNSELECT": (a.no_args, False),  # RFC 3691
    "EXPUNGE": (a.no_args, True),  # UID EXPUNGE: RFC 4315
    "SEARCH": (parse_search, True),
    "FETCH": (parse_fetch, True),
    "STORE": (a.parse_store, True),
    "COPY": (a.parse_copy, True),
    "MOVE": (a.parse_copy, True),  # RFC 6851
    "IDLE": (a.no_args, False),  # RFC 2177
}
_UID_PARSERS: dict[str, Parser] = {"EXPUNGE": a.parse_uid_expunge}


def parse_command(buf: bytes, *, partial: bool = False) -> Command:
    """Parse one whole command (wire form, no final CRLF); raise `ParseError` or `NeedMore`."""
    tag, rest = _split_tag(buf)
    cur = Cursor(buf, partial=partial)
    cur.pos = rest
    name = None
    try:
        name = cur.keyword()
        uid = name == "UID"
        if uid:
            cur.sp()
            name = cur.keyword()
        entry = COMMANDS.get(name)
        if entry is None or (uid and not entry[1]):
            raise BadSyntax("unknown command")
        parser = _UID_PARSERS.get(name, entry[0]) if uid else entry[0]
        if parser is not a.no_args:
            cur.sp()
        args = parser(cur)
        cur.end()
    except BadSyntax as exc:
        raise ParseError(tag, exc.message, status=exc.status, code=exc.code, name=name) from None
    return Command(tag, name, args, uid)


def _split_tag(buf: bytes) -> tuple[str, int]:
    """The tag (RFC 3501 §9: 1*<any ASTRING-CHAR except "+">) and where the command name starts."""
    if not buf:
        raise ParseError("*", "empty command line")
    i = 0
    while i < len(buf) and buf[i] in TAG_CHARS:
        i += 1
    if i == 0 or (i < len(buf) and buf[i] != 0x20):
        raise ParseError("*", "invalid tag")
    tag = buf[:i].decode("ascii")
    if i + 1 >= len(buf):
        raise ParseError(tag, "missing command")
    return tag, i + 1


def is_done(line: bytes) -> bool:
    """RFC 2177: the line that ends IDLE ("DONE", any case)."""
    return line.rstrip(b"\r\n").upper() == b"DONE"


def parse_sasl_response(line: bytes, tag: str) -> bytes | None:
    """An AUTHENTICATE continuation: decoded bytes, or None when the client cancels with "*"."""
    raw = line.rstrip(b"\r\n")
    if raw == b"*":
        return None
    if not raw:
        return b""
    try:
        return a.decode_sasl(raw)
    except BadSyntax as exc:
        raise ParseError(tag, exc.message, name="AUTHENTICATE") from None


_LITERAL_AT_END = re.compile(rb"\{([0-9]+)(\+?)\}\Z")


class CommandReader:
    """Assembles one command from lines and literals; see the module docstring for the loop.

    Limits (the session may change them, e.g. lower them before login, RELIABILITY P12):
    `max_literal` bounds APPEND's literals (RFC 7889 APPENDLIMIT: over it a
    synchronizing literal gets `NO [TOOBIG]`); `max_argument` bounds the literals
    of any other command together, like Dovecot's imap_max_line_length (over it:
    `BAD [TOOBIG]`); `max_nonsync` is the LITERAL- bound (None: LITERAL+).
    """

    def __init__(
        self,
        *,
        max_literal: int,
        max_argument: int = 64 * 1024,
        max_nonsync: int | None = LITERAL_MINUS_MAX,
    ) -> None:
        self.max_literal = max_literal
        self.max_argument = max_argument
        self.max_nonsync = max_nonsync
        self._reset()

    def _reset(self) -> None:
        self._parts: list[bytes] = []
        self._tag = "*"
        self._command = ""
        self._literals = 0
        self._literal_bytes = 0
        self._error: ParseError | None = None
        self._pending: LiteralRequest | None = None

    @property
    def in_command(self) -> bool:
        """True between the first line of a command and its last."""
        return bool(self._parts)

    def feed_line(self, line: bytes) -> Command | LiteralRequest:
        if self._pending is not None:
            raise RuntimeError("a literal is pending; call feed_literal() or literal_discarded() first")
        line = line.removesuffix(b"\n").removesuffix(b"\r")
        first = not self._parts
        self._parts.append(line)
        if first:
            self._start(line)
        if self._error is None and (b"\x00" in line or b"\r" in line):
            self._fail("NUL or CR in command line")
        match = _LITERAL_AT_END.search(line)
        if match is None:
            return self._finish()
        digits = match.group(1)
        size = int(digits) if len(digits) <= 20 else 2**64  # absurd sizes are simply too big
        return self._literal(size, synchronizing=not match.group(2))

    def feed_literal(self, data: bytes) -> None:
        pending = self._pending
        if pending is None or pending.discard or len(data) != pending.size:
            raise RuntimeError("feed_literal() does not match the pending literal")
        self._parts.append(b"\r\n" + data)
        self._pending = None

    def literal_discarded(self) -> None:
        if self._pending is None or not self._pending.discard:
            raise RuntimeError("no literal is being discarded")
        self._pending = None

    # -- internals ----------------------------------------------------------------------
    def _start(self, line: bytes) -> None:
        try:
            self._tag, start = _split_tag(line)
        except ParseError as exc:
            self._tag = exc.tag
            self._error = exc
            return
        self._command = line[start:].split(b" ", 1)[0].upper().decode("ascii", "replace")

    def _fail(self, message: str) -> None:
        if self._error is None:
            self._error = ParseError(self._tag, message)

    def _raise(self, error: ParseError) -> NoReturn:
        self._reset()
        raise error

    def _finish(self) -> Command:
        if self._error is not None:
            self._raise(self._error)
        buf = b"".join(self._parts)
        self._reset()
        return parse_command(buf)

    def _literal(self, size: int, *, synchronizing: bool) -> LiteralRequest:
        self._literals += 1
        append = self._command == "APPEND"
        over = size + self._literal_bytes > (self.max_literal if append else self.max_argument)
        if not synchronizing and (over or (self.max_nonsync is not None and size > self.max_nonsync)):
            self._raise(self._too_big("BAD", close=True))
        if over and self._error is None:
            self._raise(self._too_big("NO" if append else "BAD", close=False))
        if self._literals > MAX_LITERALS:
            self._fail("too many literals in one command")
        if self._error is None:
            self._check_prefix()
        if self._error is not None:
            if synchronizing:
                self._raise(self._error)
            self._pending = LiteralRequest(size, synchronizing=False, discard=True)
            return self._pending
        self._literal_bytes += size
        self._pending = LiteralRequest(size, synchronizing)
        return self._pending

    def _too_big(self, status: str, *, close: bool) -> ParseError:
        return ParseError(self._tag, "literal too big", status=status, code=TOOBIG, close=close, name=self._command)

    def _check_prefix(self) -> None:
        """Parse the command so far; a syntax error before the literal fails it now."""
        try:
            parse_command(b"".join(self._parts) + b"\r\n", partial=True)
        except NeedMore:
            return
        except ParseError as exc:
            self._error = exc
            return
        self._fail("unexpected literal")
