"""The From:/Sender: addresses a submitted message claims (issue 16 finding 7), read from its header
section only, with the bounds that keep the stdlib address parser off its quadratic cases."""

from __future__ import annotations

import pytest

from mailstandby.intake import MAX_ADDRESS_HEADER, MAX_HEADER_BLOCK, HeaderTooBig, header_senders


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b'From: "Bob (CEO)" <bob@corp.test>\r\n', [("From", "bob@corp.test")]),
        (b"From: a@corp.test\r\nSender: b@corp.test\r\n", [("From", "a@corp.test"), ("Sender", "b@corp.test")]),
        (b"From: a@corp.test,\r\n b@corp.test\r\n", [("From", "a@corp.test"), ("From", "b@corp.test")]),
        (b"from: Team: a@corp.test, c@corp.test;\r\n", [("from", "a@corp.test"), ("from", "c@corp.test")]),
        (b"From: undisclosed:;\r\n", [("From", "")]),
        (b"From: garbage\r\n", [("From", "garbage")]),
        (b"To: bob@corp.test\r\nReply-To: bob@corp.test\r\n", []),
        (b"", []),
    ],
)
def test_addresses(head: bytes, expected: list[tuple[str, str]]) -> None:
    assert header_senders(head + b"Subject: x\r\n\r\nFrom: body@corp.test\r\n") == expected


def test_body_is_not_read() -> None:
    assert header_senders(b"\r\nFrom: bob@corp.test\r\n") == []


def test_bounds() -> None:
    with pytest.raises(ValueError):
        header_senders(b"From: " + b'"' * (MAX_ADDRESS_HEADER + 1) + b"\r\n\r\n")
    with pytest.raises(ValueError):
        header_senders(b"From: " + b"(" * 1500 + b"a@corp.test\r\n\r\n")  # RecursionError inside the parser
    with pytest.raises(HeaderTooBig):
        header_senders(b"X: " + b"x" * MAX_HEADER_BLOCK + b"\r\nFrom: bob@corp.test\r\n\r\n")
