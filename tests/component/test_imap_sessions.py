"""Several sessions on one mailbox: what each one is told, and in what order (issue 17's symptoms).

RFC 3501 §2.3.1.2, §5.2, §7.2.6, §7.4.1; \\Recent per §2.3.2 (exactly one session gets it);
RFC 2180 §4.1 (multi-accessed mailboxes). Over both stores and both event loops.
"""

from __future__ import annotations

from imap_harness import ALICE, IMAPRig, RawIMAP, make_rig, message, rig, store_factory

__all__ = ["make_rig", "rig", "store_factory"]  # fixtures

FLAGS_FOO = b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Foo)\r\n"
PERMANENT_FOO = b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Foo \\*)] Flags permitted.\r\n"


async def session(rig: IMAPRig, command: bytes = b"SELECT INBOX") -> RawIMAP:
    client = await rig.raw()
    await client.login()
    await client.cmd(b"S " + command)
    return client


async def test_an_expunge_of_a_message_never_announced_is_dropped(rig: IMAPRig) -> None:
    """Appended and expunged elsewhere between two NOOPs: no `* 2 EXPUNGE` above the known count."""
    await rig.store.ensure_user(ALICE)
    await rig.store.append(ALICE, "INBOX", message("first"))
    a = await session(rig)
    b = await session(rig)
    await b.send(b"b1 APPEND INBOX (\\Deleted) {%d}\r\n" % len(message("second")))
    assert (await b.line()).startswith(b"+")
    await b.send(message("second") + b"\r\n")
    await b.until(b"b1")
    await b.cmd(b"b2 EXPUNGE")
    assert await a.cmd(b"a1 NOOP") == []
    assert await a.cmd(b"a2 FETCH 1:* UID") == [b"* 1 FETCH (UID 1)\r\n"]


async def test_a_held_expunge_follows_the_exists_that_announced_it(rig: IMAPRig) -> None:
    """Announced during a FETCH (expunges held), expunged later: EXISTS first, EXPUNGE after it."""
    await rig.store.ensure_user(ALICE)
    await rig.store.append(ALICE, "INBOX", message("first"))
    a = await session(rig)
    _, uid = await rig.store.append(ALICE, "INBOX", message("second"), frozenset({"\\Deleted"}))
    assert await a.cmd(b"a1 FETCH 1 UID") == [b"* 1 FETCH (UID 1)\r\n", b"* 2 EXISTS\r\n"]
    await rig.store.expunge(ALICE, "INBOX", [uid])
    assert await a.cmd(b"a2 NOOP") == [b"* 2 EXPUNGE\r\n"]


async def test_a_keyword_set_elsewhere_is_announced_before_the_fetch_that_shows_it(rig: IMAPRig) -> None:
    """RFC 3501 §7.2.6: an untagged FLAGS (and PERMANENTFLAGS) lists the keyword first."""
    await rig.store.ensure_user(ALICE)
    await rig.store.append(ALICE, "INBOX", message("first"))
    a = await session(rig)
    b = await session(rig)
    await b.cmd(b"b1 STORE 1 +FLAGS.SILENT ($Foo)")
    assert await a.cmd(b"a1 NOOP") == [FLAGS_FOO, PERMANENT_FOO, b"* 1 FETCH (FLAGS ($Foo))\r\n"]
    assert await a.cmd(b"a2 FETCH 1 FLAGS") == [b"* 1 FETCH (FLAGS ($Foo))\r\n"]  # told once

