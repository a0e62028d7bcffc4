"""Failback sync decisions (sync/plan.py) and the IMAP client's pure helpers (sync/imapclient.py)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailstandby.sync.imapclient import (
    ConnectionLost,
    Response,
    internal_date,
    parse_uid_set,
    quote,
    tokenize,
)
from mailstandby.sync.plan import (
    Action,
    Kind,
    Reason,
    Record,
    StandbyMessage,
    State,
    decide,
    header_values,
    map_folder,
    message_id_of,
    trace_id,
    with_trace,
)

SEEN = frozenset({"\\Seen"})
DELETED = frozenset({"\\Deleted"})


def msg(flags: frozenset[str] = frozenset(), *, journaled: bool = False) -> StandbyMessage:
    return StandbyMessage("u@corp.test", "INBOX", 1, 7, flags, 1.0, journaled)


def rec(state: State, flags: frozenset[str] = frozenset(), attempts: int = 0, kind: Kind = Kind.APPEND) -> Record:
    return Record(kind, state, flags, attempts)


@pytest.mark.parametrize(
    ("message", "record", "restore", "want"),
    [
        (msg(), None, False, (Action.APPEND, Reason.NEW)),
        (msg(SEEN), rec(State.PENDING), False, (Action.APPEND, Reason.NEW)),
        (msg(), rec(State.PENDING, attempts=2), False, (Action.APPEND, Reason.RETRY)),
        (msg(), rec(State.DONE), False, (Action.NOTHING, Reason.IN_SYNC)),
        (msg(SEEN), rec(State.DONE), False, (Action.FLAGS, Reason.FLAGS_CHANGED)),
        (msg(SEEN), rec(State.DONE, SEEN), False, (Action.NOTHING, Reason.IN_SYNC)),
        (msg(frozenset({"$Label1"})), rec(State.DONE), False, (Action.NOTHING, Reason.IN_SYNC)),  # keywords stay
        (msg(), rec(State.FAILED, attempts=5), False, (Action.NOTHING, Reason.GAVE_UP)),
        (msg(DELETED), None, False, (Action.NOTHING, Reason.DELETED_ON_STANDBY)),
        (msg(DELETED), None, True, (Action.APPEND, Reason.NEW)),
        (msg(journaled=True), None, False, (Action.NOTHING, Reason.JOURNAL_UNCHANGED)),
        (msg(SEEN, journaled=True), None, False, (Action.FLAGS, Reason.NEW)),
        (msg(SEEN, journaled=True), rec(State.DONE, SEEN, kind=Kind.FLAGS), False, (Action.NOTHING, Reason.IN_SYNC)),
        (
            msg(SEEN | {"\\Flagged"}, journaled=True),
            rec(State.DONE, SEEN, kind=Kind.FLAGS),
            False,
            (Action.FLAGS, Reason.FLAGS_CHANGED),
        ),
        (msg(DELETED, journaled=True), None, False, (Action.NOTHING, Reason.JOURNAL_UNCHANGED)),
    ],
)
def test_decide(message: StandbyMessage, record: Record | None, restore: bool, want: tuple[Action, Reason]) -> None:
    decision = decide(message, record, restore_deleted=restore)
    assert (decision.action, decision.reason) == want


def test_folder_map() -> None:
    folders = {"Sent": "Sent Items", "Junk": ""}
    assert map_folder("Sent", folders) == "Sent Items"
    assert map_folder("Junk", folders) is None
    assert map_folder("INBOX", folders) == "INBOX"


def test_trace_header_is_prepended_and_read_back() -> None:
    body = b"From: a@b\r\nMessage-ID:\r\n <x@y>\r\n\r\nhello\r\n"
    traced = with_trace(body, trace_id(0xABC, 42))
    assert traced.endswith(body)
    header = traced.split(b"\r\n\r\n")[0] + b"\r\n"
    assert header_values(header) == ("<x@y>", "abc.42")
    assert message_id_of(traced) == "<x@y>"
    assert message_id_of(b"Subject: none\r\n\r\nbody") is None


def test_tokenize_fetch_with_literal() -> None:
    pieces = [
        b"* 3 FETCH (UID 9 FLAGS (\\Seen $X) BODY[HEADER.FIELDS (MESSAGE-ID X-MAILSTANDBY-SYNC)] {11}\r\n",
        b"Message-ID:",
        b")\r\n",
    ]
    assert tokenize(pieces) == [
        "*",
        "3",
        "FETCH",
        ["UID", "9", "FLAGS", ["\\Seen", "$X"], "BODY[HEADER.FIELDS (MESSAGE-ID X-MAILSTANDBY-SYNC)]", b"Message-ID:"],
    ]


def test_tokenize_list_and_response_codes() -> None:
    assert tokenize([b'* LIST (\\HasNoChildren \\Sent) "/" "Sent \\"Items\\""\r\n']) == [
        "*",
        "LIST",
        ["\\HasNoChildren", "\\Sent"],
        "/",
        'Sent "Items"',
    ]
    words = tokenize([b"s4 OK [APPENDUID 38505 3955:3957,3960] Append completed.\r\n"])
    assert Response("OK", " ".join(str(w) for w in words[2:])).code == ["APPENDUID", "38505", "3955:3957,3960"]
    with pytest.raises(ConnectionLost):
        tokenize([b"* FETCH (UID 1\r\n"])
    with pytest.raises(ConnectionLost):
        tokenize([b"* FETCH )\r\n"])


def test_uid_sets_dates_and_quoting() -> None:
    assert parse_uid_set("3955,3957:3959,4000:3999") == [3955, 3957, 3958, 3959, 3999, 4000]
    assert internal_date(1_750_000_000) == b'"15-Jun-2025 15:06:40 +0000"'
    assert internal_date(0) == b'" 1-Jan-1970 00:00:00 +0000"'
    assert quote('a"b\\c') == b'"a\\"b\\\\c"'
    with pytest.raises(ValueError):
        quote("line\r\nbreak")


@given(st.lists(st.binary(max_size=40), max_size=4), st.binary(max_size=60))
def test_tokenize_never_crashes_on_garbage(literals: list[bytes], text: bytes) -> None:
    pieces: list[bytes] = []
    for lit in literals:
        pieces += [text + b" {%d}\r\n" % len(lit), lit]
    pieces.append(text + b"\r\n")
    with contextlib.suppress(ConnectionLost):  # the only error it may raise
        tokenize(pieces)
