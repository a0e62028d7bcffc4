"""The IMAP command parser alone: real client command lines, literals, errors, fuzz.

Table-driven, no I/O. `drive()` plays the network layer of `parser`'s module
docstring over a byte stream, so literal handling (RFC 3501 §7.5, RFC 7888
LITERAL+/LITERAL-) is tested exactly as the server will run it. Every input
must end in a Command or a ParseError; anything else escaping is a bug
(RELIABILITY P15). Literal smuggling and size abuse follow RELIABILITY P10-P13.
"""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstandby.imap.fetch import Fetch, FetchItem, Section
from mailstandby.imap.parser import (
    Append,
    Authenticate,
    Command,
    CommandReader,
    Copy,
    Enable,
    Expunge,
    Id,
    ListMailboxes,
    LiteralRequest,
    Login,
    Mailbox,
    ParseError,
    Rename,
    Select,
    Status,
    Store,
    is_done,
    parse_command,
    parse_sasl_response,
)
from mailstandby.imap.search import (
    All,
    And,
    Body,
    DateKey,
    HasFlag,
    Header,
    ModSeq,
    Not,
    Or,
    Search,
    Seq,
    Size,
)
from mailstandby.imap.syntax import SequenceSet
from mailstandby.store.mailbox import FlagMode

CONTINUE = "+"  # the server sent a continuation request


def drive(wire: bytes, reader: CommandReader | None = None) -> list[Command | ParseError | str]:
    """Run the server's read loop over `wire`: Commands, ParseErrors and "+" prompts, in order."""
    reader = reader or CommandReader(max_literal=1 << 20)
    out: list[Command | ParseError | str] = []
    pos = 0
    while True:
        lf = wire.find(b"\n", pos)
        if lf < 0:
            return out
        line, pos = wire[pos : lf + 1], lf + 1
        try:
            step = reader.feed_line(line)
            while isinstance(step, LiteralRequest):
                data, pos = wire[pos : pos + step.size], pos + step.size
                if len(data) < step.size:
                    return out  # the peer went away inside a literal
                if step.discard:
                    reader.literal_discarded()
                else:
                    if step.synchronizing:
                        out.append(CONTINUE)
                    reader.feed_literal(data)
                lf = wire.find(b"\n", pos)
                if lf < 0:
                    return out
                line, pos = wire[pos : lf + 1], lf + 1
                step = reader.feed_line(line)
        except ParseError as exc:
            out.append(exc)
            if exc.close:
                return out
            continue
        out.append(step)


def one(wire: bytes, reader: CommandReader | None = None) -> Command:
    [result] = [r for r in drive(wire, reader) if r != CONTINUE]
    assert isinstance(result, Command), result
    return result


def error(wire: bytes, reader: CommandReader | None = None) -> ParseError:
    results = drive(wire, reader)
    assert results and isinstance(results[-1], ParseError), results
    assert CONTINUE not in results, "a bad command must not be invited to send its literal"
    return results[-1]


def seq(*ranges: tuple[int | None, int | None]) -> SequenceSet:
    return SequenceSet(tuple(ranges))


ALL_MSGS = seq((1, None))

# -- real client command lines ---------------------------------------------------------
# (client, wire, expected Command). Reconstructed from imaplib's source and from the
# protocol logs of iOS Mail, Thunderbird, K-9, mbsync and Outlook.
THUNDERBIRD_HEADERS = [
    *("FROM", "TO", "CC", "BCC", "SUBJECT", "DATE", "MESSAGE-ID", "PRIORITY", "X-PRIORITY"),
    *("REFERENCES", "NEWSGROUPS", "IN-REPLY-TO", "CONTENT-TYPE", "REPLY-TO"),
]
CLIENT_LINES = [
    ("imaplib", b"JHGA1 CAPABILITY\r\n", Command("JHGA1", "CAPABILITY")),
    ("imaplib", b'JHGA2 LOGIN alice "pa ss\\"word"\r\n', Command("JHGA2", "LOGIN", Login("alice", 'pa ss"word'))),
    ("imaplib", b"JHGA3 SELECT INBOX\r\n", Command("JHGA3", "SELECT", Select("INBOX"))),
    ("imaplib", b"JHGA4 EXAMINE inbox\r\n", Command("JHGA4", "EXAMINE", Select("INBOX"))),
    (
        "imaplib",
        b"JHGA5 FETCH 1 (RFC822)\r\n",
        Command("JHGA5", "FETCH", Fetch(seq((1, 1)), (FetchItem("RFC822"),))),
    ),
    (
        "imaplib",
        b"JHGA6 STORE 1:3 +FLAGS (\\Deleted)\r\n",
        Command("JHGA6", "STORE", Store(seq((1, 3)), FlagMode.ADD, False, ("\\Deleted",))),
    ),
    ("imaplib", b"JHGA7 EXPUNGE\r\n", Command("JHGA7", "EXPUNGE")),
    ("imaplib", b"JHGA8 SEARCH ALL\r\n", Command("JHGA8", "SEARCH", Search(All()))),
    ("imaplib", b'JHGA9 LIST "" *\r\n', Command("JHGA9", "LIST", ListMailboxes("", ("*",)))),
    (
        "imaplib",
        b"JHGA10 STATUS INBOX (MESSAGES UNSEEN UIDNEXT)\r\n",
        Command("JHGA10", "STATUS", Status("INBOX", ("MESSAGES", "UNSEEN", "UIDNEXT"))),
    ),
    ("imaplib", b"JHGA11 COPY 1:3 Archive\r\n", Command("JHGA11", "COPY", Copy(seq((1, 3)), "Archive"))),
    ("imaplib", b"JHGA12 AUTHENTICATE PLAIN\r\n", Command("JHGA12", "AUTHENTICATE", Authenticate("PLAIN"))),
    ("imaplib", b"JHGA13 LOGOUT\r\n", Command("JHGA13", "LOGOUT")),
    (
        "ios",
        b'1 ID ("name" "iPhone Mail" "version" "21E236" "os" "iOS" "os-version" "17.4.1 (21E236)")\r\n',
        Command(
            "1",
            "ID",
            Id(
                (
                    ("name", "iPhone Mail"),
                    ("version", "21E236"),
                    ("os", "iOS"),
                    ("os-version", "17.4.1 (21E236)"),
                )
            ),
        ),
    ),
    (
        "ios",
        b"2 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n",
        Command("2", "AUTHENTICATE", Authenticate("PLAIN", b"\x00alice\x00secret")),
    ),
    ("ios", b"3 ENABLE CONDSTORE\r\n", Command("3", "ENABLE", Enable(("CONDSTORE",)))),
    (
        "ios",
        b'4 LIST (SPECIAL-USE) "" "*"\r\n',
        Command("4", "LIST", ListMailboxes("", ("*",), selection=("SPECIAL-USE",))),
    ),
    ("ios", b"5 SELECT INBOX (CONDSTORE)\r\n", Command("5", "SELECT", Select("INBOX", condstore=True))),
    (
        "ios",
        b"6 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1234)\r\n",
        Command("6", "FETCH", Fetch(ALL_MSGS, (FetchItem("FLAGS"),), changed_since=1234), uid=True),
    ),
    (
        "ios",
        b"7.12 UID FETCH 482 (BODY.PEEK[1]<0.2000>)\r\n",
        Command(
            "7.12",
            "FETCH",
            Fetch(seq((482, 482)), (FetchItem("BODY", Section((1,)), peek=True, partial=(0, 2000)),)),
            uid=True,
        ),
    ),
    (
        "ios",
        b"8 UID STORE 482 +FLAGS.SILENT (\\Seen)\r\n",
        Command("8", "STORE", Store(seq((482, 482)), FlagMode.ADD, True, ("\\Seen",)), uid=True),
    ),
    ("ios", b"9 UID MOVE 482 Trash\r\n", Command("9", "MOVE", Copy(seq((482, 482)), "Trash"), uid=True)),
    (
        "ios",
        b"10 UID EXPUNGE 482,490:491\r\n",
        Command("10", "EXPUNGE", Expunge(seq((482, 482), (490, 491))), uid=True),
    ),
    ("ios", b"11 IDLE\r\n", Command("11", "IDLE")),
    ("ios", b"12 NAMESPACE\r\n", Command("12", "NAMESPACE")),
    (
        "ios",
        b"13 UID SEARCH 1:* NOT DELETED\r\n",
        Command("13", "SEARCH", Search(And((Seq(ALL_MSGS), Not(HasFlag("\\Deleted"))))), uid=True),
    ),
    ("thunderbird", b"1 capability\r\n", Command("1", "CAPABILITY")),
    (
        "thunderbird",
        b'3 ID ("name" "Thunderbird" "version" "115.3.1")\r\n',
        Command("3", "ID", Id((("name", "Thunderbird"), ("version", "115.3.1")))),
    ),
    (
        "thunderbird",
        b'5 list (subscribed) "" "*" return (special-use)\r\n',
        Command("5", "LIST", ListMailboxes("", ("*",), ("SUBSCRIBED",), ("SPECIAL-USE",))),
    ),
    ("thunderbird", b'6 select "INBOX" (CONDSTORE)\r\n', Command("6", "SELECT", Select("INBOX", True))),
    (
        "thunderbird",
        b"8 UID fetch 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID "
        b"Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])\r\n",
        Command(
            "8",
            "FETCH",
            Fetch(
                ALL_MSGS,
                (
                    FetchItem("UID"),
                    FetchItem("RFC822.SIZE"),
                    FetchItem("FLAGS"),
                    FetchItem("BODY", Section((), "HEADER.FIELDS", tuple(THUNDERBIRD_HEADERS)), peek=True),
                ),
            ),
            uid=True,
        ),
    ),
    (
        "thunderbird",
        b"10 UID store 5 +Flags (\\Seen)\r\n",
        Command("10", "STORE", Store(seq((5, 5)), FlagMode.ADD, False, ("\\Seen",)), uid=True),
    ),
    ("thunderbird", b'11 uid copy 5 "Trash"\r\n', Command("11", "COPY", Copy(seq((5, 5)), "Trash"), uid=True)),
    ("thunderbird", b'12 lsub "" "*"\r\n', Command("12", "LSUB", ListMailboxes("", ("*",), ("SUBSCRIBED",)))),
    (
        "thunderbird",
        b"13 UID fetch 5 (UID RFC822.SIZE BODY.PEEK[])\r\n",
        Command(
            "13",
            "FETCH",
            Fetch(seq((5, 5)), (FetchItem("UID"), FetchItem("RFC822.SIZE"), FetchItem("BODY", Section(), peek=True))),
            uid=True,
        ),
    ),
    ("thunderbird", b"14 unselect\r\n", Command("14", "UNSELECT")),
    ("k9", b'2 LOGIN "alice@corp.test" "s3cret"\r\n', Command("2", "LOGIN", Login("alice@corp.test", "s3cret"))),
    (
        "k9",
        b"6 UID FETCH 5 (UID BODY.PEEK[1.MIME] BODY.PEEK[1]<0.4096>)\r\n",
        Command(
            "6",
            "FETCH",
            Fetch(
                seq((5, 5)),
                (
                    FetchItem("UID"),
                    FetchItem("BODY", Section((1,), "MIME"), peek=True),
                    FetchItem("BODY", Section((1,)), peek=True, partial=(0, 4096)),
                ),
            ),
            uid=True,
        ),
    ),
    (
        "k9",
        b"7 UID SEARCH SINCE 1-Jan-2024 NOT DELETED\r\n",
        Command(
            "7",
            "SEARCH",
            Search(And((DateKey("internal", "since", date(2024, 1, 1)), Not(HasFlag("\\Deleted"))))),
            uid=True,
        ),
    ),
    (
        "mbsync",
        b"2 AUTHENTICATE PLAIN =\r\n",
        Command("2", "AUTHENTICATE", Authenticate("PLAIN", b"")),
    ),
    (
        "mbsync",
        b"6 UID FETCH 1:1000000000 (UID FLAGS)\r\n",
        Command("6", "FETCH", Fetch(seq((1, 1000000000)), (FetchItem("UID"), FetchItem("FLAGS"))), uid=True),
    ),
    ("mbsync", b'7 CREATE "Archive"\r\n', Command("7", "CREATE", Mailbox("Archive"))),
    (
        "mbsync",
        b"8 UID STORE 3 +FLAGS.SILENT \\Deleted\r\n",
        Command("8", "STORE", Store(seq((3, 3)), FlagMode.ADD, True, ("\\Deleted",)), uid=True),
    ),
    ("mbsync", b"9 CLOSE\r\n", Command("9", "CLOSE")),
    (
        "outlook",
        b"9rn5 UID FETCH 5 BODY.PEEK[]\r\n",
        Command("9rn5", "FETCH", Fetch(seq((5, 5)), (FetchItem("BODY", Section(), peek=True),)), uid=True),
    ),
    (
        "outlook",
        b'9rn6 STATUS "Sent Items" (MESSAGES UNSEEN)\r\n',
        Command("9rn6", "STATUS", Status("Sent Items", ("MESSAGES", "UNSEEN"))),
    ),
    ("outlook", b"9rn7 SEARCH UNDELETED\r\n", Command("9rn7", "SEARCH", Search(Not(HasFlag("\\Deleted"))))),
    (
        "outlook",
        b"9rn8 UID STORE 5 FLAGS (\\Deleted \\Seen)\r\n",
        Command("9rn8", "STORE", Store(seq((5, 5)), FlagMode.SET, False, ("\\Deleted", "\\Seen")), uid=True),
    ),
    ("mutf7", b'a SELECT "Entw&APw-rfe"\r\n', Command("a", "SELECT", Select("Entwürfe"))),
    ("mutf7", b"a CREATE &ZeVnLIqe-/&U,BTFw-\r\n", Command("a", "CREATE", Mailbox("日本語/台北"))),
    ("mutf7", b'a RENAME "A&-B" "C"\r\n', Command("a", "RENAME", Rename("A&B", "C"))),
]


@pytest.mark.parametrize(("client", "wire", "want"), CLIENT_LINES, ids=[f"{c}:{w[:30]!r}" for c, w, _ in CLIENT_LINES])
def test_real_client_lines(client: str, wire: bytes, want: Command) -> None:
    assert one(wire) == want


def test_thunderbird_fetch_echo_name() -> None:
    cmd = one(b"8 UID fetch 1 (BODY.PEEK[HEADER.FIELDS (From To)] BODY[1.2.MIME]<10.20>)\r\n")
    assert isinstance(cmd.args, Fetch)
    assert [i.response_name() for i in cmd.args.items] == ["BODY[HEADER.FIELDS (FROM TO)]", "BODY[1.2.MIME]<10>"]
    assert [i.sets_seen for i in cmd.args.items] == [False, True]


@pytest.mark.parametrize(
    ("spec", "echo"),
    [
        (b'("X Y" Subject)', 'BODY[HEADER.FIELDS ("X Y" SUBJECT)]'),
        (b'("")', 'BODY[HEADER.FIELDS ("")]'),
        (b'("a)b" "q\\"t" {3}\r\nx(y)', 'BODY[HEADER.FIELDS ("A)B" "Q\\"T" "X(Y")]'),
    ],
)
def test_fetch_echo_of_a_header_name_that_is_not_an_atom_is_quoted(spec: bytes, echo: str) -> None:
    """Found by fuzz/imap_parser: the echo must parse back to the same section (Dovecot quotes too)."""
    cmd = one(b"a FETCH 1 BODY[HEADER.FIELDS " + spec + b"]\r\n")
    assert isinstance(cmd.args, Fetch)
    [item] = cmd.args.items
    assert item.response_name() == echo
    again = one(b"b FETCH 1 " + echo.encode("ascii") + b"\r\n")
    assert isinstance(again.args, Fetch)
    assert again.args.items[0].section == item.section


@pytest.mark.parametrize("name", [b"{2}\r\n\xc3\x84", b"{3}\r\na\rb", b'"\xc3\xa9"'])
def test_fetch_header_name_that_cannot_be_a_field_name_is_bad(name: bytes) -> None:
    """Found by fuzz/imap_parser: an 8-bit name reached the FETCH response, which is ASCII (RFC 5322 §3.6.8)."""
    *_, exc = drive(b"a FETCH 1 BODY.PEEK[HEADER.FIELDS (" + name + b")]\r\n")  # the literal's octets are the error
    assert isinstance(exc, ParseError)
    assert (exc.tag, exc.status) == ("a", "BAD")


@pytest.mark.parametrize(
    ("macro", "names"),
    [
        ("ALL", ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"]),
        ("fast", ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]),
        ("FULL", ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"]),
    ],
)
def test_fetch_macros_expand(macro: str, names: list[str]) -> None:
    cmd = one(b"a FETCH 1:* " + macro.encode() + b"\r\n")
    assert isinstance(cmd.args, Fetch)
    assert [i.name for i in cmd.args.items] == names


def test_fetch_every_item() -> None:
    wire = (
        b"a FETCH 2,4:6,* (FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.SIZE RFC822.TEXT ENVELOPE BODY "
        b"BODYSTRUCTURE UID MODSEQ BODY[] BODY[HEADER] BODY[TEXT] BODY[1.2.3] BODY[2.HEADER] BODY[2.TEXT] "
        b"BODY[HEADER.FIELDS.NOT (Received)] BODY.PEEK[3.HEADER.FIELDS (Subject)]<5.10>)\r\n"
    )
    cmd = one(wire)
    assert isinstance(cmd.args, Fetch)
    assert cmd.args.sequence == seq((2, 2), (4, 6), (None, None))
    assert [i.response_name() for i in cmd.args.items] == [
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "ENVELOPE",
        "BODY",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",
        "BODY[]",
        "BODY[HEADER]",
        "BODY[TEXT]",
        "BODY[1.2.3]",
        "BODY[2.HEADER]",
        "BODY[2.TEXT]",
        "BODY[HEADER.FIELDS.NOT (RECEIVED)]",
        "BODY[3.HEADER.FIELDS (SUBJECT)]<5>",
    ]


# -- SEARCH ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "want"),
    [
        (b"ALL", All()),
        (b"NEW", And((HasFlag("\\Recent"), Not(HasFlag("\\Seen"))))),
        (b"OLD", Not(HasFlag("\\Recent"))),
        (b"UNSEEN UNANSWERED", And((Not(HasFlag("\\Seen")), Not(HasFlag("\\Answered"))))),
        (b"KEYWORD $Forwarded", HasFlag("$Forwarded")),
        (b"UNKEYWORD $Junk", Not(HasFlag("$Junk"))),
        (b'FROM "Alice Smith"', Header("From", "Alice Smith", address=True)),
        (
            b"TO bob CC carol BCC dave",
            And((Header("To", "bob", True), Header("Cc", "carol", True), Header("Bcc", "dave", True))),
        ),
        (b'SUBJECT ""', Header("Subject", "")),
        (b"HEADER X-Mailer mutt", Header("X-Mailer", "mutt")),
        (b"BODY hello TEXT world", And((Body("hello"), Body("world", whole=True)))),
        (b'BEFORE "1-Feb-2024"', DateKey("internal", "before", date(2024, 2, 1))),
        (b"ON 29-feb-2024", DateKey("internal", "on", date(2024, 2, 29))),
        (b"SENTBEFORE 01-Mar-2024", DateKey("sent", "before", date(2024, 3, 1))),
        (b"SENTON 1-Mar-2024", DateKey("sent", "on", date(2024, 3, 1))),
        (b"SENTSINCE 1-Mar-2024", DateKey("sent", "since", date(2024, 3, 1))),
        (b"LARGER 1024 SMALLER 4096", And((Size("larger", 1024), Size("smaller", 4096)))),
        (b"UID 1:5,9", Seq(seq((1, 5), (9, 9)), uid=True)),
        (b"2:4", Seq(seq((2, 4)))),
        (b"$", Seq(SequenceSet(saved=True))),
        (b"OR SEEN FLAGGED", Or(HasFlag("\\Seen"), HasFlag("\\Flagged"))),
        (
            b"OR (SEEN DRAFT) NOT UNDRAFT",
            Or(And((HasFlag("\\Seen"), HasFlag("\\Draft"))), Not(Not(HasFlag("\\Draft")))),
        ),
        (b"NOT (DELETED)", Not(HasFlag("\\Deleted"))),
        (b"MODSEQ 620162338", ModSeq(620162338)),
        (b'MODSEQ "/flags/\\\\draft" all 620162338', ModSeq(620162338, "/flags/\\draft", "all")),
        (
            b"ANSWERED DELETED DRAFT FLAGGED RECENT SEEN",
            And(tuple(HasFlag(f) for f in ("\\Answered", "\\Deleted", "\\Draft", "\\Flagged", "\\Recent", "\\Seen"))),
        ),
        (b"UNDELETED UNFLAGGED", And((Not(HasFlag("\\Deleted")), Not(HasFlag("\\Flagged"))))),
    ],
)
def test_search_keys(args: bytes, want: object) -> None:
    cmd = one(b"s SEARCH " + args + b"\r\n")
    assert cmd.args == Search(want)  # type: ignore[arg-type]


def test_search_charset_and_return() -> None:
    cmd = one(b"s SEARCH RETURN (MIN COUNT) CHARSET utf-8 SUBJECT {6}\r\nR\xc3\xa9sum\r\n")
    assert cmd.args == Search(Header("Subject", "Résum"), "UTF-8", ("MIN", "COUNT"))
    assert one(b"s SEARCH RETURN () ALL\r\n").args == Search(All(), None, ("ALL",))


def test_search_unknown_charset_is_no_badcharset() -> None:
    exc = error(b"s SEARCH CHARSET KOI8-R TEXT x\r\n")
    assert (exc.tag, exc.status, exc.code) == ("s", "NO", "BADCHARSET (US-ASCII UTF-8)")
    # refused before the literal is invited: the client sends nothing more
    exc = error(b"s SEARCH CHARSET ISO-2022-JP TEXT {4}\r\n")
    assert (exc.status, exc.code) == ("NO", "BADCHARSET (US-ASCII UTF-8)")


def test_search_nesting_is_bounded() -> None:
    assert error(b"s SEARCH " + b"NOT " * 200 + b"ALL\r\n").status == "BAD"
    assert error(b"s SEARCH " + b"(" * 200 + b"ALL" + b")" * 200 + b"\r\n").status == "BAD"


# -- other commands ---------------------------------------------------------------------
def test_append_with_flags_date_and_literal() -> None:
    wire = b'A003 APPEND saved-messages (\\Seen $Fwd) " 7-Feb-1994 21:52:25 -0800" {12}\r\nHello Joe!\r\n\r\n'
    results = drive(wire)
    assert results[0] == CONTINUE
    cmd = results[1]
    assert isinstance(cmd, Command)
    assert cmd.args == Append("saved-messages", ("\\Seen", "$Fwd"), 760686745.0, b"Hello Joe!\r\n")


def test_append_date_forms_and_epoch() -> None:
    def when(text: bytes) -> float | None:
        args = one(b"a APPEND INBOX " + text + b" {1}\r\nx\r\n").args
        assert isinstance(args, Append)
        return args.internal_date

    assert when(b'"01-Jan-1970 00:00:00 +0000"') == 0.0
    assert when(b'"1-Jan-1970 01:00:00 +0100"') == 0.0
    assert when(b'"31-Dec-1969 23:00:00 -0100"') == 0.0


def test_create_special_use_and_list_variants() -> None:
    assert one(b"a CREATE Spam (USE (\\Junk))\r\n").args == Mailbox("Spam", ("\\Junk",))
    cmd = one(b'a LIST "" ("INBOX" "Sent") RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n')
    assert cmd.args == ListMailboxes("", ("INBOX", "Sent"), (), ("CHILDREN", "STATUS"), ("MESSAGES", "UNSEEN"))
    assert one(b'a LIST "" "%"\r\n').args == ListMailboxes("", ("%",))
    assert one(b"a LIST ~/Mail %/foo*\r\n").args == ListMailboxes("~/Mail", ("%/foo*",))


def test_store_unchangedsince_and_silent_modes() -> None:
    cmd = one(b"a UID STORE 1:10 (UNCHANGEDSINCE 320162338) -FLAGS.SILENT ($Junk \\Flagged)\r\n")
    assert cmd.args == Store(seq((1, 10)), FlagMode.REMOVE, True, ("$Junk", "\\Flagged"), 320162338)
    assert cmd.uid


def test_system_flags_are_canonical() -> None:
    cmd = one(b"a STORE 1 FLAGS (\\seen \\ANSWERED \\Flagged)\r\n")
    assert isinstance(cmd.args, Store)
    assert cmd.args.flags == ("\\Seen", "\\Answered", "\\Flagged")


def test_id_nil_and_enable_many() -> None:
    assert one(b"a ID NIL\r\n").args == Id(None)
    assert one(b"a ID ()\r\n").args == Id(())
    assert one(b"a ENABLE CONDSTORE utf8=accept\r\n").args == Enable(("CONDSTORE", "UTF8=ACCEPT"))


def test_idle_done_and_sasl_continuations() -> None:
    assert is_done(b"DONE\r\n") and is_done(b"done\n")
    assert not is_done(b"a NOOP\r\n")
    assert parse_sasl_response(b"AGFsaWNlAHNlY3JldA==\r\n", "a") == b"\x00alice\x00secret"
    assert parse_sasl_response(b"*\r\n", "a") is None
    assert parse_sasl_response(b"\r\n", "a") == b""
    with pytest.raises(ParseError) as excinfo:
        parse_sasl_response(b"not base64!\r\n", "t9")
    assert excinfo.value.tag == "t9"


# -- literals ---------------------------------------------------------------------------
def test_login_with_two_synchronizing_literals() -> None:
    results = drive(b"a1 LOGIN {5}\r\nalice {8}\r\np\xc3\xa4ssw\xc3\xb6\r\n")
    assert results[:2] == [CONTINUE, CONTINUE]
    assert results[2] == Command("a1", "LOGIN", Login("alice", "pässwö"))


def test_non_synchronizing_literal_gets_no_continuation() -> None:
    results = drive(b"a APPEND INBOX {5+}\r\nhello\r\n")
    assert results == [Command("a", "APPEND", Append("INBOX", (), None, b"hello"))]


def test_empty_literal_then_more_arguments() -> None:
    assert one(b'a LOGIN {0}\r\n ""\r\n').args == Login("", "")


def test_literal_minus_limit_closes() -> None:
    exc = error(b"a APPEND INBOX {4097+}\r\n" + b"x" * 4097 + b"\r\n")
    assert (exc.tag, exc.status, exc.code, exc.close) == ("a", "BAD", "TOOBIG", True)
    assert one(b"a APPEND INBOX {4096+}\r\n" + b"x" * 4096 + b"\r\n").name == "APPEND"


def test_literal_plus_mode_has_no_small_limit() -> None:
    reader = CommandReader(max_literal=1 << 20, max_nonsync=None)
    assert one(b"a APPEND INBOX {5000+}\r\n" + b"x" * 5000 + b"\r\n", reader).name == "APPEND"


def test_synchronizing_append_over_the_limit_is_no_toobig_without_continuation() -> None:
    """RELIABILITY P12: `a APPEND INBOX {999999999}` -> NO [TOOBIG], no "+"."""
    reader = CommandReader(max_literal=1000)
    results = drive(b"a APPEND INBOX {999999999}\r\nb NOOP\r\n", reader)
    assert isinstance(results[0], ParseError)
    assert (results[0].status, results[0].code, results[0].close) == ("NO", "TOOBIG", False)
    assert results[1] == Command("b", "NOOP")  # the client never sent the literal


def test_tiny_cap_before_login() -> None:
    """RELIABILITY P12: before login `a LOGIN {4294967295}` gets no "+" and a BAD."""
    reader = CommandReader(max_literal=1024, max_argument=1024)
    exc = error(b"a LOGIN {4294967295}\r\n", reader)
    assert (exc.status, exc.code) == ("BAD", "TOOBIG")
    exc = error(b"a LOGIN {99999999999999999999999999999999}\r\n", reader)
    assert exc.code == "TOOBIG"


def test_arguments_of_other_commands_are_bounded_together() -> None:
    reader = CommandReader(max_literal=1 << 20, max_argument=100)
    results = drive(b"a LOGIN {60}\r\n" + b"u" * 60 + b" {60}\r\n", reader)
    assert results[0] == CONTINUE
    assert isinstance(results[1], ParseError)
    assert (results[1].status, results[1].code) == ("BAD", "TOOBIG")
    assert len(results) == 2  # the second literal was not invited


def test_rejected_command_consumes_its_non_synchronizing_literal() -> None:
    """RELIABILITY P11: the literal's octets never run as a command."""
    wire = b"a APPEND INBOX (\\Bogus flag) {16+}\r\nb DELETE INBOX\r\n\r\nc NOOP\r\n"
    results = drive(wire)
    assert len(results) == 2
    assert isinstance(results[0], ParseError) and results[0].tag == "a"
    assert results[1] == Command("c", "NOOP")


def test_p11_append_to_missing_mailbox_is_one_command() -> None:
    results = drive(b"a APPEND nosuch (\\Seen) {16+}\r\nb DELETE INBOX\r\n\r\n")
    assert results == [Command("a", "APPEND", Append("nosuch", ("\\Seen",), None, b"b DELETE INBOX\r\n"))]


def test_synchronizing_literal_of_a_bad_command_is_refused_early() -> None:
    results = drive(b"a NOOP {3}\r\nb NOOP\r\n")
    assert isinstance(results[0], ParseError) and results[0].tag == "a"
    assert results[1] == Command("b", "NOOP")
    results = drive(b"a FROBNICATE {3}\r\nb NOOP\r\n")
    assert isinstance(results[0], ParseError) and CONTINUE not in results


def test_discarded_literal_then_further_literals_of_the_same_command() -> None:
    wire = b"a BOGUS {3+}\r\nxyz {2+}\r\nab\r\nb NOOP\r\n"
    results = drive(wire)
    assert [type(r).__name__ for r in results] == ["ParseError", "Command"]


@pytest.mark.parametrize(
    "wire",
    [
        b'a LOGIN "u\x00x" p\r\n',  # RELIABILITY P10: NUL in a quoted string
        b"a APPEND INBOX {5}\r\nab\x00cd\r\n",  # ... and in a literal
        b"a APPEND INBOX {5+}\r\nab\x00cd\r\n",
        b"a NOOP\x00\r\n",
    ],
)
def test_nul_is_bad_and_the_connection_still_works(wire: bytes) -> None:
    results = drive(wire + b"b NOOP\r\n")
    assert isinstance(results[-2], ParseError) and results[-2].status == "BAD"
    assert results[-1] == Command("b", "NOOP")


def test_reader_state_machine_misuse_is_a_bug() -> None:
    reader = CommandReader(max_literal=100)
    step = reader.feed_line(b"a LOGIN {3}\r\n")
    assert step == LiteralRequest(3, synchronizing=True)
    assert reader.in_command
    with pytest.raises(RuntimeError):
        reader.feed_line(b"next\r\n")
    with pytest.raises(RuntimeError):
        reader.feed_literal(b"toolong")
    with pytest.raises(RuntimeError):
        reader.literal_discarded()


# -- errors -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("wire", "tag"),
    [
        (b"\r\n", "*"),
        (b"+ NOOP\r\n", "*"),
        (b"* NOOP\r\n", "*"),
        (b"a{ NOOP\r\n", "*"),
        (b"a\r\n", "a"),
        (b"a \r\n", "a"),
        (b"a FROBNICATE\r\n", "a"),
        (b"a UID NOOP\r\n", "a"),
        (b"a UID\r\n", "a"),
        (b"a NOOP extra\r\n", "a"),
        (b"a NOOP \r\n", "a"),
        (b"a  NOOP\r\n", "a"),
        (b"a LOGIN onlyuser\r\n", "a"),
        (b'a LOGIN "unterminated\r\n', "a"),
        (b'a LOGIN "bad\\escape" p\r\n', "a"),
        (b'a LOGIN "\xff\xfe" p\r\n', "a"),  # 8-bit quoted string that is not UTF-8
        (b"a LOGIN {3}x\r\n", "a"),
        (b"a SELECT\r\n", "a"),
        (b"a SELECT INBOX (QRESYNC)\r\n", "a"),
        (b"a FETCH 0 FLAGS\r\n", "a"),
        (b"a FETCH 1: FLAGS\r\n", "a"),
        (b"a FETCH 1:5, FLAGS\r\n", "a"),
        (b"a FETCH 1 (FLAGS\r\n", "a"),
        (b"a FETCH 1 ()\r\n", "a"),
        (b"a FETCH 1 FOO\r\n", "a"),
        (b"a FETCH 1 BODY.PEEK\r\n", "a"),
        (b"a FETCH 1 BODY[1.]\r\n", "a"),
        (b"a FETCH 1 BODY[MIME]\r\n", "a"),
        (b"a FETCH 1 BODY[0]\r\n", "a"),
        (b"a FETCH 1 BODY[HEADER.FIELDS ()]\r\n", "a"),
        (b"a FETCH 1 BODY[HEADER.FIELDS]\r\n", "a"),
        (b"a FETCH 1 BODY[TEXT]<0.0>\r\n", "a"),
        (b"a FETCH 1 BODY[TEXT]<5>\r\n", "a"),
        (b"a FETCH 1 (FLAGS) (VANISHED)\r\n", "a"),
        (b"a FETCH 1 ALL extra\r\n", "a"),
        (b"a FETCH 99999999999 FLAGS\r\n", "a"),
        (b"a STORE 1 FLAGS (\\Recent)\r\n", "a"),
        (b"a STORE 1 FLAGS (\\Bogus)\r\n", "a"),
        (b"a STORE 1 XFLAGS (\\Seen)\r\n", "a"),
        (b"a STORE 1 +FLAGS\r\n", "a"),
        (b'a APPEND INBOX "hello"\r\n', "a"),
        (b'a APPEND INBOX "32-Jan-2024 00:00:00 +0000" {1}\r\n', "a"),
        (b'a APPEND INBOX "01-Foo-2024 00:00:00 +0000" {1}\r\n', "a"),
        (b'a APPEND INBOX "01-Jan-2024 25:00:00 +0000" {1}\r\n', "a"),
        (b'a APPEND INBOX "01-Jan-2024 00:00:00 0000" {1}\r\n', "a"),
        (b"a SEARCH\r\n", "a"),
        (b"a SEARCH FROBNICATE\r\n", "a"),
        (b"a SEARCH OR SEEN\r\n", "a"),
        (b"a SEARCH (SEEN\r\n", "a"),
        (b"a SEARCH ()\r\n", "a"),
        (b"a SEARCH BEFORE 30-Feb-2024\r\n", "a"),
        (b"a SEARCH LARGER -1\r\n", "a"),
        (b"a SEARCH RETURN (FOO) ALL\r\n", "a"),
        (b'a SEARCH MODSEQ "/flags/x" bogus 5\r\n', "a"),
        (b"a STATUS INBOX (BOGUS)\r\n", "a"),
        (b"a STATUS INBOX ()\r\n", "a"),
        (b'a LIST ""\r\n', "a"),
        (b'a LIST "" * FOO (x)\r\n', "a"),
        (b'a ID ("key")\r\n', "a"),
        (b"a ENABLE\r\n", "a"),
        (b"a AUTHENTICATE PLAIN !!!\r\n", "a"),
        (b"a COPY 1\r\n", "a"),
        (b"a CREATE x (USE)\r\n", "a"),
        (b"a LOGIN a\rb c\r\n", "a"),
    ],
)
def test_errors_are_bad_with_the_right_tag(wire: bytes, tag: str) -> None:
    exc = error(wire)
    assert exc.tag == tag
    assert exc.status == "BAD"
    assert not exc.close


@pytest.mark.parametrize(
    "wire",
    [
        b'a SELECT "&Jjo"\r\n',  # unterminated modified UTF-7
        b'a SELECT "&AGE-"\r\n',  # printable ASCII must not be encoded
        b'a SELECT "caf\xc3\xa9"\r\n',  # raw UTF-8 is not modified UTF-7
        b'a CREATE "a&b"\r\n',
    ],
)
def test_a_name_that_is_not_modified_utf7_is_no_not_bad(wire: bytes) -> None:
    """The command is well formed; its name is not one we can have (Dovecot: NO)."""
    exc = error(wire)
    assert (exc.tag, exc.status, exc.message) == ("a", "NO", "Mailbox name is not valid mUTF-7")


def test_a_pattern_that_is_not_modified_utf7_is_taken_as_written() -> None:
    assert parse_command(b'a LIST "" "a&b*"').args.patterns == ("a&b*",)  # type: ignore[union-attr]


def test_the_keyword_nil_is_bad() -> None:
    assert error(b"a STORE 1 +FLAGS (NIL)\r\n").status == "BAD"
    assert error(b"a STORE 1 FLAGS nil\r\n").status == "BAD"


def test_parse_command_direct() -> None:
    assert parse_command(b"x NOOP") == Command("x", "NOOP")
    with pytest.raises(ParseError):
        parse_command(b"x FETCH")


# -- sequence sets -----------------------------------------------------------------------
def test_sequence_set_resolution() -> None:
    s = seq((5, 2), (None, None), (8, 8), (9, 10))
    assert s.resolve(12) == [(2, 5), (8, 10), (12, 12)]
    assert s.members([1, 2, 3, 7, 8, 12, 13]) == [2, 3, 8, 13]
    assert s.members([1, 2, 3], largest=3) == [2, 3]
    assert s.members([]) == []
    assert seq((1, None)).members([4, 9]) == [4, 9]
    assert seq((100, None)).members([4, 9]) == [9]  # RFC 3501 §6.4.8: n:* includes the largest
    assert str(s) == "5:2,*,8,9:10"
    assert str(SequenceSet(saved=True)) == "$"


# -- fuzz ---------------------------------------------------------------------------------
FRAGMENTS = [
    b"a ", b"UID ", b"FETCH ", b"STORE ", b"SEARCH ", b"APPEND ", b"LOGIN ", b"LIST ", b"SELECT ", b"ID ",
    b"1", b"*", b":", b",", b"$", b" ", b"(", b")", b"[", b"]", b"<", b">", b".", b"\\Seen", b"BODY",
    b"BODY.PEEK", b"HEADER.FIELDS", b"MIME", b"TEXT", b"NOT ", b"OR ", b"CHARSET ", b"UTF-8", b'"', b"\\",
    b"{3}\r\n", b"{0+}\r\n", b"{5+}\r\n", b"\r\n", b"\n", b"\x00", b"\xff", b"&", b"-", b"INBOX", b"NIL",
    b"01-Jan-2024", b"(CHANGEDSINCE 5)", b"+FLAGS.SILENT", b"RETURN ", b"{99999999999}\r\n",
]  # fmt: skip


@settings(max_examples=400)
@given(st.binary(max_size=600))
def test_fuzz_any_bytes_end_in_commands_or_parse_errors(wire: bytes) -> None:
    for result in drive(wire, CommandReader(max_literal=4096, max_argument=512)):
        assert isinstance(result, Command | ParseError | str)


@settings(max_examples=600)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40))
def test_fuzz_grammar_fragments(parts: list[bytes]) -> None:
    wire = b"".join(parts) + b"\r\n"
    for result in drive(wire, CommandReader(max_literal=4096, max_argument=512)):
        assert isinstance(result, Command | ParseError | str)
