"""IMAP in the authenticated state: LIST/LSUB, CREATE/DELETE/RENAME, (UN)SUBSCRIBE, STATUS, APPEND,
SELECT/EXAMINE, NAMESPACE, ENABLE over both stores.

RFC 3501 §6.3, RFC 4315 APPENDUID, RFC 6154, RFC 7889; RELIABILITY P11, P12, P14, A7.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from imap_harness import (
    ALICE,
    IMAPRig,
    RigFactory,
    call,
    make_rig,
    message,
    rig,
    store_factory,
)

__all__ = ["make_rig", "rig", "store_factory"]  # fixtures


async def test_list_default_mailboxes(rig: IMAPRig) -> None:
    client = await rig.raw()
    await client.login()
    lines = await client.cmd(b'a LIST "" "*"')
    assert lines == [
        b'* LIST (\\HasNoChildren) "/" INBOX\r\n',
        b'* LIST (\\HasNoChildren \\Drafts) "/" Drafts\r\n',
        b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n',
        b'* LIST (\\HasNoChildren \\Trash) "/" Trash\r\n',
    ]
    assert await client.cmd(b'b LIST "" ""') == [b'* LIST (\\Noselect) "/" ""\r\n']
    lines = await client.cmd(b'c LIST (SPECIAL-USE) "" "*" RETURN (SPECIAL-USE)')
    assert [ln.split()[-1] for ln in lines] == [b"Drafts", b"Sent", b"Trash"]
    assert await client.cmd(b'd LIST "" "inbox"') == [b'* LIST (\\HasNoChildren) "/" INBOX\r\n']


async def test_hierarchy_and_children(rig: IMAPRig) -> None:
    client = await rig.raw()
    await client.login()
    await client.cmd(b"a CREATE Projects/")
    await client.cmd(b"b CREATE Projects/2026")
    await client.cmd(b"c CREATE Projects/2026/Q1")
    lines = await client.cmd(b'd LIST "" "Projects/%"')
    assert lines == [b'* LIST (\\HasChildren) "/" Projects/2026\r\n']
    lines = await client.cmd(b'e LIST "Projects/" "%"')
    assert lines == [b'* LIST (\\HasChildren) "/" Projects/2026\r\n']
    lines = await client.cmd(b'f LIST "" "%"')
    assert b'* LIST (\\HasChildren) "/" Projects\r\n' in lines
    await client.cmd(b"g RENAME Projects/2026 Projects/Old")
    lines = await client.cmd(b'h LIST "" "Projects/*"')
    assert [ln.split()[-1] for ln in lines] == [b"Projects/Old", b"Projects/Old/Q1"]
    await client.cmd(b"i CREATE Projects", b"NO [ALREADYEXISTS]")
    await client.cmd(b"j DELETE Nope", b"NO [NONEXISTENT]")
    await client.cmd(b"k DELETE INBOX", b"NO")
    await client.cmd(b"l DELETE Projects/Old/Q1")


async def test_utf7_names(rig: IMAPRig) -> None:
    client = await rig.raw()
    await client.login()
    await client.cmd(b"a CREATE &AMk-t&AOk-")  # "Été"
    lines = await client.cmd(b'b LIST "" "&AMk-*"')
    assert lines == [b'* LIST (\\HasNoChildren) "/" &AMk-t&AOk-\r\n']
    await client.cmd(b"c CREATE &Jjo!", b"NO")  # not valid modified UTF-7: NO, as Dovecot


async def test_subscribe_and_lsub(rig: IMAPRig) -> None:
    client = await rig.raw()
    await client.login()
    await client.cmd(b"a CREATE Lists")
    await client.cmd(b"b SUBSCRIBE Lists")
    lines = await client.cmd(b'c LSUB "" "*"')
    assert b'* LSUB (\\HasNoChildren) "/" Lists\r\n' in lines
    lines = await client.cmd(b'd LIST (SUBSCRIBED) "" "L*"')
    assert lines == [b'* LIST (\\Subscribed \\HasNoChildren) "/" Lists\r\n']
    await client.cmd(b"e UNSUBSCRIBE Lists")
    assert b"Lists" not in b"".join(await client.cmd(b'f LSUB "" "*"'))
    await client.cmd(b"g SUBSCRIBE Missing", b"NO")


async def test_status_append_select_examine(rig: IMAPRig) -> None:
    client = await rig.raw()
    await client.login()
    lines = await client.cmd(b"a STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)")
    assert lines[0].startswith(b"* STATUS INBOX (MESSAGES 0 RECENT 0 UIDNEXT 1 UIDVALIDITY ")
    body = message("one")
    await client.send(b"b APPEND INBOX (\\Seen $Work) {%d}\r\n" % len(body))
    assert (await client.line()).startswith(b"+ ")
    await client.send(body + b"\r\n")
    _, done = await client.until(b"b")
    assert done.startswith(b"b OK [APPENDUID ")
    uidvalidity, uid = done.split(b"[APPENDUID ")[1].split(b"]")[0].split()
    assert uid == b"1"
    body2 = message("two")
    await client.send(b'c APPEND INBOX "05-Nov-2026 12:00:00 +0100" {%d+}\r\n' % len(body2) + body2 + b"\r\n")
    _, done = await client.until(b"c")
    assert done.startswith(b"c OK [APPENDUID %s 2]" % uidvalidity)
    lines = await client.cmd(b"d STATUS INBOX (MESSAGES UNSEEN UIDNEXT)")
    assert lines == [b"* STATUS INBOX (MESSAGES 2 UNSEEN 1 UIDNEXT 3)\r\n"]
    lines = await client.cmd(b"e SELECT INBOX", b"OK [READ-WRITE]")
    assert b"* 2 EXISTS\r\n" in lines and b"* 2 RECENT\r\n" in lines  # appended: recent for the first session
    assert b"* OK [UNSEEN 2] First unseen.\r\n" in lines
    assert b"* OK [UIDVALIDITY %s] UIDs valid\r\n" % uidvalidity in lines
    assert b"* OK [UIDNEXT 3] Predicted next UID\r\n" in lines
    assert any(ln.startswith(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)") for ln in lines)
    assert any(b"[PERMANENTFLAGS (" in ln and b"\\*)]" in ln for ln in lines)
    lines = await client.cmd(b"f EXAMINE INBOX", b"OK [READ-ONLY]")
    assert b"* OK [CLOSED] Previous mailbox closed.\r\n" in lines
    await client.cmd(b"g SELECT Nope", b"NO [NONEXISTENT]")
    await client.cmd(b"h FETCH 1 FLAGS", b"BAD")  # a failed SELECT leaves no mailbox selected


async def test_append_errors(rig: IMAPRig) -> None:
    client = await rig.raw()
    await client.login()
    await client.send(b"a APPEND Nope {5}\r\n")
    assert (await client.line()).startswith(b"+ ")
    await client.send(b"Hi!\r\n\r\n")
    _, done = await client.until(b"a")
    assert done.startswith(b"a NO [TRYCREATE]")
    await client.send(b"b APPEND INBOX {999999999}\r\n")
    assert (await client.line()).startswith(b"b NO [TOOBIG]")
    await client.cmd(b"c APPEND INBOX (\\Recent) {1+}\r\nx", b"BAD")
    await client.cmd(b"d NOOP")


async def test_literal_of_failed_command_is_consumed(rig: IMAPRig) -> None:
    """RELIABILITY P11: one tagged response for a, none for b, INBOX intact."""
    client = await rig.raw()
    await client.login()
    await client.send(b"a APPEND nosuch (\\Seen) {16+}\r\nb DELETE INBOX\r\n\r\n")
    _, done = await client.until(b"a")
    assert done.startswith(b"a NO")
    await client.send(b"c NOOP\r\n")
    lines, done = await client.until(b"c")
    assert lines == [] and done.startswith(b"c OK")
    assert b"INBOX" in b"".join(await client.cmd(b'd LIST "" INBOX'))
    # a syntax error before the literal: still consumed
    await client.send(b"e APPEND INBOX (\\Bogus) {16+}\r\nf DELETE INBOX\r\n\r\n")
    _, done = await client.until(b"e")
    assert done.startswith(b"e BAD")
    await client.cmd(b"g NOOP")


BAD_NAMES = [
    "../x",
    "a/../../b",
    "/etc",
    "~root",
    "a//b",
    ".",
    "..",
    "INBOX/../../other",
    "x" * 300,
    "../adm",
    "~adm/INBOX",
]


@pytest.mark.parametrize("verb", ["CREATE", "SELECT", "DELETE", "RENAME"])
async def test_traversal_names_are_refused(rig: IMAPRig, verb: str, tmp_path: Path) -> None:
    """RELIABILITY P14: every such name is NO and nothing new appears in the data directory."""
    before = sorted(p.name for p in tmp_path.rglob("*"))
    client = await rig.raw()
    await client.login()
    for i, name in enumerate(BAD_NAMES):
        arg = b'"%s"' % name.encode()
        line = b"t%d %s %s" % (i, verb.encode(), arg + (b' "ok"' if verb == "RENAME" else b""))
        await client.cmd(line, b"NO")
    lines = await client.cmd(b'x CREATE "a/../b"', b"NO Invalid mailbox name: Contains '..' part")
    assert lines == []
    await client.cmd(b'y APPEND "../x" {1+}\r\nx', b"NO")
    await client.cmd(b'z STATUS "../x" (MESSAGES)', b"NO")
    after = sorted(p.name for p in tmp_path.rglob("*"))
    assert [n for n in after if n not in before and not n.startswith("data")] == [] or after == before


async def test_user_isolation_a_and_adm(rig: IMAPRig) -> None:
    """RELIABILITY P14/A7: users `a` and `adm` never see each other's mailboxes."""
    adm = await rig.raw()
    await adm.login("adm", "pw-adm")
    await adm.cmd(b"a CREATE Secret")
    body = message("for adm only")
    await adm.cmd(b"b APPEND Secret {%d+}\r\n" % len(body) + body)
    a = await rig.raw()
    await a.login("a", "pw-a")
    names = b"".join(await a.cmd(b'c LIST "" "*"'))
    assert b"Secret" not in names
    for i, name in enumerate([b"Secret", b"../adm/Secret", b"~adm/Secret", b"adm/Secret"]):
        await a.cmd(b"s%d SELECT %s" % (i, name), b"NO")
    await a.cmd(b"d STATUS Secret (MESSAGES)", b"NO")
    lines = await a.cmd(b"e SELECT INBOX")
    assert b"* 0 EXISTS\r\n" in lines


async def test_namespace_enable_check(rig: IMAPRig) -> None:
    client = await rig.raw()
    await client.login()
    assert await client.cmd(b"a NAMESPACE") == [b'* NAMESPACE (("" "/")) NIL NIL\r\n']
    assert await client.cmd(b"b ENABLE UTF8=ACCEPT") == [b"* ENABLED\r\n"]
    await client.cmd(b"c CHECK", b"BAD")  # only when selected
    await client.cmd(b"d SELECT INBOX")
    await client.cmd(b"e CHECK")
    await client.cmd(b"f UNSELECT")
    await client.cmd(b"g CLOSE", b"BAD")


async def test_imaplib_mailbox_commands(rig: IMAPRig) -> None:
    client = await rig.imap()
    typ, _ = await call(client.create, "Work")
    assert typ == "OK"
    typ, data = await call(client.list)
    assert typ == "OK" and any(b"Work" in d for d in data)
    typ, data = await call(client.append, "Work", "(\\Flagged)", None, message("hi"))
    assert typ == "OK" and b"APPENDUID" in data[0]
    typ, data = await call(client.status, "Work", "(MESSAGES UNSEEN)")
    assert data == [b"Work (MESSAGES 1 UNSEEN 1)"]
    typ, data = await call(client.select, "Work")
    assert (typ, data) == ("OK", [b"1"])
    typ, _ = await call(client.rename, "Work", "Archive")
    assert typ == "OK"
    typ, _ = await call(client.subscribe, "Archive")
    typ, data = await call(client.lsub)
    assert any(b"Archive" in d for d in data)
    typ, _ = await call(client.delete, "Archive")
    assert typ == "OK"
    await call(client.logout)


async def test_append_to_other_users_never_leaks(make_rig: RigFactory) -> None:
    rig = await make_rig()
    client = await rig.raw()
    await client.login()
    await client.cmd(b'a APPEND "bob@corp.test/INBOX" {1+}\r\nx', b"NO")
    snap = await rig.store.snapshot(ALICE, "INBOX")
    assert snap.messages == []


async def test_pipelined_commands_answered_in_order(rig: IMAPRig) -> None:
    client = await rig.raw()
    await client.send(f'a LOGIN "{ALICE}" "correct horse battery"\r\nb SELECT INBOX\r\nc NOOP\r\nd LOGOUT\r\n'.encode())
    tags = []
    while True:
        line = await client.line()
        if not line.startswith(b"*"):
            tags.append(line.split(b" ", 2)[:2])
        if line.startswith(b"d "):
            break
    assert tags == [[b"a", b"OK"], [b"b", b"OK"], [b"c", b"OK"], [b"d", b"OK"]]
    assert await client.until_eof() == b""
