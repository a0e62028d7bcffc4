"""A 250 means the message is on disk: fsync ordering, group commit, shutdown.

Named regressions for RELIABILITY D1 (a), the DESIGN decision "group commit",
X2 (connection cap) and the graceful-shutdown promise (STYLE §3 Transport).
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from smtp_harness import TIMEOUT, Gateway, GatewayFactory, message

from mailstandby.transport import Connection

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.database import database


def segment_fds(gw: Gateway) -> Callable[[int], bool]:
    spool = str(gw.data_dir / "spool") + "/seg-"

    def is_segment(fd: int) -> bool:
        try:
            return os.readlink(f"/proc/self/fd/{fd}").startswith(spool)
        except OSError:
            return False

    return is_segment


async def wait_until(condition: Callable[[], bool]) -> None:
    """Await a condition the server reaches on its own, bounded by TIMEOUT."""
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.01)


# -- D1 (a): fsync before 250 --------------------------------------------------------------


async def test_segment_fsync_happens_before_the_250(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, object]] = []
    is_segment = segment_fds(gw)
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        segment = is_segment(fd)
        real_fsync(fd)
        events.append(("fsync-segment" if segment else "fsync-other", fd))  # recorded once it returned

    class RecordingTransport:
        """The server's transport, with writes noted in `events` as they go out."""

        def __init__(self, transport: Any) -> None:
            self._transport = transport

        def write(self, data: bytes) -> None:
            if b"queued as" in data:  # is the index row committed, as seen by another connection?
                with database(gw.data_dir) as db:
                    rows = db.execute("SELECT id FROM messages").fetchall()
                events.append(("indexed", {r[0] for r in rows}))
            events.append(("write", bytes(data)))
            self._transport.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._transport, name)

    real_made = Connection.connection_made

    def recording_made(self: Connection, transport: Any) -> None:
        real_made(self, RecordingTransport(transport))

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(Connection, "connection_made", recording_made)

    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")
    await c.command("DATA", "354 ")
    events.clear()  # from here on, only this message's commit
    await c.send(message("durable") + b".\r\n")
    reply = await c.expect("250 2.0.0 Ok: queued as ")
    await c.quit()
    queue_id = reply.last.rsplit(" ", 1)[1]

    kinds = [kind for kind, _ in events]
    (i_250,) = [i for i, (kind, data) in enumerate(events) if kind == "write" and queue_id.encode() in data]  # type: ignore[operator]
    assert "fsync-segment" in kinds[:i_250], kinds  # the body is on disk ...
    assert events[i_250 - 1] == ("indexed", {queue_id})  # ... and its index row committed, before the 250
    assert gw.accepted[0].id == queue_id


# -- group commit ------------------------------------------------------------------------

SESSIONS = 20
PER_SESSION = 5


async def test_group_commit_shares_fsyncs(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    is_segment = segment_fds(gw)
    real_fsync = os.fsync
    lock = threading.Lock()
    segment_fsyncs = 0

    def counting_fsync(fd: int) -> None:
        nonlocal segment_fsyncs
        if is_segment(fd):
            with lock:
                segment_fsyncs += 1
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    start = threading.Barrier(SESSIONS, timeout=TIMEOUT)
    port = gw.port

    def client(n: int) -> list[str]:
        ids = []
        with smtplib.SMTP("127.0.0.1", port, local_hostname=f"c{n}.test", timeout=TIMEOUT) as s:
            s.ehlo()
            start.wait()  # every session ready: now they all send at once
            for i in range(PER_SESSION):
                s.mail("s@example.test")
                s.rcpt("alice@corp.test")
                code, text = s.data(message(f"{n}-{i}"))
                assert code == 250, (code, text)
                ids.append(text.decode().rsplit(" ", 1)[1])
        return ids

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(SESSIONS) as pool:
        async with asyncio.timeout(60):
            results = await asyncio.gather(*(loop.run_in_executor(pool, client, n) for n in range(SESSIONS)))

    ids = {i for r in results for i in r}
    total = SESSIONS * PER_SESSION
    assert len(ids) == total
    assert {m.id for m in gw.accepted} == ids
    assert await gw.stored_ids() == ids
    assert 1 <= segment_fsyncs < total, f"{segment_fsyncs} segment fsyncs for {total} messages"


# -- shutdown ----------------------------------------------------------------------------


async def test_shutdown_sends_421_to_idle_clients_and_refuses_new_ones(gw: Gateway) -> None:
    port = gw.port
    idle = await gw.connect()
    await idle.ehlo()
    fresh = await gw.connect()  # not even greeted yet
    await gw.server.stop(grace=1.0)
    assert [r.last[:9] for r in await idle.replies_until_eof()] == ["421 4.3.2"]
    assert [r.code for r in await fresh.replies_until_eof()] == [421]
    assert gw.server.sessions == {}
    with pytest.raises(OSError):
        async with asyncio.timeout(TIMEOUT):
            await asyncio.open_connection("127.0.0.1", port)


async def test_shutdown_lets_a_message_in_data_finish(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")
    await c.command("DATA", "354 ")
    data = message("in flight")
    await c.send(data[:20])
    stopping = asyncio.create_task(gw.server.stop(grace=TIMEOUT))
    await wait_until(lambda: not gw.server.accepting)
    await c.send(data[20:] + b".\r\n")
    replies = await c.replies_until_eof()
    await stopping
    assert [r.last[:9] for r in replies] == ["250 2.0.0", "421 4.3.2"]
    assert len(gw.accepted) == 1 and await gw.stored_ids() == {gw.accepted[0].id}


async def test_shutdown_grace_expires_mid_data_and_nothing_is_stored(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")
    await c.command("DATA", "354 ")
    await c.send(b"Subject: never finished\r\n\r\npartial\r\n")
    await gw.server.stop(grace=0.2)
    assert [r.code for r in await c.replies_until_eof()] == [421]
    assert gw.accepted == [] and await gw.stored_ids() == set()


async def test_connection_cap(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(max_connections=1)
    first = await gw.connect()
    second = await gw.connect(greet=False)
    assert [r.last for r in await second.replies_until_eof()] == ["421 Too many connections, try again later"]
    await first.ehlo()  # the first session is unaffected
    await first.quit()
    await wait_until(lambda: not gw.server.sessions)
    third = await gw.connect()  # a freed slot is reusable
    await third.quit()
