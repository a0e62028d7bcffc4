"""IMAP output helpers and modified UTF-7, without I/O.

Round trips are checked against our own lexer (`syntax.Cursor`): whatever the
server writes as a string must read back as the same octets (RELIABILITY P15).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstandby.imap import mutf7, responses
from mailstandby.imap.syntax import Cursor

# -- modified UTF-7 (RFC 3501 §5.1.3) -------------------------------------------------
VECTORS = [
    ("INBOX", "INBOX"),
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # the RFC 3501 example
    ("Entwürfe", "Entw&APw-rfe"),
    ("A&B", "A&-B"),
    ("&", "&-"),
    ("Gelöschte Elemente", "Gel&APY-schte Elemente"),
    ("Отправленные", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
    ("😀", "&2D3eAA-"),  # outside the BMP: a surrogate pair
    ("tab\there", "tab&AAk-here"),  # controls are encoded too (RFC 3501: only 0x20-0x7E are direct)
    ("", ""),
]


@pytest.mark.parametrize(("text", "wire"), VECTORS)
def test_mutf7_vectors(text: str, wire: str) -> None:
    assert mutf7.encode(text) == wire
    assert mutf7.decode(wire) == text
    assert mutf7.decode(wire.encode("ascii")) == text


@pytest.mark.parametrize(
    "wire",
    [
        "&",  # unterminated
        "&AGE",  # unterminated
        "&AGE-",  # "a" must not be encoded
        "&U,BTFw-&ZeVnLIqe-",  # two shifts back to back must be one
        "&U,BTF-",  # leftover bits
        "&2D0-",  # lone high surrogate
        "&3gA-",  # lone low surrogate
        "&A!-",  # not modified BASE64
        "&AP-",  # odd number of octets
        "caf\xe9",  # 8-bit
    ],
)
def test_mutf7_rejects_non_canonical(wire: str) -> None:
    with pytest.raises(mutf7.MUTF7Error):
        mutf7.decode(wire)


def test_mutf7_rejects_raw_8bit_bytes_and_lone_surrogates() -> None:
    with pytest.raises(mutf7.MUTF7Error):
        mutf7.decode("Entwürfe".encode())
    with pytest.raises(mutf7.MUTF7Error):
        mutf7.encode("\ud800")


@settings(max_examples=500)
@given(st.text())
def test_mutf7_round_trip(text: str) -> None:
    wire = mutf7.encode(text)
    assert wire.isascii() and all(" " <= c <= "~" for c in wire)
    assert mutf7.decode(wire) == text


@settings(max_examples=500)
@given(st.text(alphabet=st.sampled_from("&-AB+,/aZ09xé"), max_size=20))
def test_mutf7_decode_is_canonical(wire: str) -> None:
    try:
        text = mutf7.decode(wire)
    except mutf7.MUTF7Error:
        return
    assert mutf7.encode(text) == wire  # one spelling per name: no aliases


# -- strings ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (b"hello", b'"hello"'),
        (b"", b'""'),
        (b'say "hi"', b'"say \\"hi\\""'),
        (b"back\\slash", b'"back\\\\slash"'),
        (b'""""', b'"\\"\\"\\"\\""'),  # four escapes still quoted (Dovecot)
        (b'"""""', b'{5}\r\n"""""'),  # the fifth makes a literal
        (b"line\r\nbreak", b"{11}\r\nline\r\nbreak"),
        ("Grüße".encode(), b"{7}\r\nGr\xc3\xbc\xc3\x9fe"),
        (b"nul\x00here", b"{8}\r\nnul\x80here"),  # NUL cannot be sent: 0x80 as Dovecot
        ("text", b'"text"'),
    ],
)
def test_string_choice(value: bytes | str, wire: bytes) -> None:
    assert responses.string(value) == wire


def test_long_strings_become_literals_unless_dovecot_parity_is_asked() -> None:
    long = b"x" * (responses.QUOTED_MAX + 1)
    assert responses.string(long).startswith(b"{1025}\r\n")
    assert responses.string(long, max_quoted=None) == b'"' + long + b'"'


def test_nstring_astring() -> None:
    assert responses.nstring(None) == b"NIL"
    assert responses.nstring(b"x") == b'"x"'
    assert responses.astring("INBOX") == b"INBOX"
    assert responses.astring("nil") == b'"nil"'
    assert responses.astring("") == b'""'
    assert responses.astring("Sent Items") == b'"Sent Items"'
    assert responses.astring("a]b") == b"a]b"
    assert responses.astring("a(b") == b'"a(b"'


def test_nstring_nolf_like_dovecot() -> None:
    assert responses.nstring_nolf(b"a\r\n b") == b'"a b"'
    assert responses.nstring_nolf(b"a\nb") == b'"a b"'
    assert responses.nstring_nolf(None) == b"NIL"


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (b"plain subject", b'"plain subject"'),
        (b"", b'""'),
        (b"   ", b'""'),
        (b"two  spaces", b"{10}\r\ntwo spaces"),
        (b"folded\n line", b"{11}\r\nfolded line"),
        (b" lead and trail ", b"{14}\r\nlead and trail"),
        (b"tab\there", b"{8}\r\ntab here"),
        (b'has "quotes"', b'{12}\r\nhas "quotes"'),
        ("Grüße".encode(), b"{7}\r\nGr\xc3\xbc\xc3\x9fe"),
    ],
)
def test_string_for_humans(value: bytes, wire: bytes) -> None:
    assert responses.string_for_humans(value) == wire


@settings(max_examples=400)
@given(st.binary(max_size=200))
def test_strings_read_back_as_sent(value: bytes) -> None:
    sent = value.replace(b"\x00", b"\x80")  # NUL cannot be sent (Dovecot sends 0x80)
    assert Cursor(responses.string(value)).string() == sent
    assert Cursor(responses.astring(value)).astring() == sent
    assert Cursor(responses.nstring(value, max_quoted=None)).nstring() == sent


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_mailbox_names_read_back(name: str) -> None:
    wire = responses.mailbox(name)
    assert mutf7.decode(Cursor(wire).astring()) == name


# -- flags, dates, sets ----------------------------------------------------------------
def test_flag_list_order() -> None:
    flags = ["$Forwarded", "\\Seen", "\\Answered", "Junk", "\\Draft", "\\Seen"]
    assert responses.flag_list(flags) == b"(\\Answered \\Seen \\Draft $Forwarded Junk)"
    assert responses.flag_list([]) == b"()"


@pytest.mark.parametrize(
    ("epoch", "offset", "wire"),
    [
        (0.0, 0, b'"01-Jan-1970 00:00:00 +0000"'),
        (842978665.9, -420, b'"17-Sep-1996 09:44:25 -0700"'),
        (1709251199.0, 60, b'"01-Mar-2024 00:59:59 +0100"'),
        (1709164800.0, 330, b'"29-Feb-2024 05:30:00 +0530"'),
    ],
)
def test_date_time(epoch: float, offset: int, wire: bytes) -> None:
    assert responses.date_time(epoch, offset) == wire
    parsed = Cursor(wire).date_time()
    assert parsed == float(int(epoch))


def test_sequence_set_compression() -> None:
    assert responses.sequence_set([5, 1, 2, 3, 9, 10, 3]) == "1:3,5,9:10"
    assert responses.sequence_set([]) == ""
    assert responses.sequence_set([7, 8, 2, 3], sort=False) == "7:8,2:3"


def test_response_codes() -> None:
    assert responses.uidvalidity(3857529045) == "UIDVALIDITY 3857529045"
    assert responses.uidnext(4392) == "UIDNEXT 4392"
    assert responses.highestmodseq(715194045007) == "HIGHESTMODSEQ 715194045007"
    assert responses.appenduid(38505, 3955) == "APPENDUID 38505 3955"
    assert responses.copyuid(38505, [(304, 3956), (319, 3957), (320, 3958)]) == "COPYUID 38505 304,319:320 3956:3958"
    assert responses.permanentflags(["\\Seen", "\\Deleted"]) == "PERMANENTFLAGS (\\Deleted \\Seen \\*)"
    assert responses.modified([7, 9, 8]) == "MODIFIED 7:9"
    assert responses.capability(["IDLE", "LITERAL-"]) == "CAPABILITY IMAP4rev1 IDLE LITERAL-"
    for code in (
        responses.TOOBIG,
        responses.ALREADYEXISTS,
        responses.NONEXISTENT,
        responses.CANNOT,
        responses.LIMIT,
        responses.AUTHENTICATIONFAILED,
        responses.PRIVACYREQUIRED,
        responses.CLIENTBUG,
        responses.TRYCREATE,
    ):
        assert code.isupper() and " " not in code
    assert responses.BADCHARSET == "BADCHARSET (US-ASCII UTF-8)"


def test_response_lines() -> None:
    assert responses.tagged("a1", "OK", "LOGIN completed") == b"a1 OK LOGIN completed\r\n"
    assert responses.tagged("a2", "NO", "Mailbox is full", responses.TOOBIG) == b"a2 NO [TOOBIG] Mailbox is full\r\n"
    assert responses.untagged(17, "EXISTS") == b"* 17 EXISTS\r\n"
    assert responses.status_line("OK", "UIDs valid", responses.uidvalidity(7)) == b"* OK [UIDVALIDITY 7] UIDs valid\r\n"
    assert responses.continuation() == b"+ Ready for literal data\r\n"
    assert responses.fetch(12, [("UID", b"4"), ("FLAGS", b"(\\Seen)")]) == b"* 12 FETCH (UID 4 FLAGS (\\Seen))\r\n"
    assert responses.search([2, 3, 5]) == b"* SEARCH 2 3 5\r\n"
    assert responses.search([], modseq=None) == b"* SEARCH\r\n"
    assert responses.search([4], modseq=917162500) == b"* SEARCH 4 (MODSEQ 917162500)\r\n"
    assert responses.list_line(["\\HasNoChildren", "\\Drafts"], "Entwürfe") == (
        b'* LIST (\\HasNoChildren \\Drafts) "/" Entw&APw-rfe\r\n'
    )
    assert responses.list_line([], "Sent Items", command="LSUB") == b'* LSUB () "/" "Sent Items"\r\n'
