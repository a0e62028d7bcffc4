"""IMAP IDLE (RFC 2177), pushed updates, shutdown, and UIDs across expunge and restart (RELIABILITY D8)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

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


async def test_idle_sees_append_from_another_session(rig: IMAPRig) -> None:
    idler = await rig.raw()
    await idler.login()
    await idler.cmd(b"a SELECT INBOX")
    await idler.send(b"b IDLE\r\n")
    assert await idler.line() == b"+ idling\r\n"
    other = await rig.raw()
    await other.login()
    body = message("pushed")
    await other.cmd(b"x APPEND INBOX {%d+}\r\n" % len(body) + body)
    async with asyncio.timeout(1.0):  # within a second of the delivery
        assert await idler.line() == b"* 1 EXISTS\r\n"
    assert await idler.line() == b"* 1 RECENT\r\n"  # the idler saw it first: \\Recent is its
    await other.cmd(b"y SELECT INBOX")
    await other.cmd(b"z STORE 1 +FLAGS (\\Flagged)")
    assert await idler.line() == b"* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\n"
    await other.cmd(b"w STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert await idler.line() == b"* 1 FETCH (FLAGS (\\Flagged \\Deleted \\Recent))\r\n"
    await other.cmd(b"v EXPUNGE")
    assert await idler.line() == b"* 1 EXPUNGE\r\n"
    await idler.send(b"DONE\r\n")
    _, done = await idler.until(b"b")
    assert done == b"b OK Idle completed.\r\n"
    await idler.cmd(b"c NOOP")


async def test_idle_without_selection_and_bad_end(rig: IMAPRig) -> None:
    client = await rig.raw()
    await client.login()
    await client.send(b"a IDLE\r\n")
    assert await client.line() == b"+ idling\r\n"
    await client.send(b"NOPE\r\n")
    _, done = await client.until(b"a")
    assert done.startswith(b"a BAD")
    await client.send(b"b IDLE\r\ndone\r\n")
    assert await client.line() == b"+ idling\r\n"
    _, done = await client.until(b"b")
    assert done.startswith(b"b OK")


async def test_idle_timeout(make_rig: RigFactory) -> None:
    rig = await make_rig(idle_timeout=0.3)
    client = await rig.raw()
    await client.login()
    await client.send(b"a IDLE\r\n")
    assert await client.line() == b"+ idling\r\n"
    assert (await client.line()).startswith(b"* BYE")
    assert await client.until_eof() == b""


async def test_shutdown_during_idle(make_rig: RigFactory) -> None:
    rig = await make_rig()
    client = await rig.raw()
    await client.login()
    await client.cmd(b"a SELECT INBOX")
    await client.send(b"b IDLE\r\n")
    assert await client.line() == b"+ idling\r\n"
    await rig.server.stop(0.1)
    assert await client.line() == b"* BYE server shutting down\r\n"
    assert await client.until_eof() == b""


async def test_imaplib_idle_style_noop_polling(rig: IMAPRig) -> None:
    client = await rig.imap()
    await call(client.select, "INBOX")
    await rig.store.append(ALICE, "INBOX", message("polled"))
    typ, _ = await call(client.noop)
    assert typ == "OK"
    assert client.untagged_responses["EXISTS"][-1] == b"1"


async def test_uids_never_reused_after_expunge_and_restart(
    make_rig: RigFactory, store_factory: Callable[[], Awaitable[Any]]
) -> None:
    """RELIABILITY D8: APPEND 3, expunge the last, restart (SQLite reopened), APPEND: UID 4, same UIDVALIDITY."""
    rig = await make_rig()
    client = await rig.raw()
    await client.login()
    uids = []
    uidvalidity = b""
    for i in range(3):
        body = message(f"m{i}")
        await client.send(b"a%d APPEND INBOX {%d+}\r\n" % (i, len(body)) + body + b"\r\n")
        _, done = await client.until(b"a%d" % i)
        m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", done)
        assert m is not None, done
        uidvalidity = m.group(1)
        uids.append(int(m.group(2)))
    assert uids == [1, 2, 3]
    await client.cmd(b"b SELECT INBOX")
    await client.cmd(b"c STORE 3 +FLAGS.SILENT (\\Deleted)")
    await client.cmd(b"d EXPUNGE")
    await client.cmd(b"e LOGOUT")
    await rig.finish()

    again = await make_rig(store=await store_factory())
    client = await again.raw()
    await client.login()
    lines = await client.cmd(b"f SELECT INBOX")
    assert b"* OK [UIDVALIDITY %s] UIDs valid\r\n" % uidvalidity in lines
    assert b"* OK [UIDNEXT 4] Predicted next UID\r\n" in lines
    body = message("after restart")
    await client.send(b"g APPEND INBOX {%d+}\r\n" % len(body) + body + b"\r\n")
    lines, done = await client.until(b"g")
    assert done.startswith(b"g OK [APPENDUID %s 4]" % uidvalidity)
    assert lines == [b"* 3 EXISTS\r\n", b"* 1 RECENT\r\n"]  # claims outlive the restart: only UID 4 is new


async def test_an_idling_phone_is_told_to_reconnect_at_the_session_time_limit(make_rig: RigFactory) -> None:
    """RELIABILITY X1: IDLE keeps a session open for hours; the hard cap still ends it, with BYE."""
    rig = await make_rig(max_session_time=0.6)
    idler = await rig.raw()
    await idler.login()
    await idler.cmd(b"a SELECT INBOX")
    await idler.send(b"b IDLE\r\n")
    assert await idler.line() == b"+ idling\r\n"
    async with asyncio.timeout(5):
        assert await idler.line() == b"* BYE Session time limit reached; reconnect.\r\n"
