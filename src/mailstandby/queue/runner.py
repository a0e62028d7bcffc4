"""The queue runner: delivers every queued recipient, retrying until it is done.

Contract with the store: a recipient leaves the queue only through an
outcome the store made durable (delivered, failed with a DSN already queued,
or quarantined). A crash loses at most the outcomes of deliveries in flight,
which are then retried: a duplicate is possible only for a delivery the
primary accepted in the instant before the crash, and our queue id in the
Received header makes such a copy recognisable. With the sync's IMAP access
configured, such a delivery is marked in flight before it is sent and looked
up in the primary mailbox before it is sent again (queue/inflight.py).

Scheduling is in memory: new mail is pushed by the intake, deferred mail
waits on a timer computed from stored timestamps (attempt count and arrival
time), so a restart resumes the same schedule. Each worker keeps its
connection to the primary open and reuses it for the next message.

Several nodes on one PostgreSQL store: a recipient is attempted only under this node's claim
(`MailStore.claim`, store/claims.py), taken just before the attempt and renewed every
`claim_interval` while the message is in this runner; recipients another node holds are dropped
from this runner's schedule. The same loop claims due retries no node holds and the claims of a
dead node (their in-flight marks make them deliveries in doubt). One node alone (SQLite) holds
every claim.

A destination is a route, and for direct MX delivery (Route.DIRECT) a route
and a domain: each gets its own transaction, connection and dead-destination
backoff. A connection whose `open()` raises Rejected answers every recipient
with that reply (a null MX or NXDOMAIN is permanent and gets a DSN).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from mailstandby.config import QueueSettings
from mailstandby.core.events import Event
from mailstandby.core.model import BodyType
from mailstandby.core.reply import Rejected, Reply
from mailstandby.directory.base import User
from mailstandby.queue.dsn import DELAYED, DELIVERED, FAILED, RELAYED, Failure, wanted
from mailstandby.queue.inbox import Inbox
from mailstandby.queue.inflight import InDoubt, unanswered
from mailstandby.queue.notices import Notices
from mailstandby.routing import Decision, Route, Router
from mailstandby.smtp.relay import DsnRequest, PrimaryConnection
from mailstandby.store.base import (
    CorruptMessage,
    MailStore,
    Outcome,
    QueuedMessage,
    QueuedRecipient,
    RcptState,
    StoreError,
)

log = logging.getLogger(__name__)

IDLE_CLOSE = 10.0  # seconds an unused connection to the primary stays open

Destination = tuple[Route, str]  # (route, destination domain for Route.DIRECT, else "")


class Journal(Protocol):
    """Files journal copies in standby mailboxes, atomically with the delivery outcomes."""

    def journal_copies(self, users: list[str], body: bytes, internal_date: float) -> Callable[[Any], Any]:
        """A function for the store to run in the transaction that records the outcomes."""
        ...

    def standby_copies(self, users: list[str], body: bytes, internal_date: float) -> Callable[[Any], Any]:
        """The same for mail delivered to the standby (an outage): the delivery itself."""
        ...

    def published(self, result: Any) -> None:
        """Called with that function's result once it is committed (to wake IDLE sessions)."""
        ...


Evidence = Callable[[bool, str], None]  # (the primary did its job, what happened) for the monitor


class Forwarding(Protocol):
    """Outage forwarding to users' alternate addresses and modes (idempotent per message and user)."""

    async def forward(self, user: User, raw: bytes, envelope_sender: str, *, message_id: str) -> Any: ...


def backoff(settings: QueueSettings, attempts: int) -> float:
    """Delay before the next attempt after `attempts` failed ones (exponential, capped)."""
    exponent = min(max(0, attempts - 1), 62)  # a week-long outage must not overflow a float
    return min(settings.retry_max, settings.retry_initial * 2**exponent)


class QueueRunner:
    def __init__(
        self,
        store: MailStore,
        router: Router,
        connect: Callable[[], PrimaryConnection],
        settings: QueueSettings,
        *,
        hostname: str,
        clock: Callable[[], float] = time.time,
        journal: Journal | None = None,
        standby: Journal | None = None,
        connect_outbound: Callable[[], PrimaryConnection] | None = None,
        evidence: Evidence | None = None,
        forwarding: Forwarding | None = None,
        connect_direct: Callable[[str], PrimaryConnection] | None = None,
        in_doubt: InDoubt | None = None,
        inbox: Inbox | None = None,
    ) -> None:
        self.inbox = inbox if inbox is not None else Inbox()  # where accepted mail is handed in
        self.in_doubt = in_doubt  # marks relays to the primary in flight and looks up unknown outcomes
        self.connect_outbound = connect_outbound  # the smarthost for other domains, if any
        self.connect_direct = connect_direct  # a domain's MX hosts (Route.DIRECT), if enabled
        self.store = store
        self.router = router
        self.journal = journal  # files journal copies (warm standby), if enabled
        self.standby = standby  # the standby mailboxes, for mail routed there during an outage
        self.evidence = evidence
        self.forwarding = forwarding
        self.connect = connect
        self.settings = settings
        self.hostname = hostname
        self.clock = clock
        self.messages: dict[str, QueuedMessage] = {}
        self.ready: asyncio.Queue[str | None] = asyncio.Queue()  # None: the stop marker
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.workers: list[asyncio.Task[None]] = []
        self.in_flight: set[str] = set()
        self.reroute_pending: set[str] = set()  # in flight when routing changed: due again when done
        self.stopping = False
        # Per destination: after a failed connect, new mail waits for the next retry
        # instead of hammering a dead host (Postfix "dead destination").
        self.dead_failures: dict[Destination, int] = {}
        self.dead_until: dict[Destination, float] = {}
        # Outcomes the store could not take yet (e.g. disk full), retried until it can.
        self.unrecorded: list[Outcome] = []
        self.record_retry: asyncio.TimerHandle | None = None
        self.background: set[asyncio.Task[None]] = set()
        self.claimer: asyncio.Task[None] | None = None
        self.notices = Notices(store, settings, hostname=hostname, clock=clock, submit=self.submit)

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        for message in await self.store.pending():
            self.submit(message)
        self.inbox.take(self._handed_in)
        self.workers = [
            asyncio.create_task(self._worker(n), name=f"queue-worker-{n}") for n in range(self.settings.concurrency)
        ]
        self.claimer = asyncio.create_task(self._claim_loop(), name="queue-claims")
        log.info("queue runner started: %d messages pending", len(self.messages))

    async def stop(self, grace: float) -> None:
        """Take no new work; let deliveries in flight finish up to `grace` seconds."""
        self.stopping = True
        self.inbox.release()
        if self.claimer is not None:
            self.claimer.cancel()
            await asyncio.gather(self.claimer, return_exceptions=True)
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        deadline = time.monotonic() + grace
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in self.workers:
            task.cancel()
        # A cancellation can be absorbed (Python 3.11's wait_for drops it when the queue hands over an
        # item at the same moment; a library may swallow it while closing a connection): a worker that
        # lost it is back at `ready.get()`, so each one is also woken with a stop marker.
        for _ in self.workers:
            self.ready.put_nowait(None)
        await asyncio.gather(*self.workers, return_exceptions=True)
        if self.record_retry is not None:
            self.record_retry.cancel()
        if self.unrecorded:
            await self._record([])  # last chance; what is still unrecorded is retried after restart

    def _handed_in(self, message: QueuedMessage) -> None:
        """From the inbox: new mail (what waited there may also have been loaded from the store)."""
        if message.id not in self.messages:
            self.submit(message)

    def submit(self, message: QueuedMessage) -> None:
        """Schedule a message (newly accepted, or loaded at start-up)."""
        self.messages[message.id] = message
        self._schedule(message)

    @property
    def depth(self) -> int:
        return len(self.messages)

    def reroute(self) -> None:
        """Routing changed (failover or failback): every queued recipient is due now, so each
        goes where routing now says, and no destination is still considered dead."""
        now = self.clock()
        self.dead_until.clear()
        self.dead_failures.clear()
        for mid, message in self.messages.items():
            for r in message.recipients:
                r.next_attempt = min(r.next_attempt, now)
            if mid in self.in_flight:
                self.reroute_pending.add(mid)
            else:
                self._schedule(message)

    async def _claim_loop(self) -> None:
        """Every `claim_interval`: renew this node's claims on the messages it has, and take what other
        nodes left (due retries nobody holds, expired claims)."""
        while not self.stopping:
            await asyncio.sleep(self.settings.claim_interval)
            try:
                if self.messages:
                    await self.store.renew_claims(list(self.messages))
                for message in await self.store.claim_due(limit=self.settings.concurrency * 16):
                    self._merge(message)
            except StoreError as e:  # the leases run on; a claim lost meanwhile is noticed when recording
                log.warning("cannot renew or take queue claims: %s", e)

    def _merge(self, message: QueuedMessage) -> None:
        """A claimed message: new to this runner, or recipients it had dropped (another node's until now)."""
        known = self.messages.get(message.id)
        if known is None:
            self.submit(message)
            return
        have = {r.rcpt for r in known.recipients}
        known.recipients += [r for r in message.recipients if r.rcpt not in have]
        if message.id not in self.in_flight:
            self._schedule(known)

    def _schedule(self, message: QueuedMessage) -> None:
        if self.stopping:
            return
        timer = self.timers.pop(message.id, None)
        if timer is not None:
            timer.cancel()
        if not message.recipients:  # every one settled, or held by another node
            self.messages.pop(message.id, None)
            return
        due = min(r.next_attempt for r in message.recipients)
        delay = due - self.clock()
        if delay <= 0:
            self.ready.put_nowait(message.id)
        else:
            loop = asyncio.get_running_loop()
            self.timers[message.id] = loop.call_later(delay, self._due, message.id)

    def _due(self, message_id: str) -> None:
        self.timers.pop(message_id, None)
        self.ready.put_nowait(message_id)

    # -- workers ---------------------------------------------------------------------
    async def _worker(self, n: int) -> None:
        conns: dict[Destination, PrimaryConnection] = {}  # one open connection per destination, reused
        try:
            while not self.stopping:
                try:
                    mid = await asyncio.wait_for(self.ready.get(), IDLE_CLOSE if conns else None)
                except TimeoutError:
                    await _close_all(conns)
                    continue
                if mid is None or self.stopping:  # the stop marker, or stopping
                    break
                message = self.messages.get(mid)
                if message is None or mid in self.in_flight:
                    continue
                self.in_flight.add(mid)
                try:
                    await self._deliver(message, conns)
                except Exception:
                    log.exception("delivery of %s failed unexpectedly; will retry", mid)
                    self._retry_later(message)
                finally:
                    self.in_flight.discard(mid)
                    if mid in self.reroute_pending:
                        self.reroute_pending.discard(mid)
                        if mid in self.messages:
                            self._reroute_one(self.messages[mid])
        finally:
            await asyncio.shield(_close_all(conns))

    def _reroute_one(self, message: QueuedMessage) -> None:
        now = self.clock()
        for r in message.recipients:
            r.next_attempt = min(r.next_attempt, now)
        self._schedule(message)

    def _retry_later(self, message: QueuedMessage) -> None:
        now = self.clock()
        for r in message.recipients:
            r.next_attempt = max(r.next_attempt, now + self.settings.retry_initial)
        self._schedule(message)

    async def _deliver(self, message: QueuedMessage, conns: dict[Destination, PrimaryConnection]) -> None:
        """One attempt for every due recipient this node holds, one transaction per destination."""
        now = self.clock()
        groups: dict[Destination, list[QueuedRecipient]] = {}
        decisions: dict[str, Decision] = {}  # asked once per attempt: settling logs what was done
        for r in await self._claim([r for r in message.recipients if r.next_attempt <= now], message):
            decisions[r.rcpt] = decision = self.router.route(r.rcpt)
            dest = _destination(decision.route, r.rcpt)
            retry_at = self.dead_until.get(dest, 0.0)
            if dest not in conns and now < retry_at:
                r.next_attempt = retry_at  # that destination is known to be down: wait for its retry
            else:
                groups.setdefault(dest, []).append(r)
        if not groups:
            self._finish(message)
            return
        try:
            body = await self.store.read_body(message.id)
        except CorruptMessage:
            self.messages.pop(message.id, None)
            return
        standby = groups.pop((Route.STANDBY, ""), [])
        if standby:
            await self._file_in_standby(message, standby, decisions, body)
        replies: dict[str, Reply] = {}
        handed_on: set[str] = set()  # accepted by a next hop that took the DSN request over
        for dest, rcpts in groups.items():
            sending = rcpts
            if dest[0] is Route.PRIMARY and self.in_doubt is not None:
                settled, sending = await self.in_doubt.prepare(message, rcpts, body)
                replies |= settled
            if sending:
                replies |= await self._relay(dest, message, [r.rcpt for r in sending], body, conns, handed_on)
        due = [r for rcpts in groups.values() for r in rcpts]
        if not due:
            self._finish(message)
            return
        try:
            await self._settle(message, due, replies, decisions, body, handed_on)
        except Exception:
            log.exception("settling %s failed; keeping what the peers accepted, retrying the rest", message.id)
            await self._settle_minimally(message, due, replies)

    async def _claim(self, due: list[QueuedRecipient], message: QueuedMessage) -> list[QueuedRecipient]:
        """The due recipients this node holds the claim on, brought up to date with the store (another
        node may have tried them, or died with one in flight); the others leave this runner."""
        if not due:
            return []
        try:
            held = {r.rcpt: r for r in await self.store.claim(message.id, [r.rcpt for r in due])}
        except StoreError as e:
            log.warning("%s: id=%s: cannot claim (%s); retrying later", Event.QUEUE_DEFERRED, message.id, e)
            retry_at = self.clock() + self.settings.retry_initial
            for r in due:
                r.next_attempt = max(r.next_attempt, retry_at)
            return []
        lost = {r.rcpt for r in due} - held.keys()
        message.recipients = [r for r in message.recipients if r.rcpt not in lost]
        for r in due:
            if (stored := held.get(r.rcpt)) is not None:
                if stored.attempts > r.attempts:
                    r.attempts, r.last_reply = stored.attempts, stored.last_reply
                r.sent_at = max(r.sent_at, stored.sent_at)  # a mark left by a dead node: in doubt
        return [r for r in due if r.rcpt in held]

    async def _file_in_standby(
        self, message: QueuedMessage, rcpts: list[QueuedRecipient], decisions: dict[str, Decision], body: bytes
    ) -> None:
        """Deliver into standby mailboxes: the copies and the outcomes commit together or not at all."""
        now = self.clock()
        owners = {u.address: u for r in rcpts if (u := self.router.user(r.rcpt)) is not None}
        users = list(owners)
        reply = "250 2.0.0 filed in the standby mailbox"
        outcomes = [
            Outcome(message.id, r.rcpt, RcptState.DELIVERED, r.attempts + 1, 0.0, reply, Route.STANDBY.value)
            for r in rcpts
        ]
        try:
            if self.standby is None:
                raise StoreError("no standby mailboxes configured")
            for user in owners.values():  # queued first, idempotently: a retry after a crash adds nothing
                if self.forwarding is not None:
                    await self.forwarding.forward(user, body, message.sender, message_id=message.id)
            filed = self.standby.standby_copies(users, body, message.received_at)
            result = await self.store.record(outcomes, also=filed, atomic=True)
        except Exception as e:
            for r in rcpts:
                r.attempts += 1
                r.next_attempt = now + backoff(self.settings, r.attempts)
                log.warning(
                    "%s: id=%s to=<%s> route=standby attempts=%d: cannot file: %s",
                    Event.QUEUE_DEFERRED,
                    message.id,
                    r.rcpt,
                    r.attempts,
                    e,
                )
            return
        self.standby.published(result)
        reply_250 = Reply(250, "2.0.0", "filed in the standby mailbox")
        delivered = [
            Failure(r.rcpt, reply_250, action=DELIVERED, orcpt=r.orcpt) for r in rcpts if wanted(r.notify, DELIVERED)
        ]
        if delivered:
            await self.notices.send(message, delivered, body)
        for r in rcpts:
            log.info(
                "%s: id=%s to=<%s> route=standby reason=%s attempts=%d",
                Event.QUEUE_DELIVERED,
                message.id,
                r.rcpt,
                decisions[r.rcpt].reason,
                r.attempts + 1,
            )
        done = {r.rcpt for r in rcpts}
        message.recipients = [r for r in message.recipients if r.rcpt not in done]

    def _finish(self, message: QueuedMessage) -> None:
        if message.recipients:
            self._schedule(message)
        else:
            self.messages.pop(message.id, None)

    def _connection(self, dest: Destination) -> PrimaryConnection:
        route, domain = dest
        if route is Route.DIRECT and self.connect_direct is not None:
            return self.connect_direct(domain)
        if route is Route.PRIMARY or self.connect_outbound is None:
            return self.connect()
        return self.connect_outbound()

    async def _relay(
        self,
        dest: Destination,
        message: QueuedMessage,
        rcpts: list[str],
        body: bytes,
        conns: dict[Destination, PrimaryConnection],
        handed_on: set[str],
    ) -> dict[str, Reply]:
        """One transaction with `dest`; the recipients it accepted with the DSN request passed on
        (RFC 3461 §5.2.1: the next hop reports from now on) are added to `handed_on`."""
        route = dest[0]
        conn = conns.pop(dest, None)
        if conn is None or not conn.usable:
            conn = self._connection(dest)
            try:
                await conn.open()
            except Exception as e:  # refused, timeout, bad banner, TLS: all temporary; Rejected says itself
                await conn.close()
                if isinstance(e, Rejected):  # e.g. direct MX: the domain's DNS answered (perhaps permanently)
                    log.info("cannot open %s for %s: %s %s", route.value, message.id, e.reply, e.detail)
                    if e.reply.permanent:
                        return dict.fromkeys(rcpts, e.reply)
                self.dead_failures[dest] = failures = self.dead_failures.get(dest, 0) + 1
                self.dead_until[dest] = self.clock() + backoff(self.settings, failures)
                if isinstance(e, Rejected):
                    return dict.fromkeys(rcpts, e.reply)
                why = f"{type(e).__name__}: {e}"
                if route is Route.PRIMARY and self.evidence is not None:
                    self.evidence(False, f"queue could not connect: {why}"[:200])
                return dict.fromkeys(rcpts, Reply(451, "4.4.1", f"cannot reach the {route.value}: {why}"[:300]))
            self.dead_failures.pop(dest, None)
            self.dead_until.pop(dest, None)
        try:
            replies = await conn.send(
                message.sender,
                rcpts,
                body,
                smtputf8=message.smtputf8,
                eight_bit=message.body_type == BodyType.EIGHT_BIT.value,
                dsn=_dsn_request(message),
            )
        except BaseException:  # cancelled (stopping) or a bug: the connection is in no state to reuse
            conn.abort()
            raise
        if conn.passed_dsn:
            handed_on.update(rcpt for rcpt, reply in replies.items() if reply.code < 400)
        if conn.usable:
            conns[dest] = conn
        if route is Route.PRIMARY and self.evidence is not None:
            self._report(replies)
        return replies

    def _report(self, replies: dict[str, Reply]) -> None:
        """Delivery results as health evidence: any acceptance is a working primary; system-level
        trouble (421, 4.3.x, 4.4.x) counts against the primary, and a mailbox the primary calls
        unavailable (X.2.x) is reported with its address (the monitor confirms by its own probes)."""
        assert self.evidence is not None
        if replies and all(r.code == 421 or r.status[:4] in ("4.3.", "4.4.") for r in replies.values()):
            reply = next(iter(replies.values()))
            self.evidence(False, f"queue deferred: {reply}"[:200])
            return
        for rcpt, reply in replies.items():
            if reply.code >= 400 and reply.status[1:3] == ".2":
                self.evidence(False, f"mailbox unavailable for <{rcpt}>: {reply}"[:200])
        if any(r.code < 400 for r in replies.values()):
            self.evidence(True, "queue delivered")

    async def _settle(
        self,
        message: QueuedMessage,
        due: list[QueuedRecipient],
        replies: dict[str, Reply],
        decisions: dict[str, Decision],
        body: bytes,
        handed_on: set[str],
    ) -> None:
        now = self.clock()
        expired = now - message.received_at > self.settings.max_lifetime
        outcomes: list[Outcome] = []
        failures: list[Failure] = []
        successes: list[Failure] = []
        delays: list[Failure] = []
        for r in due:
            reply = replies[r.rcpt]
            attempts = r.attempts + 1
            decision = decisions[r.rcpt]
            if reply.code < 400:
                state, event = RcptState.DELIVERED, Event.QUEUE_DELIVERED
                if wanted(r.notify, RELAYED) and r.rcpt not in handed_on:  # a next hop without DSN
                    successes.append(Failure(r.rcpt, reply, action=RELAYED, orcpt=r.orcpt))
            elif reply.code >= 500 or expired:
                state, event = RcptState.FAILED, (Event.QUEUE_FAILED if reply.code >= 500 else Event.QUEUE_EXPIRED)
                if wanted(r.notify, FAILED):  # RFC 3461 §4.1: NOTIFY=NEVER or without FAILURE: no bounce
                    failures.append(Failure(r.rcpt, reply, expired=reply.code < 500, orcpt=r.orcpt))
                else:
                    log.info("%s: id=%s to=<%s> (NOTIFY=%s)", Event.QUEUE_DSN_SUPPRESSED, message.id, r.rcpt, r.notify)
            else:
                state, event = RcptState.QUEUED, Event.QUEUE_DEFERRED
                r.next_attempt = now + backoff(self.settings, attempts)
                if self.notices.delay_due(message, r, now):
                    until = message.received_at + self.settings.max_lifetime
                    delays.append(Failure(r.rcpt, reply, action=DELAYED, orcpt=r.orcpt, retry_until=until))
            r.attempts, r.last_reply = attempts, str(reply)
            doubt = unanswered(reply)  # the primary may have it: the in-flight mark stays for a look-up
            if not doubt:
                r.sent_at = 0.0
            log.info(
                "%s: id=%s to=<%s> route=%s reason=%s attempts=%d reply=%s",
                event,
                message.id,
                r.rcpt,
                decision.route,
                decision.reason,
                attempts,
                reply,
            )
            outcomes.append(
                Outcome(message.id, r.rcpt, state, attempts, r.next_attempt, str(reply), decision.route.value, doubt)
            )
        if failures and not await self.notices.send(message, failures, body):
            # No DSN could be queued: keep the failed recipients queued so the sender
            # is not left uninformed; everything else is recorded as it happened.
            retry_at = now + backoff(self.settings, 1)
            outcomes = [
                o if o.state is not RcptState.FAILED else replace(o, state=RcptState.QUEUED, next_attempt=retry_at)
                for o in outcomes
            ]
            for r in due:
                if any(f.rcpt == r.rcpt for f in failures):
                    r.next_attempt = retry_at
        if delays:
            await self.notices.report_delay(message, delays, body)
        await self._record(outcomes, also=self._journal_copies(message, outcomes, body))
        if successes:  # after the record: a success report is at most once, never a reason to resend
            await self.notices.send(message, successes, body)
        finished = {o.rcpt for o in outcomes if o.state is not RcptState.QUEUED}
        message.recipients = [r for r in message.recipients if r.rcpt not in finished]
        self._finish(message)

    async def _settle_minimally(
        self, message: QueuedMessage, due: list[QueuedRecipient], replies: dict[str, Reply]
    ) -> None:
        """After an unexpected error while settling: a recipient a peer accepted is never sent
        again (its outcome is recorded, or held for retry); every other one waits a backoff and
        counts an attempt, so the message still expires in time."""
        now = self.clock()
        outcomes = []
        for r in due:
            reply = replies.get(r.rcpt)
            r.attempts += 1
            if reply is not None and reply.code < 400:
                outcomes.append(Outcome(message.id, r.rcpt, RcptState.DELIVERED, r.attempts, 0.0, str(reply)))
            else:
                r.next_attempt = now + backoff(self.settings, r.attempts)
        delivered = {o.rcpt for o in outcomes}
        message.recipients = [r for r in message.recipients if r.rcpt not in delivered]
        await self._record(outcomes)
        self._finish(message)

    def _journal_copies(
        self, message: QueuedMessage, outcomes: list[Outcome], body: bytes
    ) -> Callable[[Any], Any] | None:
        """Warm standby: our users whose copy the primary just took get one in their standby INBOX,
        committed with the outcome itself (so exactly once, crash or not)."""
        if self.journal is None:
            return None
        users: list[str] = []
        for o in outcomes:
            if o.state is RcptState.DELIVERED and o.route == Route.PRIMARY.value:
                user = self.router.user_of(o.rcpt)
                if user is not None and user not in users:
                    users.append(user)
        return self.journal.journal_copies(users, body, message.received_at) if users else None

    async def _record(self, outcomes: list[Outcome], *, also: Callable[[Any], Any] | None = None) -> None:
        """Record outcomes; when the store cannot (disk full), keep them and retry later.

        The in-memory schedule goes on as if they were recorded: a recipient the
        primary accepted must not be sent again because bookkeeping failed. Only a
        crash before the retry succeeds can repeat such a delivery.
        """
        try:
            result = await self.store.record(self.unrecorded + outcomes, also=also)
            self.unrecorded.clear()
            if also is not None and self.journal is not None:
                self.journal.published(result)
        except StoreError as e:
            if not self.unrecorded:
                log.error("cannot record delivery outcomes (%s); holding them in memory and retrying", e)
            self.unrecorded = self.unrecorded + outcomes
            if self.record_retry is None and not self.stopping:
                loop = asyncio.get_running_loop()
                self.record_retry = loop.call_later(self.settings.retry_initial, self._retry_record)

    def _retry_record(self) -> None:
        self.record_retry = None
        if self.unrecorded:
            task = asyncio.get_running_loop().create_task(self._record([]))
            self.background.add(task)
            task.add_done_callback(self.background.discard)


def _dsn_request(message: QueuedMessage) -> DsnRequest:
    """What the sender asked (RFC 3461), for the next hop: only what was given is passed on."""
    return DsnRequest(
        message.ret,
        message.envid,
        {r.rcpt: r.notify for r in message.recipients if r.notify},
        {r.rcpt: r.orcpt for r in message.recipients if r.orcpt},
    )


def _destination(route: Route, rcpt: str) -> Destination:
    """Direct MX delivery needs one transaction per recipient domain; other routes one in all."""
    if route is Route.DIRECT:
        return route, rcpt.rpartition("@")[2].lower()
    return route, ""


async def _close_all(conns: dict[Destination, PrimaryConnection]) -> None:
    for conn in list(conns.values()):
        with contextlib.suppress(Exception):
            await conn.close()
    conns.clear()
