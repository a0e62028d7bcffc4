"""The POP3 codec without I/O: command lines, arguments, SASL PLAIN, multi-line responses.

Table-driven cases from RFC 1939/2449/4616/5034, then hypothesis: every parser
either returns or raises its declared error (CommandError), and dot-stuffing
round-trips.
"""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailstandby.pop3 import codec, codes
from mailstandby.pop3.codec import Command
from mailstandby.pop3.codes import CommandError, Reply

# -- command lines -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "want"),
    [
        (b"STAT\r\n", Command("STAT", "")),
        (b"stat\r\n", Command("STAT", "")),
        (b"LiSt 1\r\n", Command("LIST", "1")),
        (b"RETR 7\n", Command("RETR", "7")),  # a bare-LF line end is tolerated
        (b"TOP 1 10\r\n", Command("TOP", "1 10")),
        (b"PASS my secret \r\n", Command("PASS", "my secret ")),  # RFC 1939 §7: spaces belong to it
        (b"USER j\xc3\xb6rg@corp.test\r\n", Command("USER", "jörg@corp.test")),
        (b"CAPA", Command("CAPA", "")),
        (b"AUTH PLAIN =\r\n", Command("AUTH", "PLAIN =")),
    ],
)
def test_parse_command(wire: bytes, want: Command) -> None:
    assert codec.parse_command(wire) == want


@pytest.mark.parametrize(
    ("wire", "reply"),
    [
        (b"\r\n", codes.ERR_UNKNOWN),
        (b" STAT\r\n", codes.ERR_UNKNOWN),
        (b"ST\r\n", codes.ERR_UNKNOWN),  # RFC 2449 §4: keywords have 3 or 4 characters
        (b"STATS\r\n", codes.ERR_UNKNOWN),
        (b"ST4T\r\n", codes.ERR_UNKNOWN),
        (b"R\xc3\xa9TR 1\r\n", codes.ERR_UNKNOWN),  # letters, but not ASCII
        (b"RETR 1\x00\r\n", codes.ERR_NUL),  # RELIABILITY P10: refused, not truncated
        (b"\x00STAT\r\n", codes.ERR_NUL),
        (b"USER \xff\xfe\r\n", codes.ERR_BAD_UTF8),
        (b"LIST\r1\r\n", codes.ERR_UNKNOWN),  # a bare CR inside the line
        (b"LIST 1\nSTAT\r\n", codes.ERR_UNKNOWN),
    ],
)
def test_parse_command_refuses(wire: bytes, reply: Reply) -> None:
    with pytest.raises(CommandError) as e:
        codec.parse_command(wire)
    assert e.value.reply == reply and e.value.bad


@pytest.mark.parametrize(
    ("arg", "want"), [(["1"], [1]), (["007"], [7]), (["1", "2"], [1, 2]), ([" 3 "], [3]), (["4  5"], [4, 5])]
)
def test_args_split_on_spaces(arg: list[str], want: list[int]) -> None:
    assert [codec.parse_number(a) for a in Command("X", " ".join(arg)).args] == want


@pytest.mark.parametrize("text", ["", "-1", "+1", "1.0", "0x1", "\u0661", "1 ", "abc"])
def test_parse_number_syntax(text: str) -> None:
    with pytest.raises(CommandError) as e:
        codec.parse_number(text)
    assert e.value.reply == codes.ERR_SYNTAX and e.value.bad


def test_a_huge_number_is_no_such_message_not_a_syntax_error() -> None:
    with pytest.raises(CommandError) as e:
        codec.parse_number("9" * 200)
    assert e.value.reply == codes.ERR_NO_MESSAGE and not e.value.bad


@pytest.mark.parametrize(
    ("arg", "want"),
    [("1 0", (1, 0)), ("2 10", (2, 10)), ("1 99999999999", (1, 10**codec.MAX_NUMBER_DIGITS))],
)
def test_top_args(arg: str, want: tuple[int, int]) -> None:
    assert codec.top_args(Command("TOP", arg)) == want


@pytest.mark.parametrize("arg", ["", "1", "1 x", "1 2 3", "x 1", "1 -1"])
def test_top_args_syntax(arg: str) -> None:
    with pytest.raises(CommandError) as e:
        codec.top_args(Command("TOP", arg))
    assert e.value.reply == codes.ERR_SYNTAX


@pytest.mark.parametrize(("arg", "want"), [("", None), ("3", 3), (" 3", 3)])
def test_optional_number(arg: str, want: int | None) -> None:
    assert codec.optional_number(Command("LIST", arg)) == want


@pytest.mark.parametrize("arg", ["1 2", "x"])
def test_optional_number_syntax(arg: str) -> None:
    with pytest.raises(CommandError):
        codec.optional_number(Command("LIST", arg))


def test_no_args() -> None:
    codec.no_args(Command("STAT", ""))
    codec.no_args(Command("STAT", "  "))
    with pytest.raises(CommandError) as e:
        codec.no_args(Command("STAT", "x"))
    assert e.value.reply == codes.ERR_SYNTAX


# -- SASL PLAIN ----------------------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (b"\x00alice\x00secret", ("alice", "secret")),
        (b"alice\x00alice\x00secret", ("alice", "secret")),  # authzid equal to authcid is fine
        (b"\x00alice\x00pass with spaces", ("alice", "pass with spaces")),
        ("\x00jörg\x00pässword".encode(), ("jörg", "pässword")),
    ],
)
def test_plain(raw: bytes, want: tuple[str, str]) -> None:
    assert codec.parse_plain(codec.decode_sasl_response(b64(raw))) == want


@pytest.mark.parametrize(
    "raw",
    [
        b"bob\x00alice\x00secret",  # RELIABILITY A4: acting as another user
        b"\x00alice\x00",  # an empty password never succeeds
        b"\x00\x00secret",
        b"alice\x00secret",
        b"\x00alice\x00secret\x00more",
        b"\x00al\xffice\x00secret",
        b"",
    ],
)
def test_plain_refused(raw: bytes) -> None:
    with pytest.raises(CommandError) as e:
        codec.parse_plain(raw)
    assert e.value.reply == codes.ERR_AUTH_FAILED
    assert "secret" not in str(e.value) and "secret" not in e.value.detail


def test_empty_initial_response() -> None:
    assert codec.decode_sasl_response("=") == b""  # RFC 5034 §4


@pytest.mark.parametrize("text", ["", "*x", "abc", "YWJj=", "====", "YW Jj", "YWJj\t", "A===", "ÿÿÿÿ"])
def test_bad_base64(text: str) -> None:
    with pytest.raises(CommandError) as e:
        codec.decode_sasl_response(text)
    assert e.value.reply == codes.ERR_SYNTAX


# -- multi-line responses --------------------------------------------------------------


def test_multiline_stuffs_and_terminates() -> None:
    assert codec.multiline(codes.OK_CAPA, ["TOP", ".odd", "UIDL"]) == (
        b"+OK Capability list follows\r\nTOP\r\n..odd\r\nUIDL\r\n.\r\n"
    )
    assert codec.multiline(codes.OK, []) == b"+OK\r\n.\r\n"


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        (b"Subject: x\r\n\r\nhello\r\n", b"Subject: x\r\n\r\nhello\r\n.\r\n"),
        (b"a\r\n.b\r\n", b"a\r\n..b\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"..\r\n", b"...\r\n.\r\n"),
        (b"a\nb\n", b"a\r\nb\r\n.\r\n"),  # bare LF normalised
        (b"a\rb", b"a\r\nb\r\n.\r\n"),  # bare CR normalised, final CRLF added
        (b"a\n.\n", b"a\r\n..\r\n.\r\n"),  # a would-be terminator made of bare LFs
        (b"a\r\r\nb\r\n", b"a\r\n\r\nb\r\n.\r\n"),
        (b"", b".\r\n"),
        (b"no line end", b"no line end\r\n.\r\n"),
    ],
)
def test_message(data: bytes, wire: bytes) -> None:
    assert codec.message(data) == wire


MSG = b"From: a@b.test\r\nSubject: s\r\n\r\nline 1\r\n.line 2\r\nline 3\r\n"


@pytest.mark.parametrize(
    ("data", "lines", "wire"),
    [
        (MSG, 0, b"From: a@b.test\r\nSubject: s\r\n\r\n.\r\n"),
        (MSG, 1, b"From: a@b.test\r\nSubject: s\r\n\r\nline 1\r\n.\r\n"),
        (MSG, 2, b"From: a@b.test\r\nSubject: s\r\n\r\nline 1\r\n..line 2\r\n.\r\n"),
        (MSG, 3, codec.message(MSG)),
        (MSG, 10**9, codec.message(MSG)),
        (b"Subject: only a header\r\n", 5, b"Subject: only a header\r\n.\r\n"),
        (b"\r\nbody only\r\n", 0, b"\r\n.\r\n"),
        (b"\r\nbody only\r\n", 1, b"\r\nbody only\r\n.\r\n"),
        (b"Subject: s\n\nbody\nmore\n", 1, b"Subject: s\r\n\r\nbody\r\n.\r\n"),
    ],
)
def test_top(data: bytes, lines: int, wire: bytes) -> None:
    assert codec.top(data, lines) == wire


# -- hypothesis smoke --------------------------------------------------------------


def unstuff(wire: bytes) -> bytes:
    assert wire.endswith(b".\r\n")
    body = wire[:-3]
    lines = body.split(b"\r\n")[:-1] if body else []
    for line in lines:
        assert line != b"." and b"\r" not in line and b"\n" not in line
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)


@given(st.binary(max_size=300))
def test_parse_command_returns_or_refuses(line: bytes) -> None:
    try:
        cmd = codec.parse_command(line)
    except CommandError as e:
        assert isinstance(e.reply, Reply) and not e.reply.ok
        return
    assert 3 <= len(cmd.keyword) <= 4 and cmd.keyword.isupper() and cmd.keyword.isascii()


@given(st.text(max_size=60))
def test_argument_parsers_return_or_refuse(arg: str) -> None:
    for parse in (codec.optional_number, codec.one_number, codec.top_args, codec.no_args):
        try:
            parse(Command("X", arg))
        except CommandError as e:
            assert not e.reply.ok


@given(st.text(max_size=80))
def test_sasl_decoding_returns_or_refuses(text: str) -> None:
    try:
        user, password = codec.parse_plain(codec.decode_sasl_response(text))
    except CommandError as e:
        assert not e.reply.ok
        return
    assert user and password


@given(st.binary(max_size=400))
def test_message_round_trips_and_has_one_terminator(data: bytes) -> None:
    wire = codec.message(data)
    assert unstuff(wire) == codec.normalize(data)
    assert codec.normalize(data) == re.sub(rb"\r\n|\r|\n", b"\r\n", data) + (
        b"\r\n" if data and not re.search(rb"(\r\n|\r|\n)\Z", data) else b""
    )


@given(st.binary(max_size=400), st.integers(min_value=0, max_value=20))
def test_top_is_a_prefix_of_the_message(data: bytes, lines: int) -> None:
    whole, part = unstuff(codec.message(data)), unstuff(codec.top(data, lines))
    assert whole.startswith(part)
