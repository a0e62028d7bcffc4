"""Every named POP3 reply agrees with its name: +OK/-ERR and the RFC 2449/3206 response code."""

from __future__ import annotations

import re

import pytest

from mailstandby.pop3 import codes
from mailstandby.pop3.codes import Reply

REPLIES: dict[str, Reply] = {name: value for name, value in vars(codes).items() if isinstance(value, Reply)}
CODE_PREFIXES = {"AUTH": "AUTH", "SYS_TEMP": "SYS/TEMP", "SYS_PERM": "SYS/PERM", "IN_USE": "IN-USE"}
_NAME = re.compile(r"^(OK|ERR)(?:_[A-Z0-9]+)*$")


def test_the_module_has_replies() -> None:
    assert len(REPLIES) >= 25


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_name_matches_status_and_code(name: str) -> None:
    r = REPLIES[name]
    m = _NAME.match(name)
    assert m is not None, f"{name}: names are OK_WHAT or ERR_[CODE_]WHAT"
    assert r.ok == (m.group(1) == "OK")
    rest = name.removeprefix("ERR_")
    expected = next((code for prefix, code in CODE_PREFIXES.items() if rest.startswith(prefix + "_")), "")
    assert r.code == (expected if not r.ok else ""), f"{name}: code {r.code!r}"


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_wire_form_is_one_short_line(name: str) -> None:
    wire = REPLIES[name].wire()
    assert wire.endswith(b"\r\n") and wire.count(b"\r\n") == 1 and len(wire) <= 512  # RFC 2449 §4
    assert wire.isascii() and wire[:-2].decode().isprintable()
    assert wire.startswith(b"+OK") if REPLIES[name].ok else wire.startswith(b"-ERR")


def test_wire_forms() -> None:
    assert codes.OK.wire() == b"+OK\r\n"
    assert codes.ERR_AUTH_FAILED.wire() == b"-ERR [AUTH] Authentication failed.\r\n"
    assert codes.ERR_SHUTTING_DOWN.wire() == b"-ERR server shutting down\r\n"
    assert codes.ok_stat(2, 320).wire() == b"+OK 2 320\r\n"  # RFC 1939 §5: exactly this form
    assert codes.ERR_AUTH_PLAINTEXT.wire() == (
        b"-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n"
    )  # RELIABILITY A1 (Dovecot's text)
