"""STORE's flag arithmetic: keywords compare without case, as Dovecot's (RFC 3501 §2.3.2 leaves it
to the server; tests/wire/test_imap_rules_differential.py compares with Dovecot itself)."""

from __future__ import annotations

from mailstandby.store.mailbox import FlagMode, apply_flags


def test_adding_another_spelling_keeps_the_one_the_message_has() -> None:
    assert apply_flags(frozenset({"$Label"}), frozenset({"$LABEL", "Foo"}), FlagMode.ADD) == {"$Label", "Foo"}


def test_removing_any_spelling_removes_it() -> None:
    assert apply_flags(frozenset({"$Label", "\\Seen"}), frozenset({"$label"}), FlagMode.REMOVE) == {"\\Seen"}


def test_setting_two_spellings_keeps_one() -> None:
    assert len(apply_flags(frozenset(), frozenset({"foo", "Foo"}), FlagMode.SET)) == 1
