"""The writer hand-off and batching loop both store backends share (SQLite, PostgreSQL).

Each store has one writer thread owning its writing connection. The event loop hands it an `Op`
(`Accept` a message, `Record` delivery outcomes, `Call` a function in the batch transaction) and
awaits the result (`hand_to_writer`); the thread takes everything waiting as one batch and commits it
in one transaction (`run_writer`: group commit, no timer), then tells each op its result.
"""

from __future__ import annotations

import asyncio
import logging
import queue
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mailstandby.core.model import Envelope
from mailstandby.store.base import NewMessage, Outcome, QueuedRecipient, StoreError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Op:
    done: Callable[[Any, BaseException | None], None]
    result: Any = None
    error: BaseException | None = None


@dataclass(slots=True)
class Accept(Op):
    message: NewMessage | None = None


@dataclass(slots=True)
class Record(Op):
    outcomes: list[Outcome] = field(default_factory=list)
    also: Callable[[Any], Any] | None = None  # run in the same transaction as the outcomes (on its connection)
    atomic: bool = False  # `also` failing undoes the outcomes too


@dataclass(slots=True)
class Call(Op):
    """A function run in the writer thread inside the batch transaction, in its own savepoint."""

    fn: Callable[[Any], Any] | None = None


async def hand_to_writer(ops: queue.SimpleQueue[Op | None], op: Op) -> Any:
    """Queue `op` for a store's writer thread and wait, on the event loop, for its result."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()

    def done(result: Any, error: BaseException | None) -> None:
        if fut.done():
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)

    op.done = lambda r, e: loop.call_soon_threadsafe(done, r, e)
    ops.put(op)
    return await fut


def run_writer(
    ops: queue.SimpleQueue[Op | None], apply: Callable[[list[Op]], None], after: Callable[[], None] = lambda: None
) -> None:
    """A store's writer thread: everything waiting is one batch for `apply` (group commit); each op is
    then told its result. A None in the queue stops the thread once the batch before it is done."""
    stopping = False
    while not stopping:
        first = ops.get()
        if first is None:
            break
        batch = [first]
        while True:
            try:
                op = ops.get_nowait()
            except queue.Empty:
                break
            if op is None:
                stopping = True
                break
            batch.append(op)
        try:
            apply(batch)
        except BaseException as e:  # the thread must never die silently
            log.exception("store writer failed")
            for op in batch:
                if op.error is None and op.result is None:
                    op.error = StoreError(f"store failure: {e}")
        for op in batch:
            op.done(op.result, op.error)
        after()


def queued_recipient(env: Envelope, rcpt: str) -> QueuedRecipient:
    """A new recipient's queue entry, with its DSN request (RFC 3461) if it made one."""
    dsn = env.dsn.get(rcpt)
    if dsn is None:
        return QueuedRecipient(rcpt)
    return QueuedRecipient(rcpt, notify=",".join(sorted(dsn.notify)), orcpt=dsn.orcpt)


def noop(result: Any, error: BaseException | None) -> None:
    """Placeholder completion; replaced by `hand_to_writer`."""
