"""Fuzz target: the SMTP codec (`mailstandby.smtp.codec`).

Properties, for any bytes:
- `parse_command`, `parse_path` (FROM and TO), `parse_params`, `parse_size`,
  `parse_body` and `unstuff` return or raise `Rejected`, nothing else;
  every rejection is a permanent reply whose wire form is well-formed SMTP;
- an accepted command has an ASCII-letter verb and no CR, LF or NUL;
- an accepted path is "" (MAIL only) or a mailbox within the RFC 5321
  §4.5.3.1 length limits, without ASCII control characters; parameter names
  are upper-cased `esmtp-keyword`s;
- `unstuff` accepts data only when every CR and LF is part of a CRLF
  (RFC 5321 §4.1.1.4, SMTP smuggling) and inverts the dot-stuffing a real
  client does: `unstuff(smtplib.quotedata(m)) == m` with CRLF line ends.
"""

from __future__ import annotations

import re
import smtplib

from fuzz.engine import Target
from fuzz.run import module_main
from mailstandby.core.reply import Rejected
from mailstandby.smtp.codec import (
    MAX_LOCAL_PART,
    MAX_PATH,
    parse_body,
    parse_command,
    parse_path,
    parse_size,
    unstuff,
)

_REPLY = re.compile(rb"(?:[45][0-9][0-9]-[^\r\n]*\r\n)*[45][0-9][0-9] [^\r\n]*\r\n")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_KEYWORD = re.compile(r"[A-Z0-9][A-Z0-9\-]*")
_NEWLINE = re.compile(rb"\r\n|\r|\n")


def _rejection(e: Rejected) -> None:
    assert e.reply.permanent, f"a syntax error answered with {e.reply}"
    assert _REPLY.fullmatch(e.reply.wire()), f"malformed reply {e.reply.wire()!r}"


def _path(arg: str) -> None:
    for keyword, allow_null in (("FROM", True), ("TO", False)):
        try:
            path = parse_path(arg, keyword, allow_null=allow_null)
        except Rejected as e:
            _rejection(e)
            continue
        address = path.address
        assert address or allow_null, "the null path accepted as a recipient"
        assert not _CONTROL.search(address), f"control character in accepted address {address!r}"
        if address:
            local = address.rpartition("@")[0]
            assert len(address) <= MAX_PATH and len(local.encode()) <= MAX_LOCAL_PART
        for key, value in path.params.items():
            assert _KEYWORD.fullmatch(key), f"parameter name {key!r}"
            assert value is None or (value and " " not in value and "=" not in value)
        _params(path.params)


def _params(params: dict[str, str | None]) -> None:
    for call, value in ((parse_size, params.get("SIZE")), (parse_body, params.get("BODY"))):
        try:
            result = call(value)
        except Rejected as e:
            _rejection(e)
            continue
        if call is parse_size:
            assert isinstance(result, int) and result >= 0


def _data(data: bytes) -> None:
    try:
        message = unstuff(data)
    except Rejected as e:
        _rejection(e)
    else:
        assert data.count(b"\r") == data.count(b"\n") == data.count(b"\r\n"), "bare CR or LF accepted in DATA"
        assert len(message) <= len(data)
    # what a client sends for a message m (dot-stuffed, CRLF line ends) comes back as m
    text = data.decode("latin-1")
    wire = smtplib.quotedata(text).encode("latin-1")
    if wire and not wire.endswith(b"\r\n"):
        wire += b"\r\n"
    expected = _NEWLINE.sub(b"\r\n", data)
    if expected and not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert unstuff(wire) == expected, "unstuff does not invert dot-stuffing"


def check(data: bytes) -> None:
    try:
        command = parse_command(data)
    except Rejected as e:
        _rejection(e)
        _path(data.decode("utf-8", "replace"))
    else:
        assert command.verb.isascii() and command.verb.isalpha() and command.verb == command.verb.upper()
        assert not any(c in command.arg for c in "\r\n\x00")
        _path(command.arg)
    _data(data)


TARGET = Target("smtp_codec", check, __doc__ or "")

if __name__ == "__main__":
    module_main(TARGET.name)
