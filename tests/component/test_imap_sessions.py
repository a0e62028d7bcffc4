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
    assert await a.cmd(b"a1 FETCH 1 UID") == [b"* 1 FETCH (UID 1)\r\n", b"* 2 EXISTS\r\n", b"* 2 RECENT\r\n"]
    await rig.store.expunge(ALICE, "INBOX", [uid])
    assert await a.cmd(b"a2 NOOP") == [b"* 2 EXPUNGE\r\n"]


async def test_a_keyword_set_elsewhere_is_announced_before_the_fetch_that_shows_it(rig: IMAPRig) -> None:
    """RFC 3501 §7.2.6: an untagged FLAGS (and PERMANENTFLAGS) lists the keyword first."""
    await rig.store.ensure_user(ALICE)
    await rig.store.append(ALICE, "INBOX", message("first"))
    a = await session(rig)
    b = await session(rig)
    await b.cmd(b"b1 STORE 1 +FLAGS.SILENT ($Foo)")
    assert await a.cmd(b"a1 NOOP") == [FLAGS_FOO, PERMANENT_FOO, b"* 1 FETCH (FLAGS (\\Recent $Foo))\r\n"]
    assert await a.cmd(b"a2 FETCH 1 FLAGS") == [b"* 1 FETCH (FLAGS (\\Recent $Foo))\r\n"]  # told once


async def test_a_new_message_with_a_new_keyword_is_announced_before_fetch_flags(rig: IMAPRig) -> None:
    await rig.store.ensure_user(ALICE)
    a = await session(rig, b"EXAMINE INBOX")
    await rig.store.append(ALICE, "INBOX", message("first"), frozenset({"$Foo"}))
    assert await a.cmd(b"a1 NOOP") == [b"* 1 EXISTS\r\n", b"* 1 RECENT\r\n"]
    lines = await a.cmd(b"a2 FETCH 1 (FLAGS)")
    assert lines == [
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Foo)\r\n",
        b"* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n",
        b"* 1 FETCH (FLAGS (\\Recent $Foo))\r\n",
    ]


# -- \Recent (RFC 3501 §2.3.2) -------------------------------------------------------------------
async def recent_flag(client: RawIMAP, tag: bytes, seq: int) -> bool:
    (line,) = [ln for ln in await client.cmd(tag + b" FETCH %d FLAGS" % seq) if b"FETCH" in ln]
    return b"\\Recent" in line


async def test_exactly_one_session_gets_each_new_message_as_recent(rig: IMAPRig) -> None:
    await rig.store.ensure_user(ALICE)
    a = await session(rig)
    b = await session(rig)
    await rig.store.append(ALICE, "INBOX", message("new"))
    told = [await a.cmd(b"a1 NOOP"), await b.cmd(b"b1 NOOP")]
    assert sorted(told) == [[b"* 1 EXISTS\r\n"], [b"* 1 EXISTS\r\n", b"* 1 RECENT\r\n"]]
    assert sorted([await recent_flag(a, b"a2", 1), await recent_flag(b, b"b2", 1)]) == [False, True]


async def test_select_examine_and_status_report_recent(rig: IMAPRig) -> None:
    await rig.store.ensure_user(ALICE)
    for subject in ("one", "two"):
        await rig.store.append(ALICE, "INBOX", message(subject))
    c = await rig.raw()
    await c.login()
    assert await c.cmd(b"c1 STATUS INBOX (RECENT)") == [b"* STATUS INBOX (RECENT 2)\r\n"]
    lines = await c.cmd(b"c2 EXAMINE INBOX")
    assert b"* 2 RECENT\r\n" in lines
    assert await c.cmd(b"c3 SEARCH RECENT") == [b"* SEARCH 1 2\r\n"]
    assert await c.cmd(b"c4 STATUS INBOX (RECENT)") == [b"* STATUS INBOX (RECENT 2)\r\n"]  # EXAMINE claims nothing
    assert b"* 2 RECENT\r\n" in await c.cmd(b"c5 SELECT INBOX")
    assert await c.cmd(b"c6 STATUS INBOX (RECENT)") == [b"* STATUS INBOX (RECENT 0)\r\n"]
    other = await rig.raw()
    await other.login()
    assert b"* 0 RECENT\r\n" in await other.cmd(b"o1 SELECT INBOX")
    assert await other.cmd(b"o2 SEARCH RECENT") == [b"* SEARCH\r\n"]


async def test_search_new_old_recent(rig: IMAPRig) -> None:
    await rig.store.ensure_user(ALICE)
    await rig.store.append(ALICE, "INBOX", message("old"))
    await rig.store.claim_recent(ALICE, "INBOX", 1)  # an earlier session had it
    await rig.store.append(ALICE, "INBOX", message("seen"), frozenset({"\\Seen"}))
    await rig.store.append(ALICE, "INBOX", message("unseen"))
    c = await session(rig)
    assert await c.cmd(b"c1 SEARCH RECENT") == [b"* SEARCH 2 3\r\n"]
    assert await c.cmd(b"c2 SEARCH NEW") == [b"* SEARCH 3\r\n"]
    assert await c.cmd(b"c3 SEARCH OLD") == [b"* SEARCH 1\r\n"]
    assert await c.cmd(b"c4 UID SEARCH NOT RECENT") == [b"* SEARCH 1\r\n"]


async def test_copied_and_appended_messages_are_recent(rig: IMAPRig) -> None:
    await rig.store.ensure_user(ALICE)
    await rig.store.append(ALICE, "INBOX", message("first"))
    c = await session(rig)
    await c.cmd(b"c0 STORE 1 +FLAGS.SILENT (\\Seen)")
    assert await c.cmd(b"c1 COPY 1 INBOX", b"OK [COPYUID") == [b"* 2 EXISTS\r\n", b"* 2 RECENT\r\n"]
    assert await c.cmd(b"c2 FETCH 2 FLAGS") == [b"* 2 FETCH (FLAGS (\\Seen \\Recent))\r\n"]
    await c.cmd(b"c3 COPY 1:2 Trash", b"OK [COPYUID")
    body = message("appended")
    await c.cmd(b"c4 APPEND Trash {%d+}\r\n" % len(body) + body, b"OK [APPENDUID")
    assert await c.cmd(b"c5 STATUS Trash (MESSAGES RECENT)") == [b"* STATUS Trash (MESSAGES 3 RECENT 3)\r\n"]
    assert b"* 3 RECENT\r\n" in await c.cmd(b"c6 SELECT Trash")


# -- the smaller symptoms --------------------------------------------------------------------------
ADDRESS_FORMS = [  # RFC 5322 §3.4 and the obsolete forms of §4.4
    '"Smith, J" <user@domain.test>',
    "user@domain.test (Comment)",
    "user (c) @ domain.test",
    "Team: user@domain.test;",
    "<@route.test:user@domain.test>",
    "user @ domain . test",
    '"user"@domain.test',
    "Name\r\n <user@domain.test>",
    "other@domain.test",
    "x <user@domain.test.example>",
]


async def test_search_from_matches_every_address_form_as_dovecot(rig: IMAPRig) -> None:
    """RFC 3501 §6.4.4: FROM searches the address; the expected sets are what Dovecot 2.3 answers."""
    await rig.store.ensure_user(ALICE)
    for i, form in enumerate(ADDRESS_FORMS):
        await rig.store.append(ALICE, "INBOX", f"From: {form}\r\nSubject: form {i}\r\n\r\nbody\r\n".encode())
    c = await session(rig)
    expected = {
        b"FROM user@domain.test": b"* SEARCH 1 2 3 4 5 6 7 8 10\r\n",
        b'FROM "Smith, J"': b"* SEARCH 1\r\n",
        b"FROM Comment": b"* SEARCH 2\r\n",  # a comment after a bare address is its name
        b"FROM Team": b"* SEARCH 4\r\n",
        b"FROM route.test": b"* SEARCH 5\r\n",
        b'FROM "c <user"': b"* SEARCH 3\r\n",
        b"HEADER From user@domain.test": b"* SEARCH 1 2 4 5 8 10\r\n",  # HEADER stays the raw field
    }
    for criteria, line in expected.items():
        assert await c.cmd(b"s SEARCH " + criteria) == [line], criteria


async def test_keyword_nil_is_refused(rig: IMAPRig) -> None:
    await rig.store.ensure_user(ALICE)
    await rig.store.append(ALICE, "INBOX", message("first"))
    c = await session(rig)
    await c.cmd(b"c1 STORE 1 +FLAGS (NIL)", b"BAD")
    await c.cmd(b"c2 STORE 1 +FLAGS nil", b"BAD")
    await c.cmd(b"c3 APPEND INBOX (NIL) {1+}\r\nx", b"BAD")
    assert await c.cmd(b"c4 FETCH 1 FLAGS") == [b"* 1 FETCH (FLAGS (\\Recent))\r\n"]
    await c.cmd(b'c5 STORE 1 +FLAGS ($Nil NILS)')  # only the exact word is refused


async def test_list_with_a_raw_ampersand_answers_ok(rig: IMAPRig) -> None:
    """Patterns that are not valid mUTF-7 are matched as written (Dovecot): never BAD, so a phone
    repeating them cannot reach the bad-command limit and lose its connection."""
    c = await rig.raw()
    await c.login()
    await c.cmd(b'c1 CREATE "a&-b"')
    for i in range(rig.settings.max_bad_commands + 1):
        assert await c.cmd(b'l%d LIST "" "a&b"' % i) == [b'* LIST (\\HasNoChildren) "/" a&-b\r\n']
    assert await c.cmd(b'c2 LIST "" "&"') == []
    assert await c.cmd(b'c3 LSUB "" "*&"') == []
    await c.cmd(b"c4 NOOP")


async def test_a_mailbox_name_that_is_not_mutf7_gets_no(rig: IMAPRig) -> None:
    c = await rig.raw()
    await c.login()
    for command in (b'SELECT "&Jjo"', b'EXAMINE "a&b"', b'CREATE "&Jjo"', b'STATUS "a&b" (MESSAGES)'):
        await c.cmd(b"c " + command, b"NO Mailbox name is not valid mUTF-7")


async def test_lsub_lists_an_unsubscribed_parent_as_noselect(rig: IMAPRig) -> None:
    """RFC 3501 §6.3.9: "foo/bar" subscribed, "foo" not: LSUB "" % returns foo with \\Noselect."""
    c = await rig.raw()
    await c.login()
    await c.cmd(b"c1 CREATE p/q")
    await c.cmd(b"c2 CREATE x/y/z")
    await c.cmd(b"c3 SUBSCRIBE p/q")
    await c.cmd(b"c4 SUBSCRIBE x/y/z")
    lines = await c.cmd(b'c5 LSUB "" "%"')
    assert b'* LSUB (\\Noselect) "/" p\r\n' in lines and b'* LSUB (\\Noselect) "/" x\r\n' in lines
    assert not any(b"p/q" in ln or b"x/y" in ln for ln in lines)
    assert await c.cmd(b'c6 LSUB "" "x/%"') == [b'* LSUB (\\Noselect) "/" x/y\r\n']
    assert await c.cmd(b'c7 LSUB "" "p/%"') == [b'* LSUB (\\HasNoChildren) "/" p/q\r\n']
    assert await c.cmd(b'c8 LSUB "" "p*"') == [b'* LSUB (\\HasNoChildren) "/" p/q\r\n']  # the child shows itself
    await c.cmd(b"c9 SUBSCRIBE p")
    assert b'* LSUB (\\HasChildren) "/" p\r\n' in await c.cmd(b'c10 LSUB "" "%"')  # subscribed: listed as such
