"""Failback sync into a real Dovecot: exactly once, resumable, honest about a primary that fails.

The outage (tests/support/outage.py): 1,000 messages for 20 users filed on the
standby, some read and some deleted over IMAP against a running Standby, replies
sent through its submission port (Sent copies), journal copies read on the phone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.database import query
from tests.support.outage import (
    JOURNALED,
    USERS,
    Outage,
    assert_primary_matches,
    primary_state,
    record_outage,
)
from tests.support.primary import Primary
from tests.support.standby import render_config

from mailstandby.config import PrimarySettings, SyncSettings
from mailstandby.core.leadership import SOLO_TERM, Lead, Solo
from mailstandby.store.sqlite_sync import SQLiteSyncRecords
from mailstandby.sync.engine import PrimaryUnavailable, SyncEngine
from mailstandby.sync.plan import Progress
from mailstandby.sync.records import RunLock

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def primary20(tmp_path: Path) -> Iterator[Primary]:
    p = Primary(tmp_path / "primary", users={u: f"pw-{u}" for u in USERS})
    try:
        p.start()
        yield p
    finally:
        p.close()


@pytest.fixture
def outage(tmp_path: Path, primary20: Primary) -> Outage:
    return record_outage(tmp_path / "standby", primary20)


def settings(primary: Primary, **overrides: object) -> SyncSettings:
    values: dict[str, object] = {
        "imap_host": primary.host,
        "imap_port": primary.imap_port,
        "imap_tls": "none",
        "master_user": primary.master_user,
        "concurrency": 4,
    }
    values.update(overrides)
    return SyncSettings.model_validate(values)


def engine(outage: Outage, primary: Primary, **overrides: object) -> SyncEngine:
    return SyncEngine(
        SQLiteSyncRecords(outage.data_dir),
        RunLock(outage.data_dir),
        settings(primary, **overrides),
        PrimarySettings(),
        password=primary.master_password,
    )


def done_records(outage: Outage) -> list[tuple[str, str, int, str]]:
    return query(  # type: ignore[return-value]
        outage.data_dir, "SELECT user, folder, body_id, reason FROM sync_items WHERE state = 'done' ORDER BY user"
    )


async def test_sync_puts_every_outage_message_into_the_primary_once(outage: Outage, primary20: Primary) -> None:
    sync = engine(outage, primary20)
    seen: list[Progress] = []
    try:
        report = await sync.run(progress=seen.append)
        assert report.complete and not report.failures
        assert report.reasons["appended"] == outage.standby_only
        assert report.reasons["flags-applied"] == len(USERS) * len([j for j in range(JOURNALED) if j % 2 == 0])
        assert report.reasons.get("journal-unchanged") is None  # journal copies without flags are not candidates
        assert seen and seen[-1].done == seen[-1].total == report.planned
        status = await sync.status()
        assert status.total.pending == status.total.failed == 0 and status.total.done == report.planned
        assert set(status.users) == set(USERS)
    finally:
        await sync.close()
    assert_primary_matches(primary20, outage.expected)
    # a second run (a fresh engine) transfers nothing
    again = engine(outage, primary20)
    try:
        second = await again.run()
    finally:
        await again.close()
    assert second.planned == 0 and "appended" not in second.reasons
    assert_primary_matches(primary20, outage.expected)


async def test_cancelled_mid_run_and_crash_between_append_and_record_resume_without_duplicates(
    outage: Outage, primary20: Primary
) -> None:
    # 1) the controller cancels the run (the primary failed again, say) part-way
    first = engine(outage, primary20, concurrency=2, batch_messages=8)
    task: asyncio.Task[object] | None = None

    def cancel_midway(p: Progress) -> None:
        if p.done >= 300 and task is not None:
            task.cancel()

    task = asyncio.create_task(first.run(progress=cancel_midway))
    with pytest.raises(asyncio.CancelledError):
        await task
    await first.close()
    after_cancel = len(done_records(outage))
    assert 300 <= after_cancel < outage.standby_only

    # 2) a crash in the window between the primary's OK to APPEND and our record: the next run's
    # records are never written (as if the process died right after the OK), then a fresh engine
    crashing = engine(outage, primary20, concurrency=1, batch_messages=8)
    real_finish = crashing.records.finish
    calls = 0

    async def finish_then_die(done: list) -> None:  # type: ignore[type-arg]
        nonlocal calls
        calls += 1
        if calls == 3:  # the whole run dies here, before recording what the primary accepted
            assert crash is not None
            crash.cancel()
            raise asyncio.CancelledError
        await real_finish(done)

    crashing.records.finish = finish_then_die  # type: ignore[method-assign]
    crash: asyncio.Task[object] | None = None
    crash = asyncio.create_task(crashing.run())
    with pytest.raises(asyncio.CancelledError):
        await crash
    await crashing.close()
    assert len(done_records(outage)) < outage.standby_only

    fresh = engine(outage, primary20)
    try:
        report = await fresh.run()
    finally:
        await fresh.close()
    assert report.complete
    assert report.reasons.get("found-by-trace", 0) >= 1  # what the crash left unrecorded was found, not re-sent
    assert_primary_matches(primary20, outage.expected)


async def test_primary_fails_during_sync_then_a_later_run_completes(outage: Outage, primary20: Primary) -> None:
    sync = engine(outage, primary20, concurrency=2, batch_messages=4)

    def stop_primary_midway(p: Progress) -> None:
        if p.done >= 200 and primary20._dovecot is not None:
            primary20.stop_imap()  # blocks the loop while Dovecot goes down: deterministic

    try:
        with pytest.raises(PrimaryUnavailable) as e:
            await sync.run(progress=stop_primary_midway)
    finally:
        await sync.close()
    assert f"{primary20.host}:{primary20.imap_port}" in str(e.value) and "failed during the sync" in str(e.value)
    primary20.start_imap()
    # nothing is marked synced that is not on the primary
    marked = done_records(outage)
    assert 200 <= len(marked) < outage.standby_only
    for user in {u for u, _, _, _ in marked}:
        state = primary_state(primary20, user)
        have = {(f, mid) for f, rows in state.items() for mid, _, _, _ in rows}
        for _, folder, body_id, reason in (r for r in marked if r[0] == user):
            mid = _message_id(outage, body_id)
            assert (folder, mid) in have, f"{user} {folder} {mid} marked {reason} but not on the primary"
    later = engine(outage, primary20)
    try:
        report = await later.run()
    finally:
        await later.close()
    assert report.complete and not report.failures
    assert_primary_matches(primary20, outage.expected)


def _message_id(outage: Outage, body_id: int) -> str:
    [(data,)] = query(outage.data_dir, "SELECT data FROM bodies WHERE id = ?", (body_id,))
    header = bytes(data).split(b"\r\n\r\n", 1)[0].decode()
    [line] = [h for h in header.split("\r\n") if h.lower().startswith("message-id:")]
    return line.split(":", 1)[1].strip()


async def test_kill_9_of_sync_run_after_the_primary_appended_resumes_without_duplicates(
    outage: Outage, primary20: Primary, tmp_path: Path
) -> None:
    """`mailstandby sync run` is killed -9 at the worst moment: the primary has stored a batch and
    sent its OK, which never arrives (a proxy holds it back). A second `sync run` finishes the job."""
    holdback = _OkHoldingProxy(primary20.host, primary20.imap_port, kill_after=20)
    await holdback.start()
    try:
        config = _cli_config(tmp_path, outage, primary20, holdback.port)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mailstandby", "sync", "run", "-c", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        holdback.victim = proc.pid
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == -signal.SIGKILL, (out + err).decode()
        assert holdback.killed
    finally:
        await holdback.stop()
    killed_at = len(done_records(outage))
    assert killed_at < outage.standby_only
    config = _cli_config(tmp_path, outage, primary20, primary20.imap_port)  # straight to Dovecot now
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailstandby", "sync", "run", "-c", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, (out + err).decode()
    summary = out.decode().strip().splitlines()[-1]
    assert "pending=0" in summary and "found-by-trace=" in summary, summary
    assert_primary_matches(primary20, outage.expected)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailstandby", "sync", "status", "--json", "-c", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert b'"pending": 0' in out and b'"failed": 0' in out


async def test_a_command_line_sync_beside_the_servers_own_waits_its_turn(
    outage: Outage, primary20: Primary, tmp_path: Path
) -> None:
    """The server's failback sync is part-way through when an administrator runs `mailstandby sync
    run`: the command refuses to start (naming the running sync) rather than plan and append the same
    messages beside it; `sync status` still answers. The server's sync then finishes, every message
    in the primary once, and a later command-line run has nothing to do. A server sync that finds the
    command line's run going waits for it, then runs."""
    server = engine(outage, primary20, concurrency=1, batch_messages=8)
    real_finish = server.records.finish
    midway, resume = asyncio.Event(), asyncio.Event()
    calls = 0

    async def finish_then_pause(done: list) -> None:  # type: ignore[type-arg]
        nonlocal calls
        calls += 1
        await real_finish(done)
        if calls == 2:
            midway.set()
            await resume.wait()

    server.records.finish = finish_then_pause  # type: ignore[method-assign]
    run = asyncio.create_task(server.run())
    config = _cli_config(tmp_path, outage, primary20, primary20.imap_port)
    try:
        async with asyncio.timeout(120):
            await midway.wait()
        for command in (["run"], ["status", "--json"]):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mailstandby", "sync", *command, "-c", str(config),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 120)
            if command == ["run"]:
                assert proc.returncode == 2, (out + err).decode()
                assert f"another failback sync is running on this store (pid {os.getpid()}" in err.decode()
            else:
                assert proc.returncode == 0 and b'"pending": ' in out, err.decode()
        resume.set()
        report = await asyncio.wait_for(run, 120)
    finally:
        resume.set()
        await server.close()
    assert report.complete and report.reasons["appended"] == outage.standby_only
    assert_primary_matches(primary20, outage.expected)

    # the other way round: the command line holds the store, the server's failback waits for it
    holder = engine(outage, primary20)
    assert holder.run_lock.acquire() is None
    waiting = engine(outage, primary20)
    waiting.busy_retry = 0.05
    tries: list[str | None] = []
    real_acquire = waiting.run_lock.acquire

    def counted_acquire() -> str | None:
        tries.append(real_acquire())
        return tries[-1]

    waiting.run_lock.acquire = counted_acquire  # type: ignore[method-assign]
    try:
        told: list[str] = []

        async def user_done(user: str) -> None:
            told.append(user)

        failback = asyncio.create_task(waiting.failback(None, Lead(Solo(), SOLO_TERM), user_done))
        async with asyncio.timeout(60):
            while len(tries) < 3:  # refused three times while the command line holds the store
                await asyncio.sleep(0.01)
        assert not failback.done() and all(t is not None for t in tries)
        holder.run_lock.release()
        assert await asyncio.wait_for(failback, 120) == 0
    finally:
        holder.run_lock.release()
        await waiting.close()
    assert_primary_matches(primary20, outage.expected)


def _cli_config(tmp_path: Path, outage: Outage, primary: Primary, port: int) -> Path:
    password_file = tmp_path / "master.pw"
    password_file.write_text(primary.master_password + "\n")
    password_file.chmod(0o600)
    path = tmp_path / "sync.toml"
    path.write_text(
        render_config(
            {
                "node": {"data_dir": str(outage.data_dir)},
                "directory": {"domains": ["corp.test"], "csv": str(outage.data_dir.parent / "users.csv")},
                "sync": {
                    "imap_host": primary.host,
                    "imap_port": port,
                    "imap_tls": "none",
                    "master_user": primary.master_user,
                    "password_file": str(password_file),
                    "concurrency": 1,
                    "batch_messages": 4,
                },
            },
            [],
        )
    )
    return path


class _OkHoldingProxy:
    """A TCP proxy to Dovecot that, once it has passed `kill_after` APPEND completions, swallows the
    next one and kills the client with SIGKILL: the primary stored the batch, the client never knew."""

    def __init__(self, host: str, port: int, *, kill_after: int) -> None:
        self.target = (host, port)
        self.kill_after = kill_after
        self.seen = 0
        self.victim = 0
        self.killed = False
        self.server: asyncio.Server | None = None
        self.port = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        up = asyncio.create_task(self._pump(reader, up_writer))
        down = asyncio.create_task(self._down(up_reader, writer))
        self.tasks |= {up, down}
        await asyncio.gather(up, down, return_exceptions=True)
        for w in (writer, up_writer):
            w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def _down(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            if b" OK [APPENDUID " in line and not line.startswith(b"*"):
                self.seen += 1
                if self.seen > self.kill_after and not self.killed:
                    self.killed = True
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.victim, signal.SIGKILL)
                    return  # this OK never reaches the client
            writer.write(line)
            await writer.drain()
        writer.close()
