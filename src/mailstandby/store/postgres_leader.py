"""Leader election for nodes sharing one PostgreSQL store (core.leadership.Leadership).

Invariants:
- the leader holds a session-level advisory lock on a connection of its own; taking the lead
  increments `cluster_leader.term` (the fencing term) in the same row that every fenced write
  locks (store/fencing.py), so the new term is visible only after the old leader's last fenced
  write committed, and every later write of the old term is refused;
- the lease (`lease_until`, in the server's clock) is renewed every `renew_interval`; a leader whose
  renewal did not succeed by `lease - renew_interval` after it was sent stops leading by itself (its
  `term` reads 0 from that instant, also right after a SIGSTOP/SIGCONT, before any timer ran), and
  closes its lock connection;
- a follower tries the lock every `renew_interval`; when it is held but the lease ran out at two
  tries in a row (the holder is paused or cut off while its session lives on; a node that has just
  taken the lock has a new term by the next try), the follower terminates the holder's session,
  which releases the lock, and takes it;
- a node that gets the lock first waits out what is left of the previous leader's lease (which
  stopped acting before it ends), so two nodes never both believe they lead; a node killed outright
  loses its session and the lock at once, a node shutting down also ends its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import psycopg

from mailstandby.config import ClusterSettings

log = logging.getLogger(__name__)

LOCK_KEY = (0x6D736273, 2)  # pg_try_advisory_lock(int4, int4): pg_locks shows classid, objid, objsubid = 2
_NOW = "extract(epoch from clock_timestamp())"


class PostgresLeadership:
    def __init__(self, url: str, settings: ClusterSettings, node: str) -> None:
        self.url = url
        self.settings = settings
        self.node = node
        self._term = 0
        self._deadline = 0.0  # monotonic instant by which the lease must have been renewed
        self._changed = asyncio.Event()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._expired_seen: tuple[int, float] | None = None  # (term, lease) found run out at the last try

    # -- core.leadership.Leadership ------------------------------------------------------------
    @property
    def term(self) -> int:
        if self._term and time.monotonic() >= self._deadline:
            self._lose(self._term, "the lease was not renewed in time")
        return self._term

    async def wait_leading(self) -> int:
        while True:
            changed = self._changed
            if self.term:
                return self._term
            await changed.wait()

    async def wait_lost(self, term: int) -> None:
        while self.term == term:
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, self._deadline - time.monotonic())):
                    await changed.wait()

    def step_down(self, term: int) -> None:
        self._lose(term, "a write of this term was refused")

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="leadership")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        term, conn = self._term, self._conn
        self._lose(term, "shutting down")
        if term and conn is not None and not conn.closed:  # the next leader need not wait out the lease
            with contextlib.suppress(psycopg.Error, OSError, TimeoutError):
                async with asyncio.timeout(self.settings.renew_interval):
                    await conn.execute("UPDATE cluster_leader SET lease_until = 0 WHERE id = 1 AND term = %s", (term,))
        await self._drop()

    # -- the election --------------------------------------------------------------------------
    def _set(self, term: int) -> None:
        self._term = term
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _lose(self, term: int, why: str) -> None:
        if term and term == self._term:
            log.warning("leadership: %s stops leading (term %d): %s", self.node, term, why)
            self._set(0)

    async def _run(self) -> None:
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = await psycopg.AsyncConnection.connect(
                        self.url, autocommit=True, connect_timeout=max(2, int(self.settings.renew_interval * 2)),
                        application_name=f"mailstandby-leader {self.node}"[:63],
                    )  # fmt: skip
                term = await self._try_lead(self._conn)
                if term:
                    await self._renew_until_lost(self._conn, term)
                    await self._drop()  # releases the lock, if the session still holds it
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError, TimeoutError) as e:
                self._lose(self._term, f"the leadership connection failed: {type(e).__name__}: {e}")
                await self._drop()
            await asyncio.sleep(self.settings.renew_interval)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    async def _try_lead(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Take the lock (from a holder whose lease ran out, if need be); the new term, or 0."""
        async with asyncio.timeout(self.settings.renew_interval * 2):
            got = await self._lock(conn)
            if not got and await self._expired(conn):
                await self._evict(conn)
                for _ in range(20):  # the holder's session ends a moment after it is told to
                    got = await self._lock(conn)
                    if got:
                        break
                    await asyncio.sleep(self.settings.renew_interval / 20)
            if not got:
                return 0
        await self._wait_out_lease(conn)
        async with asyncio.timeout(self.settings.renew_interval * 2):
            started = time.monotonic()
            cur = await conn.execute(
                f"UPDATE cluster_leader SET term = term + 1, node = %s, lease_until = {_NOW} + %s WHERE id = 1"
                " RETURNING term",
                (self.node, self.settings.lease),
            )
            row = await cur.fetchone()
        assert row is not None, "cluster_leader has its row from the schema migration"
        self._deadline = started + self.settings.lease - self.settings.renew_interval
        self._set(int(row[0]))
        log.warning("leadership: %s leads (term %d)", self.node, self._term)
        return self._term

    async def _wait_out_lease(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Holding the lock, let the previous leader's lease run out first: it stops acting before its
        lease ends, so two nodes never both believe they lead (a leader that stopped cleanly ended it)."""
        cur = await conn.execute(f"SELECT node, lease_until - {_NOW} FROM cluster_leader WHERE id = 1")
        row = await cur.fetchone()
        if row is not None and row[0] != self.node and row[1] > 0:
            log.info("leadership: %s waits %.1fs for the lease of %s to run out", self.node, row[1], row[0])
            await asyncio.sleep(min(float(row[1]), self.settings.lease))

    async def _lock(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", LOCK_KEY)
        row = await cur.fetchone()
        return bool(row and row[0])

    async def _expired(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        """Whether the lock's holder let its lease run out: seen at two tries in a row with the same
        term and lease (a node that has just taken the lock has a new term by the next try)."""
        cur = await conn.execute(
            f"SELECT node, term, lease_until, lease_until < {_NOW} FROM cluster_leader WHERE id = 1"
        )
        row = await cur.fetchone()
        seen, self._expired_seen = self._expired_seen, (row[1], row[2]) if row is not None and row[3] else None
        if self._expired_seen is None or seen != self._expired_seen:
            return False
        log.warning("leadership: the lease of %s (term %d) ran out; %s takes over", row[0], row[1], self.node)
        return True

    async def _evict(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """End the session holding the lock (a paused or cut-off leader): the lock is released with it."""
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s"
            " AND objid = %s AND objsubid = 2 AND granted AND pid <> pg_backend_pid()",
            LOCK_KEY,
        )

    async def _renew_until_lost(self, conn: psycopg.AsyncConnection[Any], term: int) -> None:
        while self.term == term:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.renew_interval):
                    await self.wait_lost(term)
            if self.term != term:
                return
            started = time.monotonic()
            async with asyncio.timeout(max(0.01, self._deadline - started)):
                cur = await conn.execute(
                    f"UPDATE cluster_leader SET lease_until = {_NOW} + %s WHERE id = 1 AND term = %s AND node = %s",
                    (self.settings.lease, term, self.node),
                )
            if cur.rowcount != 1:
                self._lose(term, "another node took the lead")
                return
            if self._term == term:
                self._deadline = started + self.settings.lease - self.settings.renew_interval
