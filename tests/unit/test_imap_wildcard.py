"""LIST patterns (RFC 3501 §6.3.8) matched without backtracking: same answers as the regex they replace.

`old_regex` is the translation the server used before (wildcards as `.*` and
`[^/]*`): it is the reference semantics on small inputs, where its
backtracking costs nothing.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstandby.imap.wildcard import Wildcard


def old_regex(pattern: str) -> re.Pattern[str]:
    if pattern[:5].upper() == "INBOX" and (len(pattern) == 5 or pattern[5] in "/*%"):
        pattern = "INBOX" + pattern[5:]
    out = [".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in pattern]
    return re.compile("".join(out), re.DOTALL)


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*", "", True),
        ("*", "a/b/c", True),
        ("%", "a/b", False),
        ("%", "abc", True),
        ("", "", True),
        ("", "a", False),
        ("a%", "a", True),
        ("Projects/%", "Projects/2026", True),
        ("Projects/%", "Projects/2026/Q1", False),
        ("Projects/*", "Projects/2026/Q1", True),
        ("%/%", "a/b", True),
        ("%/%", "a/b/c", False),
        ("inbox", "INBOX", True),
        ("inbox/*", "INBOX/x", True),
        ("inboxes", "INBOXES", False),
        ("*a*a*b", "aaaaaaaaab", True),
        ("*a*a*b", "aaaaaaaaaa", False),
        ("**%%*", "x/y", True),
        ("%%", "x/y", False),
        ("a*%b", "a/x/b", True),
        ("a%*b", "a/x/b", True),
        ("&AMk-*", "&AMk-t&AOk-", True),
    ],
)
def test_table(pattern: str, name: str, expected: bool) -> None:
    assert Wildcard.compile(pattern).matches(name) is expected
    assert (old_regex(pattern).fullmatch(name) is not None) is expected


_ALPHABET = st.sampled_from("ab/*%I")


@given(
    st.text(alphabet=_ALPHABET, max_size=10),
    st.text(alphabet=st.sampled_from("ab/INBOXnbox"), max_size=12),
)
@settings(max_examples=3000, deadline=None)
def test_same_answers_as_the_regex(pattern: str, name: str) -> None:
    assert Wildcard.compile(pattern).matches(name) is (old_regex(pattern).fullmatch(name) is not None)


@given(st.text(max_size=8), st.text(max_size=8))
@settings(max_examples=1000, deadline=None)
def test_any_characters(pattern: str, name: str) -> None:
    assert Wildcard.compile(pattern).matches(name) is (old_regex(pattern).fullmatch(name) is not None)


def test_the_attack_pattern_is_answered() -> None:
    """The pattern that made the regex backtrack for hours: here a handful of bit operations per character."""
    pattern = "*a" * 200 + "*b"
    assert not Wildcard.compile(pattern).matches("a" * 255)
    assert Wildcard.compile(pattern).matches("a" * 200 + "b")
