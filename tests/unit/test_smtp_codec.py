"""The SMTP codec alone: command lines, paths, parameters and message data.

Table-driven, no I/O. Every malformed input must raise `Rejected` carrying
the reply the session will send; anything else escaping a parser is a bug
(RELIABILITY P15). The DATA cases follow RELIABILITY P1 (SMTP smuggling).
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstandby.core.model import BodyType
from mailstandby.core.reply import Rejected, Reply
from mailstandby.smtp import codes
from mailstandby.smtp.codec import (
    MAX_LOCAL_PART,
    Command,
    ehlo_keywords,
    parse_body,
    parse_command,
    parse_params,
    parse_path,
    parse_size,
    unstuff,
    valid_mailbox,
)


def rejected_with(excinfo: pytest.ExceptionInfo[Rejected]) -> Reply:
    return excinfo.value.reply


# -- parse_command --------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "verb", "arg"),
    [
        (b"NOOP\r\n", "NOOP", ""),
        (b"NOOP", "NOOP", ""),
        (b"noop\r\n", "NOOP", ""),
        (b"NoOp\r\n", "NOOP", ""),
        (b"ehlo client.test\r\n", "EHLO", "client.test"),
        (b"mail FROM:<a@b.test> SIZE=10\r\n", "MAIL", "FROM:<a@b.test> SIZE=10"),
        (b"  RCPT   TO:<a@b.test>  \r\n", "RCPT", "TO:<a@b.test>"),
        (b"QUIT\n", "QUIT", ""),  # bare LF ends a command line (lenient, like Postfix)
        ("MAIL FROM:<üser@b.test> SMTPUTF8\r\n".encode(), "MAIL", "FROM:<üser@b.test> SMTPUTF8"),
    ],
)
def test_parse_command_accepts(line: bytes, verb: str, arg: str) -> None:
    assert parse_command(line) == Command(verb, arg)


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"MAIL FROM:<a\x00b@x.test>\r\n", codes.C500_NUL),
        (b"\x00NOOP\r\n", codes.C500_NUL),
        (b"NOOP\x00\r\n", codes.C500_NUL),
        (b"MAIL FROM:<\xff\xfe@x.test>\r\n", codes.C500_BAD_UTF8),
        (b"NO\xc3OP\r\n", codes.C500_BAD_UTF8),
        (b"MAIL FROM:<\xed\xa0\x80@x.test>\r\n", codes.C500_BAD_UTF8),  # UTF-8-encoded surrogate
        (b"NOOP\rRSET\r\n", codes.C500_UNKNOWN),  # a bare CR must not split or hide a command
        (b"NOOP\nRSET\r\n", codes.C500_UNKNOWN),
        (b"\r\n", codes.C500_UNKNOWN),
        (b"   \r\n", codes.C500_UNKNOWN),
        (b"M@IL FROM:<a@b.test>\r\n", codes.C500_UNKNOWN),
        (b"MAIL2 FROM:<a@b.test>\r\n", codes.C500_UNKNOWN),
        ("MÄIL FROM:<a@b.test>\r\n".encode(), codes.C500_UNKNOWN),
    ],
)
def test_parse_command_rejects(line: bytes, reply: Reply) -> None:
    with pytest.raises(Rejected) as e:
        parse_command(line)
    assert rejected_with(e) == reply


def test_nul_and_utf8_replies_are_500_5_5_2() -> None:
    # RELIABILITY P9/P10: the exact codes a client sees
    for r in (codes.C500_NUL, codes.C500_BAD_UTF8):
        assert (r.code, r.status) == (500, "5.5.2")


# -- parse_path -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "keyword", "address"),
    [
        ("FROM:<>", "FROM", ""),
        ("FROM:<a@b.test>", "FROM", "a@b.test"),
        ("from:<a@b.test>", "FROM", "a@b.test"),
        ("From: <a@b.test>", "FROM", "a@b.test"),  # a space after the colon is common and tolerated
        ("TO:<Alice@Corp.Test>", "TO", "Alice@Corp.Test"),  # kept exactly as received
        ('TO:<"john doe"@b.test>', "TO", '"john doe"@b.test'),
        ('TO:<"a>b"@b.test>', "TO", '"a>b"@b.test'),  # '>' inside quotes does not end the path
        ('TO:<"a\\"b"@b.test>', "TO", '"a\\"b"@b.test'),  # quoted-pair
        ("TO:<@relay.test:user@b.test>", "TO", "user@b.test"),  # source route ignored (§4.1.1.3)
        ("TO:<@r1.test,@r2.test:user@b.test>", "TO", "user@b.test"),
        ("TO:<user@[127.0.0.1]>", "TO", "user@[127.0.0.1]"),
        ("TO:<user@[IPv6:2001:db8::1]>", "TO", "user@[IPv6:2001:db8::1]"),
        ("TO:<first.last+tag@sub.b-c.test>", "TO", "first.last+tag@sub.b-c.test"),
        ("TO:<üser@bücher.test>", "TO", "üser@bücher.test"),  # RFC 6531 (the SMTPUTF8 check is the session's)
        ("TO:<用户@例子.测试>", "TO", "用户@例子.测试"),
    ],
)
def test_parse_path_accepts(arg: str, keyword: str, address: str) -> None:
    assert parse_path(arg, keyword, allow_null=keyword == "FROM").address == address


@pytest.mark.parametrize(
    ("arg", "keyword", "reply"),
    [
        ("TO:<>", "TO", codes.C501_BAD_RCPT_ADDRESS),  # no null forward-path
        ("FROM:a@b.test", "FROM", codes.C501_BAD_ADDRESS),  # missing brackets
        ("TO:a@b.test", "TO", codes.C501_BAD_RCPT_ADDRESS),
        ("FROM:<a@b.test", "FROM", codes.C501_BAD_ADDRESS),
        ("FROM:a@b.test>", "FROM", codes.C501_BAD_ADDRESS),
        ('TO:<"unterminated@b.test>', "TO", codes.C501_BAD_RCPT_ADDRESS),
        ("FROM<a@b.test>", "FROM", codes.C501_SYNTAX),  # no colon
        ("FROM", "FROM", codes.C501_SYNTAX),
        ("", "FROM", codes.C501_SYNTAX),
        ("TO:<a@b.test>", "FROM", codes.C501_SYNTAX),  # wrong keyword
        ("FROMAGE:<a@b.test>", "FROM", codes.C501_SYNTAX),
        ("FROM:<a@b.test>SIZE=10", "FROM", codes.C501_SYNTAX),  # parameters need a space
        ('TO:<"">@b.test>', "TO", codes.C501_SYNTAX),  # the path ends at the first unquoted '>'
        ("FROM:<a@b.test> SIZE=1=2", "FROM", codes.C501_SYNTAX),
        ("FROM:<a@b.test> =x", "FROM", codes.C501_SYNTAX),
        ("FROM:<a@b.test> SIZE=1 size=2", "FROM", codes.C501_SYNTAX),  # duplicate parameter
        ("TO:<a>", "TO", codes.C501_BAD_RCPT_ADDRESS),  # no domain
        ("TO:<@b.test>", "TO", codes.C501_BAD_RCPT_ADDRESS),  # no local part
        ("TO:<a@>", "TO", codes.C501_BAD_RCPT_ADDRESS),
        ("TO:<a@@b.test>", "TO", codes.C501_BAD_RCPT_ADDRESS),
        ("TO:<a b@b.test>", "TO", codes.C501_BAD_RCPT_ADDRESS),
        ("TO:<a..b@b.test>", "TO", codes.C501_BAD_RCPT_ADDRESS),
        ("TO:<.a@b.test>", "TO", codes.C501_BAD_RCPT_ADDRESS),
        ("TO:<a.@b.test>", "TO", codes.C501_BAD_RCPT_ADDRESS),
        ("TO:<a@-b.test>", "TO", codes.C501_BAD_RCPT_ADDRESS),
        ("TO:<a@b-.test>", "TO", codes.C501_BAD_RCPT_ADDRESS),
        ("TO:<a@b..test>", "TO", codes.C501_BAD_RCPT_ADDRESS),
        ("TO:<a@b_c.test>", "TO", codes.C501_BAD_RCPT_ADDRESS),
        ("TO:<a@b.test.>", "TO", codes.C501_BAD_RCPT_ADDRESS),
        ("TO:<a@[127.0.0.1>", "TO", codes.C501_BAD_RCPT_ADDRESS),
        ("TO:<a@[foo]>", "TO", codes.C501_BAD_RCPT_ADDRESS),
        ("TO:<a\x7f@b.test>", "TO", codes.C501_BAD_RCPT_ADDRESS),
        ("TO:<a\tb@b.test>", "TO", codes.C501_BAD_RCPT_ADDRESS),
        ("TO:<@relay.test:>", "TO", codes.C501_BAD_RCPT_ADDRESS),  # a route to nothing
        ("FROM:<@relay.test:>", "FROM", codes.C501_BAD_ADDRESS),  # ... is not the null sender either
        ("TO:<@relay.test>", "TO", codes.C501_BAD_RCPT_ADDRESS),
    ],
)
def test_parse_path_rejects(arg: str, keyword: str, reply: Reply) -> None:
    with pytest.raises(Rejected) as e:
        parse_path(arg, keyword, allow_null=keyword == "FROM")
    assert rejected_with(e) == reply


def test_parse_path_returns_params() -> None:
    p = parse_path("FROM:<a@b.test> SIZE=100 body=8BITMIME SMTPUTF8", "FROM", allow_null=True)
    assert p.address == "a@b.test"
    assert p.params == {"SIZE": "100", "BODY": "8BITMIME", "SMTPUTF8": None}


def test_parse_path_null_sender_with_params() -> None:
    p = parse_path("FROM:<> SIZE=5", "FROM", allow_null=True)
    assert (p.address, p.params) == ("", {"SIZE": "5"})


@pytest.mark.parametrize(
    ("local", "domain", "ok"),
    [
        ("a" * MAX_LOCAL_PART, "b.test", True),
        ("a" * (MAX_LOCAL_PART + 1), "b.test", False),
        ("ü" * (MAX_LOCAL_PART // 2), "b.test", True),  # the limit is in octets: 64
        ("ü" * (MAX_LOCAL_PART // 2 + 1), "b.test", False),  # 66 octets
        ("a", ".".join(["d" * 63] * 3) + ".test", True),  # 197-octet domain
        ("a", ".".join(["d" * 63] * 4), False),  # 255-octet domain: the 256-octet path limit is passed
        ("a", "d" * 64 + ".test", True),  # label length is not checked (only whole-domain length)
        ("a", ".".join(["d"] * 200), False),  # 399-octet domain
    ],
)
def test_parse_path_length_limits(local: str, domain: str, ok: bool) -> None:
    arg = f"TO:<{local}@{domain}>"
    if ok:
        assert parse_path(arg, "TO", allow_null=False).address == f"{local}@{domain}"
    else:
        with pytest.raises(Rejected) as e:
            parse_path(arg, "TO", allow_null=False)
        assert rejected_with(e) == codes.C501_BAD_RCPT_ADDRESS


def test_valid_mailbox_rejects_backtracking_bait_quickly() -> None:
    # Inputs just under the path limit that make naive address regexes backtrack.
    bait = ["a" * 250 + "@", "a@" + "a-" * 126 + "!", "a@" + "a." * 126 + "-", '"' + "\\" * 250 + "@b"]
    started = time.perf_counter()
    for _ in range(100):
        for text in bait:
            assert valid_mailbox(text) is False
    assert time.perf_counter() - started < 2.0  # catastrophic backtracking takes seconds per call


# -- parse_params / parse_size / parse_body ---------------------------------------


@pytest.mark.parametrize(
    ("text", "params"),
    [
        ("", {}),
        ("   ", {}),
        ("SIZE=10", {"SIZE": "10"}),
        ("size=10 Body=7BIT", {"SIZE": "10", "BODY": "7BIT"}),
        ("SMTPUTF8", {"SMTPUTF8": None}),
        ("X-FOO=a+2Bb", {"X-FOO": "a+2Bb"}),
        ("  SIZE=1   BODY=8BITMIME  ", {"SIZE": "1", "BODY": "8BITMIME"}),
    ],
)
def test_parse_params_accepts(text: str, params: dict[str, str | None]) -> None:
    assert parse_params(text) == params


@pytest.mark.parametrize(
    "text",
    [
        "=10",
        "-X=1",  # keyword must start with a letter or digit
        "SIZE=",  # empty value
        "SIZE=1=2",
        "SIZE=a\x00b",
        "SIZE=ä",  # esmtp-value is printable US-ASCII
        "SIZE=1 SIZE=2",
        "SIZE=1 size=2",
        "K_Y=1",
    ],
)
def test_parse_params_rejects(text: str) -> None:
    with pytest.raises(Rejected) as e:
        parse_params(text)
    assert rejected_with(e) == codes.C501_SYNTAX


@pytest.mark.parametrize(("value", "size"), [("0", 0), ("65536", 65536), ("0012", 12)])
def test_parse_size_accepts(value: str, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", [None, "", "-1", "1.5", "ten", "1" * 21, "١٢", "²"])
def test_parse_size_rejects(value: str | None) -> None:
    with pytest.raises(Rejected) as e:
        parse_size(value)
    assert rejected_with(e) == codes.C501_BAD_SIZE


@pytest.mark.parametrize(
    ("value", "body"),
    [("7BIT", BodyType.SEVEN_BIT), ("8bitmime", BodyType.EIGHT_BIT), ("8BITMIME", BodyType.EIGHT_BIT)],
)
def test_parse_body_accepts(value: str, body: BodyType) -> None:
    assert parse_body(value) is body


@pytest.mark.parametrize("value", [None, "", "BINARYMIME", "8BIT"])
def test_parse_body_rejects(value: str | None) -> None:
    with pytest.raises(Rejected) as e:
        parse_body(value)
    assert rejected_with(e) == codes.C501_SYNTAX


def test_ehlo_keywords() -> None:
    words = ehlo_keywords(max_size=65536, starttls=True)
    assert "SIZE 65536" in words
    assert {"8BITMIME", "PIPELINING", "SMTPUTF8", "ENHANCEDSTATUSCODES", "STARTTLS"} <= set(words)
    assert "STARTTLS" not in ehlo_keywords(max_size=65536, starttls=False)


# -- unstuff (message data) -------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", b""),
        (b"hello\r\n", b"hello\r\n"),
        (b"a\r\nb\r\n", b"a\r\nb\r\n"),
        (b"..leading\r\n", b".leading\r\n"),  # first line stuffed
        (b".x\r\n", b"x\r\n"),  # RFC 5321 §4.5.2: drop the first dot of any line that starts with one
        (b"a\r\n..\r\nb\r\n", b"a\r\n.\r\nb\r\n"),  # a lone dot line, stuffed
        (b"a\r\n...b\r\n", b"a\r\n..b\r\n"),  # only one dot removed
        (b"a\r\n..\r\n..\r\n", b"a\r\n.\r\n.\r\n"),
        (b"a.\r\n.b\r\n", b"a.\r\nb\r\n"),  # dots not at a line start stay
        (b"\r\n", b"\r\n"),
        (b"\x00\r\n", b"\x00\r\n"),  # NUL in data is stored verbatim (policy, RELIABILITY P10)
        (bytes(range(0x80, 0x100)) + b"\r\n", bytes(range(0x80, 0x100)) + b"\r\n"),  # 8-bit passes
    ],
)
def test_unstuff(data: bytes, message: bytes) -> None:
    assert unstuff(data) == message


@pytest.mark.parametrize(
    "data",
    [
        b"a\nb\r\n",  # bare LF
        b"a\rb\r\n",  # bare CR
        b"a\n",
        b"a\r",
        b"a\r\r\n",
        b"a\r\n\n",
        b"a\n\r\n",
        b"a\n\rb\r\n",  # LF CR is not CRLF
        b"\n",
        b"\r",
    ],
)
def test_unstuff_rejects_bare_newlines(data: bytes) -> None:
    with pytest.raises(Rejected) as e:
        unstuff(data)
    assert rejected_with(e) == codes.C550_BARE_NEWLINE
    assert (e.value.reply.code, e.value.reply.status) == (550, "5.5.2")


# RELIABILITY P1: each fake end-of-data, then a smuggled transaction. What the
# server hands to unstuff is everything up to the CRLF before the real
# terminator, so the fake one is inside `data`.
SMUGGLED = b"MAIL FROM:<ceo@corp.test>\r\nRCPT TO:<bob@corp.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nwire money\r\n"
FAKE_TERMINATORS = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r\n.\r", b"\r\n\x00.\r\n"]


@pytest.mark.parametrize("fake", FAKE_TERMINATORS, ids=repr)
def test_unstuff_smuggling_sequences(fake: bytes) -> None:
    data = b"Subject: hi\r\n\r\nhello" + fake + SMUGGLED
    if fake == b"\r\n\x00.\r\n":
        # No bare CR or LF: the NUL line is ordinary content and the smuggled
        # commands stay message text, byte for byte.
        assert unstuff(data) == data
    else:
        with pytest.raises(Rejected) as e:
            unstuff(data)
        assert rejected_with(e) == codes.C550_BARE_NEWLINE


_LINE = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@given(st.lists(_LINE, max_size=20))
def test_unstuff_inverts_dot_stuffing(lines: list[bytes]) -> None:
    message = b"".join(line + b"\r\n" for line in lines)
    stuffed = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
    assert unstuff(stuffed) == message


# -- fuzz smoke (RELIABILITY P15): return or raise Rejected, nothing else ----------


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_fuzz_parse_command(data: bytes) -> None:
    try:
        cmd = parse_command(data)
    except Rejected:
        return
    assert cmd.verb.isascii() and cmd.verb.isalpha() and cmd.verb == cmd.verb.upper()
    assert "\x00" not in cmd.arg and "\r" not in cmd.arg and "\n" not in cmd.arg


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_fuzz_unstuff(data: bytes) -> None:
    try:
        message = unstuff(data)
    except Rejected as e:
        assert e.reply == codes.C550_BARE_NEWLINE
        return
    assert len(message) <= len(data)
    assert message.count(b"\r") == message.count(b"\n") == message.count(b"\r\n")


def _check_path(arg: str) -> None:
    for keyword in ("FROM", "TO"):
        try:
            path = parse_path(arg, keyword, allow_null=keyword == "FROM")
        except Rejected:
            continue
        assert path.address == "" or valid_mailbox(path.address)
        assert path.address or keyword == "FROM"


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_fuzz_parse_path_binary(data: bytes) -> None:
    _check_path(data.decode("utf-8", "replace"))


# Structured input reaches past the keyword check into the address grammar.
_PATH_CHARS = st.sampled_from([*'ab.@<>:,"\\ []-=+ü\x00\t', "IPv6:", "SIZE=", "FROM:<", "TO:<", "@r.test:"])


@settings(max_examples=500)
@given(st.sampled_from(["FROM:<", "TO:<", "FROM: <", "TO:<@r.test:"]), st.lists(_PATH_CHARS, max_size=40))
def test_fuzz_parse_path_structured(prefix: str, parts: list[str]) -> None:
    _check_path(prefix + "".join(parts))


# -- RFC 3461 parameters, RFC 3030 BDAT, HELO names, hop count ----------------------------------

from mailstandby.smtp.codec import (  # noqa: E402
    count_received,
    dsn_mail_params,
    dsn_rcpt_params,
    parse_bdat,
    parse_envid,
    parse_notify,
    parse_orcpt,
    parse_ret,
    valid_helo_name,
    xtext_decode,
    xtext_encode,
)


@pytest.mark.parametrize(
    ("text", "plain"), [("abc", "abc"), ("a+2Bb", "a+b"), ("a+3Db+20c", "a=b c"), ("+E2+82+AC", "\u00e2\u0082\u00ac")]
)
def test_xtext_decode(text: str, plain: str) -> None:
    assert xtext_decode(text) == plain


@pytest.mark.parametrize("text", ["a+", "a+2", "a+2b", "a=b", "a b", "a\x7f", "+zz"])
def test_xtext_decode_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        xtext_decode(text)


@pytest.mark.parametrize("plain", ["a@b.test", "a+b=c d", '"q"@x', "~!"])
def test_xtext_round_trip(plain: str) -> None:
    assert xtext_decode(xtext_encode(plain)) == plain


@pytest.mark.parametrize("text", ["a+2Bb", "+E2+82+AC", "x+3D+20y"])
def test_xtext_encodes_what_it_decoded_as_it_was(text: str) -> None:
    assert xtext_encode(xtext_decode(text)) == text  # a stored ORCPT goes on to the next hop unchanged


def test_dsn_parameters_for_the_next_hop() -> None:
    assert dsn_mail_params("", "") == []
    assert dsn_mail_params("FULL", "a b+c") == ["RET=FULL", "ENVID=a+20b+2Bc"]
    assert dsn_rcpt_params("", "") == []
    assert dsn_rcpt_params("DELAY,FAILURE", "rfc822;a+b@c.test") == [
        "NOTIFY=DELAY,FAILURE",
        "ORCPT=rfc822;a+2Bb@c.test",
    ]


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("NEVER", {"NEVER"}),
        ("never", {"NEVER"}),
        ("SUCCESS", {"SUCCESS"}),
        ("success,Failure,DELAY", {"SUCCESS", "FAILURE", "DELAY"}),
    ],
)
def test_parse_notify(value: str, want: set[str]) -> None:
    assert parse_notify(value) == want


@pytest.mark.parametrize("value", [None, "", "NEVER,SUCCESS", "SUCCESS,SUCCESS", "SOMETIMES", "SUCCESS,", ",DELAY"])
def test_parse_notify_rejects(value: str | None) -> None:
    with pytest.raises(Rejected) as e:
        parse_notify(value)
    assert rejected_with(e) == codes.C501_BAD_NOTIFY


def test_parse_orcpt_ret_envid() -> None:
    assert parse_orcpt("RFC822;a+2Bb@corp.test") == "rfc822;a+b@corp.test"
    assert parse_ret("hdrs") == "HDRS" and parse_ret("FULL") == "FULL"
    assert parse_envid("QQ+2B1") == "QQ+1"
    for bad in (None, "", "rfc822", ";a@b", "rfc 822;a@b", "rfc822;"):
        with pytest.raises(Rejected):
            parse_orcpt(bad)
    for bad in (None, "", "PART"):
        with pytest.raises(Rejected):
            parse_ret(bad)
    for bad in (None, "", "x" * 101, "a+0Ab"):
        with pytest.raises(Rejected):
            parse_envid(bad)


def test_parse_bdat() -> None:
    assert (parse_bdat("0 LAST").size, parse_bdat("0 LAST").last) == (0, True)
    assert (parse_bdat("123").size, parse_bdat("123").last) == (123, False)
    assert parse_bdat("5 last").last
    for bad in ("", "x", "-1", "1 2", "1 LAST x", "1  LAST", "\u0661", "1" * 21):
        with pytest.raises(Rejected) as e:
            parse_bdat(bad)
        assert rejected_with(e) == codes.C521_BDAT_SYNTAX


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("mx.example.test", True),
        ("mx.example.test.", True),
        ("under_score", True),
        ("[192.0.2.1]", True),
        ("[IPv6:::1]", True),
        ("b\u00fccher.test", True),
        ("", False),
        ("a..b", False),
        ("a-.b", False),
        ("a/b", False),
        ("x" * 64, False),
        (("a." * 128) + "a", False),
    ],
)
def test_valid_helo_name(name: str, ok: bool) -> None:
    assert valid_helo_name(name) is ok


def test_count_received() -> None:
    head = b"Received: a\r\nreceived : b\r\n\tReceived: folded\r\nX-Received: c\r\nSubject: s\r\n\r\nReceived: body\r\n"
    assert count_received(head, 50) == 2
    assert count_received(b"Received: a\r\n" * 10, 3) == 3
    assert count_received(b"\r\nReceived: body\r\n", 50) == 0
