"""MIME structure, ENVELOPE, BODY/BODYSTRUCTURE and BODY[section] against a small corpus.

Expected strings were worked out by hand from RFC 3501 §7.4.2 and Dovecot 2.3's
documented behaviour (sizes by counting the octets of each body); the inline
cases pin Dovecot's handling of malformed MIME (its message-parser tests) so a
later differential run against Dovecot starts from known agreement. Every input
must parse without an exception (RELIABILITY P15) within the Dovecot limits.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstandby.imap.bodystructure import body, bodystructure, envelope
from mailstandby.imap.mime import MAX_NESTED, Message
from mailstandby.imap.syntax import Cursor

CORPUS = Path(__file__).parent.parent / "data" / "mime"


def load(name: str) -> Message:
    return Message((CORPUS / name).read_bytes())


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


# -- corpus: BODYSTRUCTURE and ENVELOPE --------------------------------------------------
STRUCTURES = {
    "plain.eml": b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 58 5 NIL NIL NIL NIL)',
    "alternative.eml": (
        b'(("text" "plain" ("charset" "UTF-8") NIL NIL "quoted-printable" 27 0 NIL NIL NIL NIL)'
        b'("text" "html" ("charset" "UTF-8") NIL NIL "quoted-printable" 41 0 NIL NIL NIL NIL)'
        b' "alternative" ("boundary" "b1_alt") NIL NIL NIL)'
    ),
    "attachment.eml": (
        b'(("text" "plain" ("charset" "utf-8" "format" "flowed") NIL NIL "7bit" 24 1 NIL NIL ("en" "de-CH") NIL)'
        b'("application" "pdf" ("name" "scan.pdf") "<scan-1@corp.test>" "Scanned document" "base64" 98'
        b' NIL ("attachment" ("filename" "scan.pdf" "size" "42")) NIL NIL)'
        b'("image" "png" NIL NIL NIL "base64" 12 "Q2hlY2sgSW50ZWdyaXR5IQ=="'
        b' ("inline" ("filename*" "utf-8\'\'Bild%20mit%20%C3%BCmlaut.png")) NIL "http://example.com/bild.png")'
        b' "mixed" ("boundary" "----=_Part_0_123.456") NIL NIL NIL)'
    ),
    "nested-rfc822.eml": (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 0 NIL NIL NIL NIL)'
        b'("message" "rfc822" NIL NIL NIL "7bit" 380'
        b' ("Wed, 6 Mar 2024 18:00:00 +0100" "inner" (("Carol" NIL "carol" "corp.test"))'
        b' (("Carol" NIL "carol" "corp.test")) (("Carol" NIL "carol" "corp.test")) ((NIL NIL "bob" "corp.test"))'
        b' NIL NIL "<root@corp.test>" "<inner@corp.test>")'
        b' (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0 NIL NIL NIL NIL)'
        b'("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 11 0 NIL NIL NIL NIL)'
        b' "alternative" ("boundary" "inner") NIL NIL NIL)'
        b' 18 NIL ("attachment" ("filename" "forwarded.eml")) NIL NIL)'
        b' "mixed" ("boundary" "outer") NIL NIL NIL)'
    ),
    # no MIME-Version and no Content-Type: Content-Transfer-Encoding is ignored
    "encoded-words.eml": b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 78 1 NIL NIL NIL NIL)',
    # type, subtype, parameter names and values keep the message's case
    "8bit.eml": b'("Text" "Plain" ("CHARSET" "UTF-8" "Format" "flowed") NIL NIL "8BIT" 29 2 NIL NIL NIL NIL)',
    "malformed-boundaries.eml": (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0 NIL NIL NIL NIL)'
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "related" NIL NIL NIL NIL)'
        b'("application" "octet-stream" ("name" "") NIL NIL "7bit" 4 NIL NIL NIL NIL)'
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'
        b' "mixed" ("boundary" "frontier") NIL NIL NIL)'
    ),
    "missing-final-boundary.eml": (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0 NIL NIL NIL NIL)'
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 33 0 NIL NIL NIL NIL)'
        b' "mixed" ("boundary" "XYZ") NIL NIL NIL)'
    ),
    "digest.eml": (
        b'(("message" "rfc822" NIL NIL NIL "7bit" 42 (NIL "first" ((NIL NIL "a" "example.org"))'
        b' ((NIL NIL "a" "example.org")) ((NIL NIL "a" "example.org")) NIL NIL NIL NIL NIL)'
        b' ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)'
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 0 NIL NIL NIL NIL)'
        b' "digest" ("boundary" "d") NIL NIL NIL)'
    ),
}

ENVELOPES = {
    "plain.eml": (
        b'("Mon, 4 Mar 2024 09:59:58 +0100" "Quarterly numbers" (("Alice Example" NIL "alice" "example.org"))'
        b' (("Alice Example" NIL "alice" "example.org")) (("Alice Example" NIL "alice" "example.org"))'
        b' (("Bob" NIL "bob" "corp.test")(NIL NIL "carol" "corp.test")) (("Dave, the Boss" NIL "dave" "corp.test"))'
        b' NIL NIL "<20240304095958.1234@example.org>")'
    ),
    # encoded-words are not decoded (RFC 3501 §7.4.2)
    "alternative.eml": (
        b'("Tue, 5 Mar 2024 08:00:00 +0000" "=?UTF-8?B?R3LDvMOfZQ==?= aus Berlin"'
        b' (("=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?=" NIL "joerg" "example.de"))'
        b' (("=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?=" NIL "joerg" "example.de"))'
        b' (("=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?=" NIL "joerg" "example.de"))'
        b' ((NIL NIL "team" "corp.test")) NIL NIL NIL "<alt-1@example.de>")'
    ),
    "encoded-words.eml": (
        b'("Fri, 8 Mar 2024 11:11:11 +0000"'
        # a folded subject is unfolded with whitespace runs folded: a changed value goes as a literal
        b" {103}\r\n=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?="
        b" =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?="
        b' (("=?ISO-8859-1?Q?Andr=E9?= Pirard" NIL "PIRARD" "vm1.ulg.ac.be"))'
        b' (("Secretary (office)" NIL "secretary" "example.org"))'
        b' ((NIL "@relay1.test,@relay2.test" "replies" "example.org"))'
        b' ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))'
        # a group, then an address without the separating comma: Dovecot stops there
        b' ((NIL NIL "Team" NIL)(NIL NIL "ann" "example.org")({4}\r\nb"en NIL "ben" "example.org")(NIL NIL NIL NIL))'
        b' (("invalid address" NIL "MISSING_MAILBOX" "MISSING_DOMAIN"))'
        b' "<a@example.org> <b@example.org>" NIL)'
    ),
    # 8-bit header text goes out as literals
    "8bit.eml": (
        b'("Sat, 9 Mar 2024 09:00:00 +0100" {17}\r\nGr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln'
        b' (({5}\r\nJ\xc3\xb6rg NIL "joerg" "example.de")) (({5}\r\nJ\xc3\xb6rg NIL "joerg" "example.de"))'
        b' (({5}\r\nJ\xc3\xb6rg NIL "joerg" "example.de")) ((NIL NIL "bob" "corp.test")) NIL NIL NIL NIL)'
    ),
    "missing-final-boundary.eml": (
        b'(NIL "cut off" ((NIL NIL "truncated" "example.net")) ((NIL NIL "truncated" "example.net"))'
        b' ((NIL NIL "truncated" "example.net")) ((NIL NIL "bob" "corp.test")) NIL NIL NIL NIL)'
    ),
}


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_corpus_bodystructure(name: str) -> None:
    assert bodystructure(load(name)) == STRUCTURES[name]


@pytest.mark.parametrize("name", sorted(ENVELOPES))
def test_corpus_envelope(name: str) -> None:
    assert envelope(load(name)) == ENVELOPES[name]


def test_body_is_bodystructure_without_extension_data() -> None:
    assert body(load("plain.eml")) == b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 58 5)'
    assert body(load("nested-rfc822.eml")) == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 0)'
        b'("message" "rfc822" NIL NIL NIL "7bit" 380'
        b' ("Wed, 6 Mar 2024 18:00:00 +0100" "inner" (("Carol" NIL "carol" "corp.test"))'
        b' (("Carol" NIL "carol" "corp.test")) (("Carol" NIL "carol" "corp.test")) ((NIL NIL "bob" "corp.test"))'
        b' NIL NIL "<root@corp.test>" "<inner@corp.test>")'
        b' (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0)'
        b'("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 11 0) "alternative") 18) "mixed")'
    )


def test_deeply_nested_stops_at_the_dovecot_limit() -> None:
    msg = load("deeply-nested.eml")
    part, depth = msg.root, 0
    while part.children:
        part, depth = part.children[0], depth + 1
    assert depth == MAX_NESTED - 1
    assert part.overflow and not part.multipart and part.boundary == b"level099"
    structure = bodystructure(msg)
    # 99 multiparts; the part past the limit is an opaque leaf, as Dovecot shows it
    assert structure.count(b'"mixed"') == MAX_NESTED - 1
    assert b'("application" "octet-stream" ("boundary" "level099") NIL NIL "7bit" ' in structure
    assert msg.section((1,) * 98 + (1,)) == msg.body_bytes(part)


def test_part_count_limit_makes_the_last_part_take_the_rest() -> None:
    parts = b"".join(b"--x\r\nContent-Type: text/plain\r\n\r\n%d\r\n" % i for i in range(10))
    raw = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n" + parts + b"--x--\r\n"
    msg = Message(raw, max_parts=5)
    assert len(msg.root.children) == 4
    last = msg.root.children[-1]
    assert last.overflow and msg.body_bytes(last).startswith(b"3\r\n--x\r\n")
    assert msg.body_bytes(last).endswith(b"--x--\r\n")


@pytest.mark.parametrize(
    "inner",
    [
        b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nx\r\n",
        b"Content-Type: Message/RFC822\r\n\r\nSubject: inner\r\n\r\nx\r\n",
    ],
)
def test_message_rfc822_past_the_nesting_limit_is_application_octet_stream(inner: bytes) -> None:
    """Found by fuzz/mime: written as "message" "rfc822" without the envelope and body the grammar requires
    (RFC 3501 §9 body-type-msg); Dovecot writes such a part as application/octet-stream (part_is_truncated)."""
    raw = b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n" + inner + b"--a--\r\n"
    msg = Message(raw, max_nested=2)
    [part] = msg.root.children
    assert part.overflow and not part.rfc822
    assert bodystructure(msg) == (
        b'(("application" "octet-stream" NIL NIL NIL "7bit" 19 NIL NIL NIL NIL) "mixed" ("boundary" "a") NIL NIL NIL)'
    )


def test_digest_part_past_the_part_limit_is_application_octet_stream() -> None:
    raw = b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: one\r\n\r\n1\r\n--d--\r\n"
    msg = Message(raw, max_parts=2)
    [part] = msg.root.children
    assert part.overflow and not part.rfc822
    assert bodystructure(msg).startswith(b'(("application" "octet-stream" NIL NIL NIL "7bit" ')


# -- BODY[section] ---------------------------------------------------------------------
def test_sections_of_a_nested_message() -> None:
    msg = load("nested-rfc822.eml")
    raw = msg.raw
    assert msg.section() == raw
    assert msg.section((), "HEADER") == raw[: raw.index(b"\r\n\r\n") + 4]
    assert msg.section((), "TEXT") == raw[raw.index(b"\r\n\r\n") + 4 :]
    assert msg.section((1,)) == b"See below."
    assert msg.section((1,), "MIME") == b"Content-Type: text/plain\r\n\r\n"
    # "--inner--" CRLF "--outer--": the CRLF ends the inner closing line, so it stays inside
    inner = raw[raw.index(b"From: Carol") : raw.index(b"--outer--")]
    assert msg.section((2,)) == inner
    assert msg.section((2,), "MIME") == (
        b'Content-Type: message/rfc822\r\nContent-Disposition: attachment; filename="forwarded.eml"\r\n\r\n'
    )
    assert msg.section((2,), "HEADER") == inner[: inner.index(b"\r\n\r\n") + 4]
    assert msg.section((2,), "TEXT") == inner[inner.index(b"\r\n\r\n") + 4 :]
    assert msg.section((2, 1)) == b"plain"  # numbers continue inside the encapsulated message
    assert msg.section((2, 2), "MIME") == b"Content-Type: text/html; charset=us-ascii\r\n\r\n"
    assert msg.section((2,), "HEADER.FIELDS", ("SUBJECT", "from")) == (
        b"From: Carol <carol@corp.test>\r\nSubject: inner\r\n\r\n"
    )
    # HEADER/TEXT of a part that is not message/rfc822, and parts that do not exist: empty
    assert msg.section((1,), "HEADER") == b""
    assert msg.section((1,), "TEXT") == b""
    assert msg.section((3,)) == b""
    assert msg.section((1, 1)) == b"See below."  # Dovecot: ".1" of a single part is the part itself
    assert msg.section((1, 2)) == b""
    assert msg.section((2, 3)) == b""


def test_sections_of_a_single_part_message() -> None:
    msg = load("plain.eml")
    text = msg.section((), "TEXT")
    assert msg.section((1,)) == text  # BODY[1] of a non-multipart message is its body
    assert msg.section((2,)) == b""
    assert msg.section((1,), "MIME").startswith(b"Return-Path: ")  # Dovecot: the message header
    assert msg.section((), "HEADER.FIELDS", ("RECEIVED",)) == (
        b"Received: from mx.example.org (mx.example.org [192.0.2.10])\r\n"
        b"\tby standby.corp.test with ESMTPS id 4TpXyZ; Mon, 4 Mar 2024 10:00:00 +0100\r\n\r\n"
    )
    assert msg.section((), "HEADER.FIELDS", ("X-NOT-THERE",)) == b"\r\n"
    not_fields = msg.section((), "HEADER.FIELDS.NOT", ("RECEIVED", "RETURN-PATH", "CONTENT-TYPE"))
    assert not_fields.startswith(b"Date: Mon, 4 Mar 2024")
    assert b"Received" not in not_fields and b"Content-Type" not in not_fields
    assert not_fields.endswith(b"Content-Transfer-Encoding: 7bit\r\n\r\n")


def test_sections_of_an_attachment_and_of_a_truncated_message() -> None:
    msg = load("attachment.eml")
    assert msg.section((2,)) == (
        b"JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4Kc3RyZWFtCg==\r\nZW5kc3RyZWFtCmVuZG9iago="
    )
    assert msg.section((3,)) == b"iVBORw0KGgo="
    cut = load("missing-final-boundary.eml")
    assert cut.section((2,)) == b"second, and the message ends here"
    digest = load("digest.eml")
    assert digest.section((1,), "HEADER") == b"From: a@example.org\r\nSubject: first\r\n\r\n"
    assert digest.section((1, 1)) == b"one"


def test_output_is_crlf_and_has_no_nul() -> None:
    raw = b"Subject: lf only\nX-Nul: a\x00b\n\nline1\nline2\x00\n"
    msg = Message(raw)
    assert msg.section() == b"Subject: lf only\r\nX-Nul: a\x80b\r\n\r\nline1\r\nline2\x80\r\n"
    assert msg.virtual_size == len(msg.section()) == len(raw) + 5
    assert msg.section((), "HEADER.FIELDS", ("SUBJECT",)) == b"Subject: lf only\r\n\r\n"
    # sizes count a bare LF as CRLF, as the octets will be sent
    assert bodystructure(msg) == b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 15 2 NIL NIL NIL NIL)'


# -- Dovecot's handling of broken MIME ---------------------------------------------------
def test_boundary_inside_a_header_takes_the_newline_before_it() -> None:
    msg = Message(crlf('Content-Type: multipart/mixed; boundary="x"\n\n--x\nContent-Type: text/html\n--x--\n'))
    [part] = msg.root.children
    assert msg.header_bytes(part) == b"Content-Type: text/html"
    assert msg.section((1,), "MIME") == b"Content-Type: text/html"
    assert bodystructure(msg).startswith(b'(("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 0 0 ')


def test_boundary_right_after_an_empty_header_line_takes_that_line() -> None:
    raw = crlf(
        'Content-Type: multipart/mixed; boundary="a"\n\n--a\nContent-Type: multipart/mixed; boundary="ab"\n'
        "MIME-Version: 1.0\n--ab\nContent-Type: text/plain\n\n--ab--\n--a--\n\n"
    )
    msg = Message(raw)
    first, second, third = msg.root.children
    assert first.multipart and not first.children  # its header was cut: its boundary never started
    assert msg.header_bytes(second) == b"Content-Type: text/plain\r\n"  # without the empty line
    assert (third.start, third.body_start, third.end) == (third.start, third.start, third.start)


def test_own_boundary_after_the_header_is_not_a_parents() -> None:
    raw = crlf(
        'Content-Type: multipart/mixed; boundary="a"\n\n--a\nContent-Type: multipart/mixed; boundary="ab"\n\n'
        "--ab\nContent-Type: text/plain\n\nbody\n"
    )
    msg = Message(raw)
    [child] = msg.root.children
    assert len(child.children) == 1
    assert msg.section((1, 1)) == b"body\r\n"


def test_longest_prefix_boundary_wins_and_trailing_dashes() -> None:
    raw = crlf(
        'Content-Type: multipart/mixed; boundary="a--"\n\n--a--\nContent-Type: multipart/mixed; boundary="a----"\n'
        "\n--a----\nContent-Type: text/plain\n\nbody\n--a------\nContent-Type: text/html\n\nbody2\n--a----"
    )
    msg = Message(raw)
    [child] = msg.root.children
    assert len(child.children) == 1
    assert msg.section((1, 1)) == b"body"
    assert msg.body_bytes(child).endswith(b"--a------\r\nContent-Type: text/html\r\n\r\nbody2")


@pytest.mark.parametrize(
    ("headers", "want"),
    [
        # the first Content-Type counts
        ("Content-Type: text/html\nContent-Type: text/plain", b'("text" "html" ("charset" "us-ascii") NIL NIL "7bit"'),
        # RFC 2231 continuation with a missing index: passed through unmerged
        (
            "Content-Type: application/x; name*0=a; name*2=c",
            b'("application" "x" ("name*0" "a" "name*2" "c") NIL NIL "7bit"',
        ),
        # plain continuations merge without the star
        ("Content-Type: application/x; name*1=b; name*0=a", b'("application" "x" ("name" "ab") NIL NIL "7bit"'),
        # a broken Content-Type keeps what could be read, without parameters
        ("Content-Type: text", b'("text" "" ("charset" "us-ascii") NIL NIL "7bit"'),
        ("Content-Type: ;charset=x", b'("" "" NIL NIL NIL "7bit"'),
        # comments and folding in parameters; quoted values unescaped
        (
            'Content-Type: text/plain (comment);\n charset="us-\\"ascii" (c2)',
            b'("text" "plain" ("charset" "us-\\"ascii") NIL NIL "7bit"',
        ),
        # Content-ID and Content-Description are raw header values, unfolded
        (
            "Content-ID: <a@b>\nContent-Description: two\n lines",
            b'("text" "plain" ("charset" "us-ascii") "<a@b>" "two lines"',
        ),
        # a header line without a colon does not end the header
        ("X-Broken header line\nContent-Type: text/enriched", b'("text" "enriched" ("charset" "us-ascii") NIL NIL'),
    ],
)
def test_content_header_quirks(headers: str, want: bytes) -> None:
    msg = Message(crlf("MIME-Version: 1.0\n" + headers + "\n\nx\n"))
    assert bodystructure(msg).startswith(want)


def test_headers_only_and_empty_messages() -> None:
    for raw in (b"", b"\r\n", b"Subject: no body", b"Subject: no body\r\n", b"--x\r\n"):
        msg = Message(raw)
        assert msg.section() == raw
        bodystructure(msg)
        envelope(msg)
    assert envelope(Message(b"")) == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
    # HEADER.FIELDS always ends its fields with CRLF, as Dovecot answers for a header cut at EOF
    assert Message(b"Subject: no body").section((), "HEADER.FIELDS", ("SUBJECT",)) == b"Subject: no body\r\n"


def test_envelope_last_header_wins_and_sender_defaults() -> None:
    msg = Message(crlf("Subject: one\nSubject: two\nFrom: a@x\nSender:\nReply-To: r@x\n\n"))
    assert envelope(msg) == (
        b'(NIL "two" ((NIL NIL "a" "x")) ((NIL NIL "a" "x")) ((NIL NIL "r" "x")) NIL NIL NIL NIL NIL)'
    )


# -- fuzz -----------------------------------------------------------------------------------
def read_sexp(cur: Cursor) -> object:
    """A minimal IMAP value reader: NIL, numbers, strings and parenthesised lists."""
    b = cur.peek()
    if b == 0x28:
        cur.pos += 1
        items = []
        while cur.peek() != 0x29:
            items.append(read_sexp(cur))
            if cur.peek() == 0x20:
                cur.pos += 1
        cur.pos += 1
        return items
    if b in (0x22, 0x7B):
        return cur.literal(allow_nul=True) if b == 0x7B else cur.quoted()
    if b is not None and 0x30 <= b <= 0x39:
        return cur.number(2**63)
    assert cur.keyword() == "NIL"
    return None


def check_message(raw: bytes) -> None:
    msg = Message(raw, max_nested=8, max_parts=40)
    for value in (bodystructure(msg), body(msg), envelope(msg)):
        cur = Cursor(value)
        read_sexp(cur)
        assert cur.at_end()
    stack = [msg.root]
    while stack:
        part = stack.pop()
        assert part.start <= part.body_start <= part.end <= len(raw)
        for child in part.children:
            assert part.body_start <= child.start and child.end <= part.end
        stack.extend(part.children)
    if b"\n" not in raw.replace(b"\r\n", b"") and b"\x00" not in raw:
        assert msg.section() == raw
    for path in ((), (1,), (1, 1), (2, 1, 1)):
        for text in (None, "HEADER", "TEXT", "MIME", "HEADER.FIELDS"):
            msg.section(path, text, ("FROM",))


@settings(max_examples=300)
@given(st.binary(max_size=800))
def test_fuzz_any_bytes(raw: bytes) -> None:
    check_message(raw)


MIME_LINES = [
    "Content-Type: multipart/mixed; boundary=a",
    "Content-Type: multipart/alternative; boundary=ab",
    'Content-Type: multipart/digest; boundary="a b"',
    "Content-Type: message/rfc822",
    "Content-Type: text/plain; charset=utf-8",
    "Content-Type: multipart/mixed; boundary*0=a; boundary*1=b",
    "Content-Disposition: attachment; filename*=utf-8''%C3%A9",
    "Content-Language: en, fr",
    "MIME-Version: 1.0",
    'From: "A, B" <a@b>, (c) d@e, g: h@i;',
    "Subject: =?utf-8?q?x?=",
    " folded",
    "--a",
    "--ab",
    "--a--",
    "--ab--",
    "--a b",
    "",
    "body text",
    "\t",
    "no colon",
]


@settings(max_examples=400)
@given(st.lists(st.sampled_from(MIME_LINES), max_size=60), st.sampled_from(["\r\n", "\n"]))
def test_fuzz_mime_shaped_messages(lines: list[str], eol: str) -> None:
    check_message(eol.join(lines).encode())
