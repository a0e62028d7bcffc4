"""IMAP in the selected state: FETCH, STORE, SEARCH, COPY, MOVE, EXPUNGE, UID EXPUNGE, CLOSE, UNSELECT.

RFC 3501 §6.4, RFC 4315 (UIDPLUS), RFC 6851 (MOVE), RFC 3691 (UNSELECT), over both stores.
"""

from __future__ import annotations

import re

from imap_harness import (
    ALICE,
    IMAPRig,
    RawIMAP,
    call,
    make_rig,
    message,
    rig,
    store_factory,
)

from mailstandby.store.mailbox import FlagMode

__all__ = ["make_rig", "rig", "store_factory"]  # fixtures

MULTIPART = (
    b"From: Carol <carol@example.org>\r\nTo: alice@corp.test\r\nSubject: =?utf-8?q?R=C3=A9union?=\r\n"
    b"Date: Mon, 2 Nov 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Caf=C3=A9 at noon\r\n"
    b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"AAECAw==\r\n--b1--\r\n"
)


async def fill(rig: IMAPRig, n: int = 3) -> list[int]:
    await rig.store.ensure_user(ALICE)
    uids = []
    for i in range(1, n + 1):
        _, uid = await rig.store.append(ALICE, "INBOX", message(f"msg {i}", b"body number %d\r\n" % i))
        uids.append(uid)
    return uids


async def selected(rig: IMAPRig, mailbox: bytes = b"INBOX") -> RawIMAP:
    client = await rig.raw()
    await client.login()
    await rig.store.ensure_user(ALICE)
    await rig.store.claim_recent(ALICE, mailbox.decode(), 1 << 31)  # an earlier session saw what is there
    await client.cmd(b"S SELECT " + mailbox)
    return client


async def test_fetch_items(rig: IMAPRig) -> None:
    await rig.store.ensure_user(ALICE)
    await rig.store.append(ALICE, "INBOX", MULTIPART, internal_date=1_793_000_000.0)
    client = await selected(rig)
    lines = await client.cmd(b"a FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE UID)")
    assert lines == [
        b'* 1 FETCH (FLAGS () INTERNALDATE "26-Oct-2026 07:33:20 +0000" RFC822.SIZE %d UID 1)\r\n' % len(MULTIPART)
    ]
    (env,) = await client.cmd(b"b FETCH 1 ENVELOPE")
    assert env.startswith(b'* 1 FETCH (ENVELOPE ("Mon, 2 Nov 2026 09:00:00 +0000" "=?utf-8?q?R=C3=A9union?="')
    (bs,) = await client.cmd(b"c FETCH 1 BODYSTRUCTURE")
    assert b'("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable"' in bs and b'"mixed"' in bs
    (body,) = await client.cmd(b"d FETCH 1 BODY")
    assert body.startswith(b"* 1 FETCH (BODY ((")
    (part,) = await client.cmd(b"e FETCH 1 BODY.PEEK[1]")
    assert part == b"* 1 FETCH (BODY[1] {17}\r\nCaf=C3=A9 at noon)\r\n"
    (hdr,) = await client.cmd(b"f FETCH 1 BODY.PEEK[HEADER.FIELDS (subject)]")
    assert hdr == b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {37}\r\nSubject: =?utf-8?q?R=C3=A9union?=\r\n\r\n)\r\n"
    (partial,) = await client.cmd(b"g FETCH 1 BODY.PEEK[]<0.4>")
    assert partial == b"* 1 FETCH (BODY[]<0> {4}\r\nFrom)\r\n"
    (mime,) = await client.cmd(b"h FETCH 1 (BODY.PEEK[2.MIME] RFC822.HEADER)")
    assert b"BODY[2.MIME] {" in mime and b"RFC822.HEADER {" in mime
    (flags,) = await client.cmd(b"i FETCH 1 FLAGS")
    assert flags == b"* 1 FETCH (FLAGS ())\r\n"  # PEEK never sets \Seen
    (full,) = await client.cmd(b"j FETCH 1 BODY[TEXT]")
    assert full.endswith(b" FLAGS (\\Seen))\r\n")
    (rfc822,) = await client.cmd(b"k FETCH 1 (RFC822)")
    assert rfc822 == b"* 1 FETCH (RFC822 {%d}\r\n%s)\r\n" % (len(MULTIPART), MULTIPART)
    (uidf,) = await client.cmd(b"l UID FETCH 1 RFC822.TEXT")
    assert uidf.startswith(b"* 1 FETCH (UID 1 RFC822.TEXT {")
    await client.cmd(b"m FETCH 1 FAST")
    await client.cmd(b"n FETCH 1 (ALL)", b"BAD")


async def test_fetch_on_examine_does_not_set_seen(rig: IMAPRig) -> None:
    await fill(rig, 1)
    client = await rig.raw()
    await client.login()
    await client.cmd(b"a EXAMINE INBOX")
    (line,) = await client.cmd(b"b FETCH 1 BODY[]")
    assert b"FLAGS" not in line
    await client.cmd(b"c STORE 1 +FLAGS (\\Seen)", b"NO")
    await client.cmd(b"d EXPUNGE", b"NO")
    snap = await rig.store.snapshot(ALICE, "INBOX")
    assert snap.messages[0].flags == frozenset()


async def test_sequence_sets(rig: IMAPRig) -> None:
    await rig.store.ensure_user(ALICE)
    client = await selected(rig)
    assert await client.cmd(b"a FETCH 1:* FLAGS") == []  # empty mailbox: nothing, OK
    assert await client.cmd(b"b UID FETCH 1:* FLAGS") == []
    await client.cmd(b"c FETCH 1 FLAGS", b"BAD")
    await fill(rig, 3)
    await client.cmd(b"d NOOP")
    assert len(await client.cmd(b"e FETCH 2:* FLAGS")) == 2
    assert len(await client.cmd(b"f FETCH *:2 FLAGS")) == 2
    await client.cmd(b"g FETCH 4 FLAGS", b"BAD")
    await client.cmd(b"h FETCH 0 FLAGS", b"BAD")
    await client.cmd(b"i FETCH 1:x FLAGS", b"BAD")
    assert await client.cmd(b"j UID FETCH 100:200 FLAGS") == []
    (line,) = await client.cmd(b"k UID FETCH 100:* FLAGS")  # RFC 3501 §6.4.8: the largest UID
    assert line.startswith(b"* 3 FETCH (UID 3 ")


async def test_store_flags(rig: IMAPRig) -> None:
    await fill(rig, 3)
    client = await selected(rig)
    lines = await client.cmd(b"a STORE 1:2 +FLAGS (\\Flagged $Later)")
    assert lines == [  # RFC 3501 §7.2.6: a new keyword is announced before a FETCH shows it
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Later)\r\n",
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Later \\*)] Flags permitted.\r\n",
        b"* 1 FETCH (FLAGS (\\Flagged $Later))\r\n",
        b"* 2 FETCH (FLAGS (\\Flagged $Later))\r\n",
    ]
    assert await client.cmd(b"b STORE 1 -FLAGS.SILENT ($Later)") == []
    lines = await client.cmd(b"c UID STORE 3 FLAGS (\\Seen \\Answered)")
    assert lines == [b"* 3 FETCH (UID 3 FLAGS (\\Answered \\Seen))\r\n"]
    lines = await client.cmd(b"d FETCH 1:3 FLAGS")
    assert lines == [
        b"* 1 FETCH (FLAGS (\\Flagged))\r\n",
        b"* 2 FETCH (FLAGS (\\Flagged $Later))\r\n",
        b"* 3 FETCH (FLAGS (\\Answered \\Seen))\r\n",
    ]
    await client.cmd(b"e STORE 1 +FLAGS (\\Recent)", b"BAD")
    await client.cmd(b"f STORE 1 +FLAGS (\\Bogus)", b"BAD")


async def test_search(rig: IMAPRig) -> None:
    await rig.store.ensure_user(ALICE)
    await rig.store.append(ALICE, "INBOX", message("Hello world", b"apples and pears\r\n"), frozenset({"\\Seen"}))
    await rig.store.append(ALICE, "INBOX", message("Budget", b"numbers\r\n", sender="dave@example.com"))
    await rig.store.append(ALICE, "INBOX", MULTIPART, frozenset({"\\Flagged"}))
    client = await selected(rig)

    async def search(criteria: bytes, uid: bool = False) -> bytes:
        (line,) = await client.cmd(b"s " + (b"UID " if uid else b"") + b"SEARCH " + criteria)
        return line.removeprefix(b"* SEARCH").strip()

    assert await search(b"ALL") == b"1 2 3"
    assert await search(b"UNSEEN") == b"2 3"
    assert await search(b"SEEN") == b"1"
    assert await search(b"FLAGGED") == b"3"
    assert await search(b"NOT FLAGGED UNSEEN") == b"2"
    assert await search(b"OR SEEN FLAGGED") == b"1 3"
    assert await search(b"FROM dave") == b"2"
    assert await search(b"SUBJECT hello") == b"1"
    assert await search(b'CHARSET UTF-8 SUBJECT "r\xc3\xa9union"') == b"3"
    assert await search(b"BODY PEARS") == b"1"
    assert await search(b'BODY "caf\xc3\xa9"') == b"3"
    assert await search(b"TEXT budget") == b"2"
    assert await search(b'HEADER Message-ID "budget@"') == b"2"
    assert await search(b"LARGER 300") == b"3"
    assert await search(b"SMALLER 300") == b"1 2"
    assert await search(b"2:3 UNSEEN") == b"2 3"
    assert await search(b"UID 3", uid=True) == b"3"
    assert await search(b"SENTON 2-Nov-2026") == b"3"
    assert await search(b"SENTBEFORE 3-Nov-2026") == b"3"
    assert await search(b"SINCE 1-Jan-2020") == b"1 2 3"
    assert await search(b"BEFORE 1-Jan-2020") == b""
    assert await search(b"KEYWORD $Foo") == b""
    assert await search(b"NEW") == b""
    await client.cmd(b"t SEARCH CHARSET KOI8-R ALL", b"NO [BADCHARSET")
    await client.cmd(b"u SEARCH FOO", b"BAD")
    await client.cmd(b"v SEARCH " + b"NOT " * 100 + b"ALL", b"BAD")


async def test_copy_move_expunge(rig: IMAPRig) -> None:
    await fill(rig, 4)
    client = await selected(rig)
    (_, done) = (None, None)
    await client.send(b"a COPY 1:2 Trash\r\n")
    _, done = await client.until(b"a")
    assert re.match(rb"a OK \[COPYUID \d+ 1:2 1:2\]", done), done
    await client.cmd(b"b COPY 1 Nope", b"NO [TRYCREATE]")
    lines = await client.cmd(b"c UID MOVE 2:3 Sent")
    assert re.match(rb"\* OK \[COPYUID \d+ 2:3 1:2\]", lines[0]), lines
    assert lines[1:] == [b"* 3 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"]
    lines = await client.cmd(b"d FETCH 1:* UID")
    assert lines == [b"* 1 FETCH (UID 1)\r\n", b"* 2 FETCH (UID 4)\r\n"]
    await client.cmd(b"e STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    assert await client.cmd(b"f UID EXPUNGE 4") == [b"* 2 EXPUNGE\r\n"]
    assert await client.cmd(b"g EXPUNGE") == [b"* 1 EXPUNGE\r\n"]
    assert await client.cmd(b"h FETCH 1:* UID") == []
    sent = await rig.store.snapshot(ALICE, "Sent")
    assert [m.uid for m in sent.messages] == [1, 2]


async def test_close_expunges_unselect_does_not(rig: IMAPRig) -> None:
    await fill(rig, 2)
    client = await selected(rig)
    await client.cmd(b"a STORE 1 +FLAGS (\\Deleted)")
    await client.cmd(b"b UNSELECT")
    assert len((await rig.store.snapshot(ALICE, "INBOX")).messages) == 2
    await client.cmd(b"c SELECT INBOX")
    assert await client.cmd(b"d CLOSE") == []
    assert len((await rig.store.snapshot(ALICE, "INBOX")).messages) == 1
    await client.cmd(b"e FETCH 1 FLAGS", b"BAD")


async def test_imaplib_selected_commands(rig: IMAPRig) -> None:
    await fill(rig, 3)
    client = await rig.imap()
    await call(client.select, "INBOX")
    typ, data = await call(client.fetch, "1:3", "(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK" and b"Subject: msg 1" in data[0][1]
    typ, data = await call(client.uid, "SEARCH", None, "SUBJECT", '"msg 2"')
    assert data == [b"2"]
    typ, data = await call(client.store, "1", "+FLAGS", "(\\Seen)")
    assert typ == "OK" and b"\\Seen" in data[0]
    typ, data = await call(client.copy, "1:2", "Trash")
    assert typ == "OK"
    typ, data = await call(client.uid, "MOVE", "3", "Drafts")
    assert typ == "OK"
    typ, data = await call(client.search, None, "ALL")
    assert data == [b"1 2"]
    await call(client.store, "2", "+FLAGS", "(\\Deleted)")
    typ, data = await call(client.expunge)
    assert data[-1] == b"2"  # imaplib also keeps the EXPUNGE that MOVE sent
    typ, _ = await call(client.close)
    assert typ == "OK"
    await call(client.logout)


async def test_other_sessions_changes_are_reported(rig: IMAPRig) -> None:
    """Flag changes, new mail and expunges by others; EXPUNGE withheld during FETCH/STORE/SEARCH."""
    uids = await fill(rig, 3)
    client = await selected(rig)
    await rig.store.store_flags(ALICE, "INBOX", [uids[0]], frozenset({"\\Flagged"}), FlagMode.ADD)
    assert await client.cmd(b"a NOOP") == [b"* 1 FETCH (FLAGS (\\Flagged))\r\n"]
    await rig.store.append(ALICE, "INBOX", message("new"))
    assert await client.cmd(b"b NOOP") == [b"* 4 EXISTS\r\n", b"* 1 RECENT\r\n"]  # the one session to see it
    await rig.store.store_flags(ALICE, "INBOX", [uids[1]], frozenset({"\\Deleted"}), FlagMode.ADD)
    await rig.store.expunge(ALICE, "INBOX")
    lines = await client.cmd(b"c FETCH 2 UID")
    assert lines[0] == b"* 2 FETCH (UID 2)\r\n"  # still message 2: no EXPUNGE during FETCH
    assert b"EXPUNGE" not in b"".join(lines)
    assert b"EXPUNGE" not in b"".join(await client.cmd(b"d SEARCH ALL"))
    assert await client.cmd(b"e NOOP") == [b"* 2 EXPUNGE\r\n"]
    lines = await client.cmd(b"f FETCH 1:* UID")
    assert [ln.split(b"UID ")[1] for ln in lines] == [b"1)\r\n", b"3)\r\n", b"4)\r\n"]


async def test_fetch_seen_from_other_session(rig: IMAPRig) -> None:
    await fill(rig, 1)
    one = await selected(rig)
    two = await selected(rig)
    (line,) = await one.cmd(b"a FETCH 1 BODY[]")
    assert line.endswith(b"FLAGS (\\Seen))\r\n")
    assert await two.cmd(b"b NOOP") == [b"* 1 FETCH (FLAGS (\\Seen))\r\n"]
    assert await one.cmd(b"c NOOP") == []  # its own change is not reported twice


async def test_search_remaining_keys(rig: IMAPRig) -> None:
    await rig.store.ensure_user(ALICE)
    cc = (
        b"From: x@example.org\r\nTo: bob@corp.test\r\nCc: carol@corp.test\r\n"
        b"Bcc: dan@corp.test\r\nSubject: s\r\n\r\nhi\r\n"
    )
    await rig.store.append(ALICE, "INBOX", cc, frozenset({"\\Answered", "$Done"}), internal_date=1_790_000_000.0)
    await rig.store.append(ALICE, "INBOX", message("b"), frozenset({"\\Deleted", "\\Draft"}))
    client = await selected(rig)

    async def search(criteria: bytes) -> bytes:
        (line,) = await client.cmd(b"s SEARCH " + criteria)
        return line.removeprefix(b"* SEARCH").strip()

    cases = {
        b"ANSWERED": b"1",
        b"UNANSWERED": b"2",
        b"DELETED": b"2",
        b"UNDELETED": b"1",
        b"DRAFT": b"2",
        b"UNDRAFT": b"1",
        b"OLD": b"1 2",
        b"RECENT": b"",
        b"CC carol": b"1",
        b"BCC dan": b"1",
        b"TO bob": b"1",
        b"TO alice": b"2",
        b"KEYWORD $Done": b"1",
        b"UNKEYWORD $Done": b"2",
        b"ON 21-Sep-2026": b"1",
        b"SENTSINCE 1-Nov-2026": b"2",
        b"UID 2:*": b"2",
        b"*": b"2",
        b'HEADER Cc ""': b"1",
        b"NOT (OR ANSWERED DRAFT)": b"",
    }
    for criteria, expected in cases.items():
        assert await search(criteria) == expected, criteria
