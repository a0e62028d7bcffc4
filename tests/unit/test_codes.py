"""Every named SMTP reply agrees with itself: name, code and enhanced status (STYLE §3)."""

from __future__ import annotations

import re

import pytest

from mailstandby.core.reply import Reply
from mailstandby.smtp import codes

REPLIES: dict[str, Reply] = {name: value for name, value in vars(codes).items() if isinstance(value, Reply)}
_NAME = re.compile(r"^C(\d{3})_[A-Z0-9]+(?:_[A-Z0-9]+)*$")
_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")  # RFC 3463 §2


def test_the_module_has_replies() -> None:
    # guards the parametrized tests below against silently checking nothing
    assert len(REPLIES) >= 30
    assert all(not name.startswith("_") for name in REPLIES)


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_name_matches_code(name: str) -> None:
    m = _NAME.match(name)
    assert m is not None, f"{name}: names are C<code>_WHAT"
    assert int(m.group(1)) == REPLIES[name].code


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_enhanced_status_class_matches_code_class(name: str) -> None:
    r = REPLIES[name]
    assert 200 <= r.code <= 559, f"{name}: {r.code} is not an SMTP reply code"
    if r.status == "":
        assert r.code == 354, f"{name}: only the 354 intermediate reply may lack an enhanced status"
        return
    m = _STATUS.match(r.status)
    assert m is not None, f"{name}: {r.status!r} is not class.subject.detail"
    assert m.group(1) == str(r.code)[0], f"{name}: {r.code} with {r.status}"


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_text_is_one_safe_line(name: str) -> None:
    r = REPLIES[name]
    assert r.text and r.text.isprintable() and r.text.isascii(), name
    wire = r.wire()
    assert wire.endswith(b"\r\n") and wire.count(b"\r\n") == 1
    assert len(wire) <= 512  # RFC 5321 §4.5.3.1.5 reply line limit


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_wire_form(name: str) -> None:
    r = REPLIES[name]
    prefix = f"{r.code} {r.status} " if r.status else f"{r.code} "
    assert r.wire() == f"{prefix}{r.text}\r\n".encode()
    assert r.wire(enhanced=False) == f"{r.code} {r.text}\r\n".encode()


@pytest.mark.parametrize(
    ("name", "code", "status"),
    [
        # the contract RELIABILITY.md and DESIGN.md state, code by code
        ("C550_UNKNOWN_USER", 550, "5.1.1"),
        ("C554_RELAY_DENIED", 554, "5.7.1"),
        ("C550_BARE_NEWLINE", 550, "5.5.2"),
        ("C554_SYNC", 554, "5.5.0"),
        ("C452_NO_SPACE", 452, "4.3.1"),
        ("C451_LOCAL_ERROR", 451, "4.3.0"),
        ("C552_TOO_BIG", 552, "5.3.4"),
        ("C452_TOO_MANY_RCPTS", 452, "4.5.3"),
        ("C421_TOO_MANY_ERRORS", 421, "4.7.0"),
        ("C421_TIMEOUT", 421, "4.4.2"),
        ("C500_LINE_TOO_LONG", 500, "5.5.6"),
        ("C500_BAD_UTF8", 500, "5.5.2"),
        ("C553_NEED_SMTPUTF8", 553, "5.6.7"),
        ("C503_NEED_HELO", 503, "5.5.1"),
        ("C503_NESTED_MAIL", 503, "5.5.1"),
        ("C220_READY_TLS", 220, "2.0.0"),
    ],
)
def test_documented_codes(name: str, code: int, status: str) -> None:
    assert (REPLIES[name].code, REPLIES[name].status) == (code, status)


def test_multiline_wire_form() -> None:
    r = Reply(250, "", "mx.test\nSIZE 10\nPIPELINING")
    assert r.wire() == b"250-mx.test\r\n250-SIZE 10\r\n250 PIPELINING\r\n"
    r = Reply(550, "5.1.1", "one\ntwo")
    assert r.wire() == b"550-5.1.1 one\r\n550 5.1.1 two\r\n"
    assert r.wire(enhanced=False) == b"550-one\r\n550 two\r\n"


def test_permanent_and_transient() -> None:
    assert codes.C550_UNKNOWN_USER.permanent and not codes.C550_UNKNOWN_USER.transient
    assert codes.C451_LOCAL_ERROR.transient and not codes.C451_LOCAL_ERROR.permanent
    assert not codes.C250_OK.permanent and not codes.C250_OK.transient
