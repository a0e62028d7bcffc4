"""SEARCH over big messages parses them in a worker thread, not on the event loop (issue 16: MIME
parsing of large messages off the loop); small ones stay on the loop, where a thread costs more."""

from __future__ import annotations

import threading

import pytest
from imap_harness import ALICE, IMAPRig, make_rig, message, rig, store_factory

from mailstandby.imap import selected
from mailstandby.imap.searching import Matcher

__all__ = ["make_rig", "rig", "store_factory"]  # fixtures


async def test_big_messages_are_searched_off_the_loop(rig: IMAPRig, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: dict[int, int] = {}  # uid -> thread that matched it
    original = Matcher.matches

    def matches(self: Matcher, key: object, c: selected.Candidate) -> bool:
        threads.setdefault(c.meta.uid, threading.get_ident())
        return original(self, key, c)  # type: ignore[arg-type]

    monkeypatch.setattr(Matcher, "matches", matches)
    await rig.store.ensure_user(ALICE)
    big = b"lorem ipsum\r\n" * (selected.SEARCH_ON_LOOP_SIZE // 13 + 1) + b"needle big\r\n"
    await rig.store.append(ALICE, "INBOX", message("big", big))
    await rig.store.append(ALICE, "INBOX", message("small", b"needle small\r\n"))
    client = await rig.raw()
    await client.login()
    await client.cmd(b"s SELECT INBOX")
    assert await client.cmd(b"t SEARCH BODY needle") == [b"* SEARCH 1 2\r\n"]
    assert await client.cmd(b"u SEARCH BODY big") == [b"* SEARCH 1\r\n"]
    loop_thread = threading.get_ident()
    assert threads[1] != loop_thread  # the big one
    assert threads[2] == loop_thread
