"""POP3 wire format, without I/O: command lines, arguments, SASL PLAIN, multi-line responses.

Pure functions over bytes and str; every malformed input raises
`CommandError` with the -ERR reply for it, so this module can be fuzzed alone.

Commands (RFC 1939 §3, RFC 2449 §4): a keyword of three or four letters,
case-insensitive, then arguments separated by spaces; a line is at most 255
octets with its CRLF (the caller reads with that limit). A NUL, a bare CR or
invalid UTF-8 in a line is refused without truncating it at the bad byte.

Multi-line responses (RFC 1939 §3): every line ends with CRLF, a line that
begins with "." gets one more ".", and ".\r\n" ends the response. Message
bytes are stored with CRLF already; bare LF or CR is still turned into CRLF
here so that a client never sees a stray terminator.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass

from mailstandby.pop3 import codes
from mailstandby.pop3.codes import CommandError

MAX_LINE = 255  # RFC 2449 §4: octets in a command line, CRLF included
MAX_SASL_LINE = 8192  # a SASL response line (continuation) may be longer than a command line
MAX_NUMBER_DIGITS = 9  # message numbers and TOP line counts; longer is "no such message"
END = b".\r\n"

_NEWLINE = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Command:
    keyword: str  # upper-cased
    arg: str  # everything after "KEYWORD " (PASS keeps its spaces, RFC 1939 §7)

    @property
    def args(self) -> list[str]:
        return [a for a in self.arg.split(" ") if a]


def _strip_eol(line: bytes) -> bytes:
    if line.endswith(b"\r\n"):
        return line[:-2]
    if line.endswith(b"\n"):
        return line[:-1]
    return line


def decode_line(line: bytes) -> str:
    """A line as text, without its line end; NUL, CR or bad UTF-8 inside refuse it."""
    line = _strip_eol(line)
    if b"\x00" in line:
        raise CommandError(codes.ERR_NUL)
    if b"\r" in line or b"\n" in line:
        raise CommandError(codes.ERR_UNKNOWN, detail="bare CR or LF in command line")
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(codes.ERR_BAD_UTF8) from None


def parse_command(line: bytes) -> Command:
    """RFC 2449 §4: `KEYWORD [args]`, the keyword 3 or 4 ASCII letters in any case."""
    text = decode_line(line)
    keyword, _, arg = text.partition(" ")
    if not 3 <= len(keyword) <= 4 or not keyword.isascii() or not keyword.isalpha():
        raise CommandError(codes.ERR_UNKNOWN)
    return Command(keyword.upper(), arg)


def no_args(cmd: Command) -> None:
    if cmd.arg.strip():
        raise CommandError(codes.ERR_SYNTAX)


def parse_number(text: str) -> int:
    """A message number or line count: ASCII digits only (RFC 1939 §3 "msg")."""
    if not text or not text.isascii() or not text.isdigit():
        raise CommandError(codes.ERR_SYNTAX)
    if len(text) > MAX_NUMBER_DIGITS:
        raise CommandError(codes.ERR_NO_MESSAGE, bad=False)  # bigger than any maildrop
    return int(text)


def optional_number(cmd: Command) -> int | None:
    """The one optional argument of LIST and UIDL (RFC 1939 §5)."""
    args = cmd.args
    if len(args) > 1:
        raise CommandError(codes.ERR_SYNTAX)
    return parse_number(args[0]) if args else None


def one_number(cmd: Command) -> int:
    """The one required argument of RETR and DELE."""
    args = cmd.args
    if len(args) != 1:
        raise CommandError(codes.ERR_SYNTAX)
    return parse_number(args[0])


def top_args(cmd: Command) -> tuple[int, int]:
    """TOP msg n (RFC 1939 §7): both required, n may be 0."""
    args = cmd.args
    if len(args) != 2:
        raise CommandError(codes.ERR_SYNTAX)
    number = parse_number(args[0])
    try:
        lines = parse_number(args[1])
    except CommandError as e:
        if e.bad:
            raise
        lines = 10**MAX_NUMBER_DIGITS  # more lines than any message has: the whole body
    return number, lines


# -- SASL PLAIN (RFC 4616, carried by RFC 5034) -----------------------------------------


def decode_sasl_response(text: str) -> bytes:
    """A base64 client response; "=" is the empty response (RFC 5034 §4)."""
    text = text.strip(" ")
    if text == "=":
        return b""
    if not text or len(text) % 4 or not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", text):
        raise CommandError(codes.ERR_SYNTAX, detail="bad base64 in SASL response")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CommandError(codes.ERR_SYNTAX, detail="bad base64 in SASL response") from None


def parse_plain(message: bytes) -> tuple[str, str]:
    """RFC 4616 §2: [authzid] NUL authcid NUL passwd → (authcid, passwd).

    An authorization identity other than the authentication identity is
    refused: nobody may act as another user (RELIABILITY A4).
    """
    parts = message.split(b"\x00")
    if len(parts) != 3:
        raise CommandError(codes.ERR_AUTH_FAILED, detail="malformed PLAIN message")
    try:
        authzid, authcid, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        raise CommandError(codes.ERR_AUTH_FAILED, detail="PLAIN message is not UTF-8") from None
    if not authcid or not password:
        raise CommandError(codes.ERR_AUTH_FAILED, detail="empty PLAIN user name or password")
    if authzid and authzid != authcid:
        raise CommandError(codes.ERR_AUTH_FAILED, detail="PLAIN authorization identity differs")
    return authcid, password


# -- multi-line responses (RFC 1939 §3) --------------------------------------------------


def multiline(first: codes.Reply, lines: Iterable[str]) -> bytes:
    """A status line, then text lines (dot-stuffed), then the terminator."""
    body = b"".join(_stuff_line(line.encode()) for line in lines)
    return first.wire() + body + END


def _stuff_line(line: bytes) -> bytes:
    return (b"." + line if line.startswith(b".") else line) + b"\r\n"


def normalize(data: bytes) -> bytes:
    """CRLF at the end of every line, bare CR and LF included; a final CRLF if missing."""
    crlf = data.count(b"\r\n")
    if crlf != data.count(b"\n") or crlf != data.count(b"\r"):  # some line end is not CRLF
        data = _NEWLINE.sub(b"\r\n", data)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def stuff(data: bytes) -> bytes:
    """Dot-stuff normalized message bytes and add the terminator."""
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..") + END


def message(data: bytes) -> bytes:
    """RETR: the whole message, ready for the wire after the status line."""
    return stuff(normalize(data))


def top(data: bytes, lines: int) -> bytes:
    """TOP (RFC 1939 §7): the header, the blank line, then `lines` lines of the body."""
    data = normalize(data)
    if data.startswith(b"\r\n"):
        head_end = 2  # no header at all: the body begins after the blank line
    else:
        i = data.find(b"\r\n\r\n")
        head_end = len(data) if i < 0 else i + 4
    head, body = data[:head_end], data[head_end:]
    if lines >= body.count(b"\r\n"):
        return stuff(data)
    cut = 0
    for _ in range(lines):
        cut = body.index(b"\r\n", cut) + 2
    return stuff(head + body[:cut])
