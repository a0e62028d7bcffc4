"""RFC 7162 CONDSTORE: HIGHESTMODSEQ, FETCH MODSEQ/CHANGEDSINCE, STORE UNCHANGEDSINCE, SEARCH MODSEQ."""

from __future__ import annotations

import re

from imap_harness import ALICE, IMAPRig, make_rig, message, rig, store_factory

from mailstandby.store.mailbox import FlagMode

__all__ = ["make_rig", "rig", "store_factory"]  # fixtures


def modseq_of(line: bytes) -> int:
    m = re.search(rb"MODSEQ \((\d+)\)", line)
    assert m is not None, line
    return int(m.group(1))


async def test_condstore(rig: IMAPRig) -> None:
    await rig.store.ensure_user(ALICE)
    for i in range(3):
        await rig.store.append(ALICE, "INBOX", message(f"m{i}"))
    await rig.store.claim_recent(ALICE, "INBOX", 3)  # seen by an earlier session: no \\Recent here
    client = await rig.raw()
    await client.login()
    caps = (await client.cmd(b"a CAPABILITY"))[0].split()
    assert b"CONDSTORE" in caps
    lines = await client.cmd(b"b SELECT INBOX (CONDSTORE)")
    highest = next(ln for ln in lines if b"[HIGHESTMODSEQ " in ln)
    start = int(highest.split(b"[HIGHESTMODSEQ ")[1].split(b"]")[0])
    lines = await client.cmd(b"c FETCH 1:* (FLAGS MODSEQ)")
    assert len(lines) == 3 and all(modseq_of(ln) <= start for ln in lines)
    (line,) = await client.cmd(b"d STORE 2 +FLAGS (\\Flagged)")
    after = modseq_of(line)
    assert after > start and line.startswith(b"* 2 FETCH (FLAGS (\\Flagged) MODSEQ (")
    lines = await client.cmd(b"e FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % start)
    assert lines == [b"* 2 FETCH (FLAGS (\\Flagged) MODSEQ (%d))\r\n" % after]
    (line,) = await client.cmd(b"f SEARCH MODSEQ %d" % after)
    assert line == b"* SEARCH 2 (MODSEQ %d)\r\n" % after
    # another session changes message 1: a STORE UNCHANGEDSINCE older than that fails for it
    await rig.store.store_flags(ALICE, "INBOX", [1], frozenset({"$Other"}), FlagMode.ADD)
    await client.send(b"g STORE 1:2 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)\r\n" % after)
    lines, done = await client.until(b"g")
    assert done.startswith(b"g OK [MODIFIED 1]"), done
    assert any(ln.startswith(b"* 2 FETCH (FLAGS (\\Flagged \\Seen) MODSEQ") for ln in lines)
    assert any(ln.startswith(b"* 1 FETCH (FLAGS ($Other) MODSEQ") for ln in lines)  # unsolicited, with MODSEQ
    lines = await client.cmd(b"h STATUS INBOX (HIGHESTMODSEQ)")
    assert lines[0].startswith(b"* STATUS INBOX (HIGHESTMODSEQ ")


async def test_enable_condstore(rig: IMAPRig) -> None:
    client = await rig.raw()
    await client.login()
    assert await client.cmd(b"a ENABLE CONDSTORE") == [b"* ENABLED CONDSTORE\r\n"]
    assert await client.cmd(b"b ENABLE CONDSTORE") == [b"* ENABLED\r\n"]
    await rig.store.append(ALICE, "INBOX", message("x"))
    await client.cmd(b"c SELECT INBOX")
    (line,) = await client.cmd(b"d UID STORE 1 +FLAGS.SILENT (\\Seen)")
    assert re.match(rb"\* 1 FETCH \(UID 1 MODSEQ \(\d+\)\)\r\n", line), line
