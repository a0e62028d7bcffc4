"""Fuzz target: the POP3 codec (`mailstandby.pop3.codec`).

Properties, for any bytes:
- command lines, arguments (LIST/UIDL/RETR/DELE/TOP) and SASL PLAIN responses
  return or raise `CommandError`, nothing else; a keyword is 3 or 4 ASCII
  letters, upper-cased; PLAIN yields a non-empty user and password;
- a multi-line response (RETR, TOP) read back as poplib reads it: the first
  line that is "." is the last one, every line ends with CRLF, and removing
  the dot-stuffing gives the message with CRLF line ends (RETR) or its header
  and the first n body lines (TOP, RFC 1939 §7).
"""

from __future__ import annotations

import contextlib

from fuzz.engine import Target
from fuzz.run import module_main
from mailstandby.pop3 import codes
from mailstandby.pop3.codec import (
    decode_sasl_response,
    message,
    multiline,
    no_args,
    normalize,
    one_number,
    optional_number,
    parse_command,
    parse_plain,
    top,
    top_args,
)
from mailstandby.pop3.codes import CommandError


def _commands(data: bytes) -> None:
    try:
        cmd = parse_command(data)
    except CommandError:
        return
    assert 3 <= len(cmd.keyword) <= 4 and cmd.keyword.isascii() and cmd.keyword.isalpha()
    assert cmd.keyword == cmd.keyword.upper() and not any(c in cmd.arg for c in "\r\n\x00")
    for parse in (no_args, optional_number, one_number, top_args):
        with contextlib.suppress(CommandError):
            parse(cmd)


def _sasl(data: bytes) -> None:
    """A continuation line after `AUTH PLAIN` (RFC 5034 §4)."""
    try:
        user, password = parse_plain(decode_sasl_response(data.decode("utf-8", "replace").rstrip("\r\n")))
    except CommandError:
        return
    assert user and password


def _read_multiline(wire: bytes) -> bytes:
    """What poplib's retr() returns, joined with CRLF: lines up to ".", each "..x" made ".x"."""
    assert wire.endswith(b".\r\n")
    body = b"\r\n" + wire[:-3]  # every line now starts after a CRLF
    assert wire.count(b"\r") == wire.count(b"\n") == wire.count(b"\r\n"), "a bare CR or LF reaches the client"
    assert body.endswith(b"\r\n") or body == b"\r\n", "the last line lacks its CRLF"
    assert body.count(b"\r\n.") == body.count(b"\r\n.."), "a line starting with a dot is not stuffed"
    return body.replace(b"\r\n..", b"\r\n.")[2:]


def _responses(data: bytes) -> None:
    whole = normalize(data)
    assert _read_multiline(message(data)) == whole
    lines = data[0] % 8 if data else 0
    head_end = 2 if whole.startswith(b"\r\n") else (whole.find(b"\r\n\r\n") + 4 if b"\r\n\r\n" in whole else len(whole))
    got = _read_multiline(top(data, lines))
    assert whole.startswith(got) and len(got) >= head_end, "TOP is not the message's beginning"
    assert got[head_end:].count(b"\r\n") == min(lines, whole[head_end:].count(b"\r\n"))
    text = data.decode("utf-8", "replace").replace("\r", "").split("\n")
    assert _read_multiline(multiline(codes.OK, text)[len(codes.OK.wire()) :]).decode().split("\r\n")[:-1] == text


def check(data: bytes) -> None:
    _commands(data)
    _sasl(data)
    _responses(data)


TARGET = Target(
    "pop3_codec",
    check,
    __doc__ or "",
    tokens=(b"USER ", b"PASS ", b"TOP ", b"RETR ", b"LIST ", b"UIDL ", b"AUTH PLAIN ", b"\r\n", b".\r\n", b"\r\n.."),
)

if __name__ == "__main__":
    module_main(TARGET.name)
