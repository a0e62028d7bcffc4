"""Which node of a cluster leads, and for which fencing term.

Several nodes may share one PostgreSQL store; exactly one of them leads at a time and alone runs
the monitor's decisions, the failover coordinator, notifications, the DNS switch and the failback
sync. Leading is always "leading in term N": every write the leader makes on the leader's behalf
carries N and is refused by the store once N is no longer the current term (`NotLeading`), so a
node that lost leadership without noticing (paused, partitioned) cannot act on a stale view.

Contract of a `Leadership`:
- `term` is the term this node leads in, or 0; it must turn 0 by itself (no event loop turn needed)
  before the lease another node would wait out ends, so code that resumes after a pause sees 0;
- `wait_leading()` returns the term once this node leads; `wait_lost(term)` returns once it no
  longer leads in `term`; `step_down(term)` is called by a part whose fenced write was refused.

`Solo` is the one node of an embedded (SQLite) store: it always leads, in term 1.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

SOLO_TERM = 1  # the term of the single node of an embedded store (the schema's first row)


class NotLeading(Exception):
    """This node does not lead in the term it acted for (any more): the leader's work is not done here."""


class Leadership(Protocol):
    node: str

    @property
    def term(self) -> int:
        """The term this node leads in; 0 when it does not lead."""
        ...

    async def wait_leading(self) -> int: ...

    async def wait_lost(self, term: int) -> None: ...

    def step_down(self, term: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Lead:
    """One term of this node's leadership, handed to work done on the leader's behalf."""

    leadership: Leadership
    term: int

    @property
    def node(self) -> str:
        return self.leadership.node

    def check(self) -> None:
        """Raise NotLeading unless this node still leads in this term (checked before each effect)."""
        if self.leadership.term != self.term:
            raise NotLeading(f"{self.leadership.node} no longer leads in term {self.term}")


async def while_leading(leadership: Leadership, work: Callable[[int], Awaitable[None]]) -> None:
    """Run `work(term)` each time this node leads; it is cancelled the moment the node stops leading."""
    while True:
        term = await leadership.wait_leading()
        task = asyncio.create_task(work(term), name=f"leading-{term}")
        lost = asyncio.create_task(leadership.wait_lost(term), name=f"lost-{term}")
        try:
            done, _ = await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (task, lost):
                t.cancel()
            await asyncio.gather(task, lost, return_exceptions=True)
        if task in done and not task.cancelled() and task.exception() is not None:
            log.error("the leader's work failed in term %d", term, exc_info=task.exception())
        if lost not in done:  # `work` ended on its own: nothing more to do until the term is over
            await leadership.wait_lost(term)


class Solo:
    """The only node: leads for good in term 1 (the embedded store; nobody else can write to it)."""

    node = "solo"

    async def start(self) -> None:
        """Nothing to elect."""

    async def stop(self) -> None:
        """Nothing to release."""

    @property
    def term(self) -> int:
        return SOLO_TERM

    async def wait_leading(self) -> int:
        return SOLO_TERM

    async def wait_lost(self, term: int) -> None:
        if term == SOLO_TERM:
            await asyncio.Event().wait()  # never

    def step_down(self, term: int) -> None:
        raise AssertionError(f"the single node's term {term} was refused: the store is shared")
