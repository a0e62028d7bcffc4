"""SQLiteStore on real files: durability order, recovery from damage, retirement, faults.

RELIABILITY D1 (fsync before the commit that makes a message visible), D3 (torn
or damaged spool: quarantine, never a partial delivery), D5/D6 (ENOSPC, EFBIG,
fsync EIO) and D14 (WAL + synchronous=FULL), and the DESIGN promises in
docs/architecture.md (group commit, a record without an index row is garbage,
spent segments are deleted).
"""

from __future__ import annotations

import asyncio
import errno
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from smtp_harness import TIMEOUT

from mailstandby.config import MiB, StoreSettings
from mailstandby.core.model import BodyType, Envelope, new_queue_id
from mailstandby.store.base import (
    CorruptMessage,
    NewMessage,
    Origin,
    Outcome,
    QueuedMessage,
    RcptState,
    StoreError,
)
from mailstandby.store.segments import SegmentWriter
from mailstandby.store.sqlite import SQLiteStore

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.backends import Store, build_store
from tests.support.database import database

SMALL = StoreSettings(segment_size=1 * MiB)  # the smallest allowed: rotation after ~1 MiB

StoreFactory = Callable[..., Awaitable[SQLiteStore]]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def open_store(data_dir: Path) -> AsyncIterator[StoreFactory]:
    """Open (or reopen) the store in `data_dir`; every store opened is closed at teardown."""
    opened: list[SQLiteStore] = []

    async def make(settings: StoreSettings | None = None) -> SQLiteStore:
        store = SQLiteStore(data_dir, settings or StoreSettings())
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def open_any_store(data_dir: Path, store_settings: StoreSettings) -> AsyncIterator[StoreFactory]:
    """`open_store` on each backend (the MailStore contract, whatever holds the bodies)."""
    opened: list[Store] = []

    async def make() -> Store:
        store = build_store(data_dir, store_settings)
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


def body(subject: str, size: int = 0) -> bytes:
    """A CRLF message; with `size`, padded to about that many bytes with 8-bit content and dot lines."""
    head = f"From: s@example.test\r\nTo: alice@corp.test\r\nSubject: {subject}\r\n\r\n".encode()
    text = b"caf\xc3\xa9 \x00\xff\r\n.\r\n..dot\r\nend\r\n"
    if size:
        line = b"x" * 998 + b"\r\n"
        text += line * max(1, (size - len(head) - len(text)) // len(line))
    return head + text


def new(subject: str, rcpts: tuple[str, ...] = ("alice@corp.test",), *, size: int = 0, sender: str = "s@example.test"):
    env = Envelope(sender=sender, recipients=list(rcpts), body_type=BodyType.EIGHT_BIT)
    return NewMessage(new_queue_id(), env, body(subject, size), time.time())


def segments(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "spool").glob("seg-*.dat"))


def states(store: SQLiteStore, message_id: str) -> dict[str, str]:
    return {d["rcpt"]: d["state"] for d in store.deliveries(message_id)}


async def pending_ids(store: SQLiteStore) -> set[str]:
    return {m.id for m in await store.pending()}


def fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def is_segment_fd(data_dir: Path) -> Callable[[int], bool]:
    prefix = str(data_dir / "spool" / "seg-")
    return lambda fd: fd_path(fd).startswith(prefix)


async def eventually(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.005)


def outcome(m: QueuedMessage | NewMessage, rcpt: str, state: RcptState, reply: str = "250 2.0.0 Ok") -> Outcome:
    return Outcome(m.id, rcpt, state, 1, 0.0, reply, "primary")


# -- accept, reopen, read back -------------------------------------------------------------


async def test_accepted_message_survives_reopen_byte_identical(open_any_store: StoreFactory) -> None:
    open_store = open_any_store
    store = await open_store()
    one = new("one", ("alice@corp.test", "bob@corp.test"))
    two = NewMessage(
        new_queue_id(),
        Envelope(sender="", recipients=["carol@corp.test"], smtputf8=True),
        b"Subject: bounce\r\n\r\n\xe2\x9c\x93\r\n",
        time.time(),
        Origin.DSN,
    )
    queued = await store.accept(one)
    assert queued.id == one.id and [r.rcpt for r in queued.recipients] == ["alice@corp.test", "bob@corp.test"]
    await store.accept(two)
    await store.close()

    store = await open_store()
    pending = {m.id: m for m in await store.pending()}
    assert set(pending) == {one.id, two.id}
    p1, p2 = pending[one.id], pending[two.id]
    assert (p1.sender, p1.size, p1.body_type, p1.smtputf8, p1.origin) == (
        "s@example.test",
        len(one.body),
        "8BITMIME",
        False,
        Origin.SMTP,
    )
    assert [(r.rcpt, r.attempts) for r in p1.recipients] == [("alice@corp.test", 0), ("bob@corp.test", 0)]
    assert (p2.sender, p2.smtputf8, p2.origin, [r.rcpt for r in p2.recipients]) == (
        "",
        True,
        Origin.DSN,
        ["carol@corp.test"],
    )
    assert await store.read_body(one.id) == one.body
    assert await store.read_body(two.id) == two.body


async def test_sqlite_runs_in_wal_mode_with_synchronous_full(open_store: StoreFactory, data_dir: Path) -> None:
    """RELIABILITY D14: NORMAL could roll back the last commits on power loss."""
    store = await open_store()
    await store.accept(new("pragmas"))
    for db in (store._db, store._read_db):
        assert db is not None
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with database(data_dir) as outside:  # WAL is a property of the file
        assert outside.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- D1: the order of the commit ---------------------------------------------------------------


async def test_body_is_fsynced_before_the_index_commit_and_visible_when_accept_returns(
    open_store: StoreFactory, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_store()
    assert store._db is not None
    is_segment = is_segment_fd(data_dir)
    events: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        path = fd_path(fd)
        real_fsync(fd)
        events.append("fsync-segment" if is_segment(fd) else f"fsync {path}")

    def trace(statement: str) -> None:
        if statement.strip().upper() == "COMMIT":
            events.append("commit")

    monkeypatch.setattr(os, "fsync", recording_fsync)
    store._db.set_trace_callback(trace)
    m = new("durable")
    await store.accept(m)
    assert events[:2] == ["fsync-segment", "commit"], events

    with database(data_dir) as fresh:  # another process's view, right after accept()
        assert fresh.execute("SELECT id FROM messages").fetchall() == [(m.id,)]
        assert fresh.execute("SELECT rcpt, state FROM deliveries").fetchall() == [("alice@corp.test", "queued")]


async def test_a_new_segment_is_made_durable_in_its_directory_before_use(
    open_store: StoreFactory, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new file is only durable after fsync of its directory (ALICE, OSDI'14)."""
    store = await open_store(SMALL)
    await store.accept(new("fills the first segment", size=int(1.1 * MiB)))
    events: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        path = fd_path(fd)
        real_fsync(fd)
        events.append(path)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    await store.accept(new("starts the second"))
    spool = str(data_dir / "spool")
    assert events == [spool, spool + "/seg-00000002.dat"], events
    assert segments(data_dir) == ["seg-00000001.dat", "seg-00000002.dat"]


# -- D3: damaged or torn spool -------------------------------------------------------------------


def locate(data_dir: Path, m: NewMessage) -> tuple[Path, int]:
    """The segment holding `m` and the offset of its body there."""
    for path in (data_dir / "spool").glob("seg-*.dat"):
        raw = path.read_bytes()
        header = f"MSR1 {m.id} ".encode()
        at = raw.find(header)
        if at >= 0:
            return path, raw.index(b"\r\n", at) + 2
    raise AssertionError(f"no record for {m.id}")


async def test_a_damaged_body_is_quarantined_never_delivered(open_store: StoreFactory, data_dir: Path) -> None:
    store = await open_store()
    good, bad = new("good"), new("bad", ("alice@corp.test", "bob@corp.test"))
    await store.accept(good)
    await store.accept(bad)
    await store.close()

    path, offset = locate(data_dir, bad)
    raw = bytearray(path.read_bytes())
    raw[offset + 20] ^= 0x01  # one bit flipped inside the body
    path.write_bytes(bytes(raw))
    damaged = bytes(raw[offset : offset + len(bad.body)])

    store = await open_store()
    assert await pending_ids(store) == {good.id, bad.id}  # damage is only known when read
    with pytest.raises(CorruptMessage):
        await store.read_body(bad.id)
    assert (data_dir / "quarantine" / f"{bad.id}.partial").read_bytes() == damaged
    assert states(store, bad.id) == {"alice@corp.test": "quarantined", "bob@corp.test": "quarantined"}
    assert await pending_ids(store) == {good.id}
    assert await store.read_body(good.id) == good.body  # its neighbour is untouched


async def test_a_segment_torn_inside_a_record_opens_and_quarantines_the_torn_message(
    open_store: StoreFactory, data_dir: Path
) -> None:
    store = await open_store()
    first, torn = new("first"), new("torn", size=8192)
    await store.accept(first)
    await store.accept(torn)
    await store.close()

    path, offset = locate(data_dir, torn)
    cut = offset + len(torn.body) // 2
    os.truncate(path, cut)  # a crash in the middle of writing the record

    store = await open_store()  # opens fine
    assert await store.read_body(first.id) == first.body
    with pytest.raises(CorruptMessage):
        await store.read_body(torn.id)
    assert (data_dir / "quarantine" / f"{torn.id}.partial").read_bytes() == torn.body[: cut - offset]
    assert states(store, torn.id) == {"alice@corp.test": "quarantined"}
    assert await pending_ids(store) == {first.id}

    after = new("after the tear")  # appended after the torn tail, and whole
    await store.accept(after)
    assert await store.read_body(after.id) == after.body
    assert await pending_ids(store) == {first.id, after.id}


async def test_a_record_without_an_index_row_is_never_mail(open_store: StoreFactory, data_dir: Path) -> None:
    """A crash between the segment fsync and the index commit leaves a record nobody may see."""
    store = await open_store()
    real = new("real")
    await store.accept(real)
    await store.close()

    ghost_id = new_queue_id()
    writer = SegmentWriter(data_dir / "spool", StoreSettings().segment_size)
    try:
        writer.append([(ghost_id, body("ghost"))])
        writer.sync()
    finally:
        writer.close()

    store = await open_store()
    assert await pending_ids(store) == {real.id}
    with pytest.raises(StoreError):
        await store.read_body(ghost_id)
    later = new("later")
    await store.accept(later)
    assert await pending_ids(store) == {real.id, later.id}
    assert await store.read_body(later.id) == later.body


async def test_a_transient_read_error_is_not_taken_for_damage(
    open_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Running out of file descriptors (X2) is temporary: the message must stay queued, not be quarantined."""
    store = await open_store()
    m = new("fine")
    await store.accept(m)
    real_open = os.open

    def no_fds(path: object, *args: object, **kw: object) -> int:
        if "seg-" in str(path):
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", no_fds)
    with pytest.raises(StoreError) as e:
        await store.read_body(m.id)
    assert not isinstance(e.value, CorruptMessage)
    monkeypatch.undo()
    assert states(store, m.id) == {"alice@corp.test": "queued"}
    assert await store.read_body(m.id) == m.body


# -- record(): retirement and spent segments ---------------------------------------------------


async def test_outcomes_retire_messages_and_deferrals_are_kept(open_any_store: StoreFactory) -> None:
    open_store = open_any_store
    store = await open_store()
    m = new("three", ("a@corp.test", "b@corp.test", "c@corp.test"))
    await store.accept(m)
    later = time.time() + 60
    await store.record(
        [
            outcome(m, "a@corp.test", RcptState.DELIVERED),
            outcome(m, "b@corp.test", RcptState.FAILED, "550 5.1.1 no such user"),
            Outcome(m.id, "c@corp.test", RcptState.QUEUED, 1, later, "452 4.2.2 full", "primary"),
        ]
    )
    (p,) = await store.pending()
    assert [(r.rcpt, r.attempts, r.next_attempt, r.last_reply) for r in p.recipients] == [
        ("c@corp.test", 1, later, "452 4.2.2 full")
    ]
    assert [r.rcpt for r in await store.claim(m.id, ["c@corp.test"])] == ["c@corp.test"]  # the retry's claim
    await store.record([outcome(m, "c@corp.test", RcptState.DELIVERED)])
    assert await store.pending() == []
    assert states(store, m.id) == {"a@corp.test": "delivered", "b@corp.test": "failed", "c@corp.test": "delivered"}
    # a late duplicate outcome cannot resurrect or change a finished recipient
    await store.record([Outcome(m.id, "b@corp.test", RcptState.QUEUED, 2, 0.0, "451 x", "primary")])
    assert await store.pending() == []
    assert states(store, m.id)["b@corp.test"] == "failed"
    await store.close()
    store = await open_store()
    assert await store.pending() == []


async def test_a_spent_segment_is_deleted_and_a_live_one_kept(open_store: StoreFactory, data_dir: Path) -> None:
    store = await open_store(SMALL)
    m1, m2 = new("m1", size=600 * 1024), new("m2", size=600 * 1024)
    await store.accept(m1)
    await store.accept(m2)  # the first segment is now over 1 MiB ...
    m3 = new("m3", size=600 * 1024)
    await store.accept(m3)  # ... so this one starts the second
    assert segments(data_dir) == ["seg-00000001.dat", "seg-00000002.dat"]

    await store.record([outcome(m1, "alice@corp.test", RcptState.DELIVERED)])
    assert segments(data_dir) == ["seg-00000001.dat", "seg-00000002.dat"]  # m2 still lives there
    assert await store.read_body(m2.id) == m2.body

    await store.record([outcome(m2, "alice@corp.test", RcptState.FAILED, "550 5.1.1 no")])
    await eventually(lambda: segments(data_dir) == ["seg-00000002.dat"])
    assert await pending_ids(store) == {m3.id}
    assert await store.read_body(m3.id) == m3.body

    await store.record([outcome(m3, "alice@corp.test", RcptState.DELIVERED)])
    assert segments(data_dir) == ["seg-00000002.dat"]  # the current segment stays: it is being appended to
    await store.close()
    store = await open_store(SMALL)
    assert segments(data_dir) == ["seg-00000002.dat"]
    m4 = new("m4")
    await store.accept(m4)
    assert await store.read_body(m4.id) == m4.body


async def test_a_segment_spent_while_current_is_deleted_once_the_store_moves_on(
    open_store: StoreFactory, data_dir: Path
) -> None:
    """At low load every message is delivered before the segment fills: the file must still go."""
    store = await open_store(SMALL)
    m1, m2 = new("m1", size=600 * 1024), new("m2", size=600 * 1024)
    for m in (m1, m2):
        await store.accept(m)
        await store.record([outcome(m, "alice@corp.test", RcptState.DELIVERED)])
    assert segments(data_dir) == ["seg-00000001.dat"]
    m3 = new("m3")
    await store.accept(m3)  # starts the second segment; nothing in the first is live
    await eventually(lambda: segments(data_dir) == ["seg-00000002.dat"])
    assert await store.read_body(m3.id) == m3.body


# -- group commit ------------------------------------------------------------------------------


async def test_concurrent_accepts_share_segment_fsyncs(
    open_store: StoreFactory, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_store()
    is_segment = is_segment_fd(data_dir)
    lock = threading.Lock()
    count = 0
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        nonlocal count
        if is_segment(fd):
            with lock:
                count += 1
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    messages = [new(f"g{n}") for n in range(50)]
    async with asyncio.timeout(TIMEOUT):
        queued = await asyncio.gather(*(store.accept(m) for m in messages))
    assert [q.id for q in queued] == [m.id for m in messages]
    assert 1 <= count < len(messages), f"{count} segment fsyncs for {len(messages)} messages"
    assert await pending_ids(store) == {m.id for m in messages}
    for m in messages[::7]:
        assert await store.read_body(m.id) == m.body


# -- D5/D6: write and fsync failures ----------------------------------------------------------------


def failing_segment_write(monkeypatch: pytest.MonkeyPatch, data_dir: Path, code: int) -> None:
    """Segment writes store half their data, then fail with `code` (other files are untouched)."""
    is_segment = is_segment_fd(data_dir)
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        if not is_segment(fd):
            return real_write(fd, data)
        if len(data) > 1:
            return real_write(fd, memoryview(data)[: len(data) // 2])
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize(("code", "no_space", "too_big"), [(errno.ENOSPC, True, False), (errno.EFBIG, False, True)])
async def test_a_failed_segment_write_is_an_error_and_leaves_nothing(
    open_store: StoreFactory,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    no_space: bool,
    too_big: bool,
) -> None:
    store = await open_store()
    before = new("before")
    await store.accept(before)
    seg = data_dir / "spool" / "seg-00000001.dat"
    size = seg.stat().st_size

    failing_segment_write(monkeypatch, data_dir, code)
    with pytest.raises(StoreError) as e:
        await store.accept(new("refused", size=64 * 1024))
    assert (e.value.no_space, e.value.too_big) == (no_space, too_big)
    assert await pending_ids(store) == {before.id}
    assert seg.stat().st_size == size  # the partial record was cut away

    monkeypatch.undo()
    after = new("after")
    await store.accept(after)
    assert await pending_ids(store) == {before.id, after.id}
    assert await store.read_body(after.id) == after.body
    assert await store.read_body(before.id) == before.body


async def test_fsync_eio_fails_the_batch_and_abandons_the_segment(
    open_store: StoreFactory, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsyncgate: after a failed fsync the dirty pages may be gone; never trust a retry on that file."""
    store = await open_store()
    before = new("before")
    await store.accept(before)
    is_segment = is_segment_fd(data_dir)
    real_fsync = os.fsync

    def eio(fd: int) -> None:
        if is_segment(fd):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", eio)
    with pytest.raises(StoreError) as e:
        await store.accept(new("lost"))
    assert not e.value.no_space and not e.value.too_big
    monkeypatch.undo()
    assert await pending_ids(store) == {before.id}

    after = new("after")
    await store.accept(after)
    assert segments(data_dir) == ["seg-00000001.dat", "seg-00000002.dat"]
    path, _ = locate(data_dir, after)
    assert path.name == "seg-00000002.dat"  # a new file, not the one whose fsync failed
    assert await pending_ids(store) == {before.id, after.id}
    assert await store.read_body(after.id) == after.body
    assert await store.read_body(before.id) == before.body


async def test_a_new_segment_that_cannot_be_created_never_leaves_a_dangling_descriptor(
    open_store: StoreFactory, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync fails, and the replacement segment cannot be created (disk full) either."""
    store = await open_store()
    await store.accept(new("before"))
    is_segment = is_segment_fd(data_dir)
    real_fsync, real_open = os.fsync, os.open

    def eio(fd: int) -> None:
        if is_segment(fd):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    def full(path: object, *args: object, **kw: object) -> int:
        if "seg-" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "fsync", eio)
    monkeypatch.setattr(os, "open", full)
    with pytest.raises(StoreError):
        await store.accept(new("lost"))
    monkeypatch.undo()

    victim = tmp_path / "victim"  # takes the lowest free descriptor: the one the segment had
    fd = os.open(victim, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        after = new("after")
        await store.accept(after)
        assert await store.read_body(after.id) == after.body
        assert victim.read_bytes() == b""
        assert locate(data_dir, after)[0].name == "seg-00000002.dat"
    finally:
        os.close(fd)


async def test_an_outcome_the_index_cannot_take_does_not_wedge_the_writer(open_any_store: StoreFactory) -> None:
    """A reply text with undecodable bytes (aiosmtplib keeps them as surrogates; P16) is recorded,
    and never wedges the writer: a failed batch is rolled back, or every later commit fails too."""
    store = await open_any_store()
    m = new("m")
    await store.accept(m)
    await store.record([outcome(m, "alice@corp.test", RcptState.DELIVERED, "250 ok \udcff\udcfe")])
    assert states(store, m.id) == {"alice@corp.test": "delivered"}
    assert store.deliveries(m.id)[0]["last_reply"].startswith("250 ok ")
    nxt = new("next")
    await store.accept(nxt)  # an innocent sender must not get a 451 for it
    assert nxt.id in await pending_ids(store)
    await store.record([outcome(nxt, "alice@corp.test", RcptState.DELIVERED)])
    assert nxt.id not in await pending_ids(store)
