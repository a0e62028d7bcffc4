"""The notifier: tells users, on their alternate addresses and modes, where their mail is.

Contract (the failover controller calls `announce`):
- per (user, kind, occurrence, mode, destination) there is exactly one row in
  `notifications`; `announce` inserts the missing rows (and the user's setup
  link) in one durable transaction and returns; repeating it, or calling it
  again after a crash, adds nothing that exists already.
- only the leader of a cluster (core.leadership) delivers: a background task,
  run while this node leads, delivers pending rows, retrying with exponential backoff
  up to `max_attempts`, and records each attempt (state, attempts, last error)
  with the leader's term: a node whose term is over records and queues nothing.
- email goes into the durable queue under a queue id derived from the row id
  (`notify-<id>`): before queueing, the store is asked whether that id exists,
  so a crash between queueing and recording "sent" never queues a second copy.
- an Apprise delivery is recorded after the provider answered: a crash in
  that instant can repeat it (a provider offers no way to ask), nothing else can.

Delivery reads the user's current profile from the directory: a destination
removed meanwhile is marked failed, never sent. URLs are not stored (they may
hold credentials): the row keeps a digest of the URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import apprise

from mailstandby.config import NotifySettings
from mailstandby.core.events import Event
from mailstandby.core.leadership import Leadership, NotLeading, while_leading
from mailstandby.core.model import Address, Envelope
from mailstandby.directory.base import Directory, NoticeKind, User
from mailstandby.notify import compose, readiness, tokens
from mailstandby.notify.compose import Destination, Mode
from mailstandby.notify.records import NewRow, NotifyStore, Row, State
from mailstandby.notify.templates import Templates
from mailstandby.store.base import NewMessage, QueuedMessage, StoreError

log = logging.getLogger(__name__)

POLL = 5.0  # seconds between looks for rows added by another process (`mailstandby notify test`)
CODE_KIND = "code"
FORWARD_KIND = "forward"
APPRISE_TIMEOUT = 60.0


def queue_id(row_id: int) -> str:
    return f"notify-{row_id}"


def plan_announcement(kind: NoticeKind, users: Sequence[User], occurrence: str) -> list[NewRow]:
    """The rows `announce` records: one per enabled user who wants `kind` and per destination (pure)."""
    rows = []
    for user in users:
        if not user.enabled or kind not in user.preferences.notify:
            continue
        for d in compose.destinations(user):
            rows.append((user.address, kind.value, occurrence, d.mode, d.key, ""))
    return rows


class Notifier:
    def __init__(
        self,
        store: NotifyStore,
        directory: Directory,
        settings: NotifySettings,
        *,
        hostname: str,
        submit: Callable[[QueuedMessage], None],
        key: bytes,
        leadership: Leadership,
        domains: Sequence[str] = (),
        templates: Templates | None = None,
        clock: Callable[[], float] = time.time,
        concurrency: int = 4,
    ) -> None:
        self.store = store
        self.directory = directory
        self.settings = settings
        self.hostname = hostname
        self.submit = submit
        self.key = key
        self.leadership = leadership
        self.templates = templates or Templates(settings.templates)
        self.clock = clock
        self.sender = settings.sender or f"mailstandby@{domains[0] if domains else hostname}"
        self.bounce_address = settings.bounce_address or self.sender
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[int] = set()
        self._limit = asyncio.Semaphore(concurrency)
        self._workers: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        for problem in self.templates.check(compose.sample_context(self.settings, self.hostname)):
            log.error("notification template broken (the shipped one is used instead): %s", problem)
        self._task = asyncio.create_task(while_leading(self.leadership, self._run), name="notifier")

    async def stop(self) -> None:
        """Stop delivering; rows in flight stay pending and are sent by the next start."""
        tasks = [t for t in (self._task, *self._workers) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None

    def wake(self) -> None:
        self._wake.set()

    # -- the controller's interface ----------------------------------------------------------
    async def announce(self, kind: NoticeKind, users: Sequence[User], occurrence: str) -> int:
        """Record one notification per user and destination (idempotent); returns how many are new."""
        rows = plan_announcement(kind, users, occurrence)
        now = self.clock()
        links: list[tuple[str, str]] = []  # (token hash, user): the personal setup link of each user
        if self.settings.setup_url and kind in (NoticeKind.FAILOVER, NoticeKind.SETUP):
            links = [(tokens.token_hash(tokens.link_token(self.key, u, occurrence)), u) for u in {r[0] for r in rows}]
        expires = now + self.settings.link_lifetime
        added = await self.store.add_notices(rows, now, links=links, link_expires=expires)
        log.info("%s: %s %s: %d users, %d new", Event.NOTIFY_ANNOUNCED, kind.value, occurrence, len(users), added)
        self.wake()
        return added

    async def announce_scope(self, kind: NoticeKind, scope: frozenset[str] | None, occurrence: str) -> None:
        """`announce` for the failover coordinator's hook: `scope` is a set of addresses, or None for everyone."""
        if scope is None:
            users = list(self.directory.users())
        else:
            found: dict[str, User] = {}
            for address in sorted(scope):
                try:
                    user = self.directory.lookup(Address.parse(address))
                except ValueError:
                    user = None
                if user is not None:
                    found[user.address] = user
            users = list(found.values())
        await self.announce(kind, users, occurrence)

    async def send_code(self, user: User, nonce: str, *, limit: int = tokens.MAX_LIVE_CODES) -> str | None:
        """Queue a one-time code to every destination of `user`; returns the code's hash for the token row,
        or None (nothing queued) when the user has `limit` live codes already."""
        code = tokens.code_for(self.key, user.address, nonce)
        rows = [(user.address, CODE_KIND, nonce, d.mode, d.key, "") for d in compose.destinations(user)]
        now = self.clock()
        hashed = tokens.code_hash(self.key, user.address, code)
        expires = now + self.settings.code_lifetime
        # the live codes are counted in the step that adds the new one: parallel requests cannot pass the limit
        if not await self.store.add_code(hashed, user.address, rows, now, expires, limit=limit):
            return None
        self.wake()
        return hashed

    async def status(
        self, *, user: str | None = None, kind: str | None = None, occurrence: str | None = None
    ) -> list[dict[str, Any]]:
        """Every notification matching the filters, as plain data (for the admin API)."""
        return self.store.status(user=user, kind=kind, occurrence=occurrence)

    async def readiness(self) -> dict[str, Any]:
        """Who cannot be reached or cannot use the standby, as plain data (see `readiness.report`)."""
        return readiness.report(self.directory.users(), self.store.passwords())

    # -- delivery -----------------------------------------------------------------------------
    async def _run(self, term: int) -> None:
        """Deliver while this node leads in `term` (cancelled with the term, its deliveries with it)."""
        workers: set[asyncio.Task[None]] = set()
        try:
            await self._deliver_due(term, workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _deliver_due(self, term: int, workers: set[asyncio.Task[None]]) -> None:
        while True:
            self._wake.clear()
            try:
                due, next_at = self._due()
            except StoreError:
                log.exception("notify: cannot read pending notifications")
                due, next_at = [], self.clock() + POLL
            for row in due:
                await self._limit.acquire()
                self._in_flight.add(row.id)
                task = asyncio.create_task(self._deliver_one(row, term), name=f"notify-{row.id}")
                for group in (self._workers, workers):
                    group.add(task)
                    task.add_done_callback(group.discard)
            wait = POLL if next_at is None else max(0.0, min(POLL, next_at - self.clock()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    def _due(self) -> tuple[list[Row], float | None]:
        rows, nxt = self.store.due(self.clock())
        return [r for r in rows if r.id not in self._in_flight], nxt

    async def _deliver_one(self, row: Row, term: int) -> None:
        try:
            await self._deliver(row, term)
        except asyncio.CancelledError:
            raise
        except NotLeading as e:  # the term is over: the next leader delivers the row
            log.warning("notify: notification %d left to the leader: %s", row.id, e)
            self.leadership.step_down(term)
        except Exception as e:  # never lose the row: count the attempt and retry later
            log.exception("notify: delivering notification %d failed", row.id)
            try:
                await self._record(row, term, ok=False, error=f"internal error: {type(e).__name__}")
            except Exception:  # the store itself fails: the row stays pending and is tried again
                log.exception("notify: cannot record the failure of notification %d", row.id)
        finally:
            self._in_flight.discard(row.id)
            self._limit.release()
            self.wake()

    async def _deliver(self, row: Row, term: int) -> None:
        try:
            user = self.directory.lookup(Address.parse(row.user))
        except ValueError:
            user = None
        if user is None:
            await self._record(row, term, ok=False, error="user no longer in the directory", final=True)
            return
        dest = next((d for d in compose.destinations(user) if d.mode is row.mode and d.key == row.destination), None)
        if dest is None:
            await self._record(row, term, ok=False, error="destination no longer in the user's profile", final=True)
            return
        if dest.mode is not Mode.EMAIL and row.kind != CODE_KIND:
            quiet_end = compose.in_quiet_hours(user.preferences.quiet_hours, self.clock())
            if quiet_end is not None:
                await self._postpone(row, quiet_end)
                return
        if dest.mode is Mode.APPRISE:
            if self.leadership.term != term:
                raise NotLeading(f"{self.leadership.node} no longer leads in term {term}")
            title, body = self._short(row, user)
            error = await _apprise(dest.target, title, body)
            await self._record(row, term, ok=error is None, error=error or "")
        else:
            await self._queue_email(row, user, dest, term)

    def _short(self, row: Row, user: User) -> tuple[str, str]:
        """(title, text) of the SMS/push form of `row`."""
        limit = user.preferences.summary_length
        if row.kind == FORWARD_KIND:
            ctx = self._context(row, user, extra={"message": json.loads(row.payload)})
            return "Mail", self.templates.render_one("forward.short", ctx)[: max(limit, 20)]
        if row.kind == CODE_KIND:
            ctx = self._context(row, user, extra={"code": tokens.code_for(self.key, user.address, row.occurrence)})
            return "Code", " ".join(self.templates.render_one("code.short", ctx).split())
        rendered = self.templates.render(NoticeKind(row.kind), self._context(row, user))
        return rendered.subject, rendered.short

    def _context(self, row: Row, user: User, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        setup_url, expires = "", None
        if self.settings.setup_url and row.kind in (NoticeKind.FAILOVER.value, NoticeKind.SETUP.value):
            token = tokens.link_token(self.key, user.address, row.occurrence)
            found = self.store.find_token(tokens.token_hash(token))
            if found is not None:
                setup_url, expires = f"{self.settings.setup_url}/setup/{token}", found.expires_at
        has_password = self.store.has_password(user.address)
        return compose.notice_context(
            user,
            row.kind,
            row.occurrence,
            self.settings,
            self.hostname,
            setup_url=setup_url,
            setup_expires=expires,
            has_password=has_password,
            extra=extra,
        )

    async def _queue_email(self, row: Row, user: User, dest: Destination, term: int) -> None:
        qid = queue_id(row.id)
        if self.leadership.term != term:  # checked again right before the effect (a pause may have ended it)
            raise NotLeading(f"{self.leadership.node} no longer leads in term {term}")
        if not self.store.queued(qid):
            body = self._email(row, user, dest, qid)
            envelope = Envelope(self.bounce_address, [dest.target])
            queued = await self.store.accept(NewMessage(qid, envelope, body, self.clock()))
            self.submit(queued)
        await self._record(row, term, ok=True, message_id=qid)

    def _email(self, row: Row, user: User, dest: Destination, qid: str) -> bytes:
        msgid = f"<{qid}.{row.kind}@{self.hostname}>"
        common = {"sender": self.sender, "organization": self.settings.organization, "to": dest.target}
        if dest.mode is Mode.EMAIL and row.kind not in (FORWARD_KIND, CODE_KIND):
            r = self.templates.render(NoticeKind(row.kind), self._context(row, user))
            return compose.notice_email(
                **common, subject=r.subject, text=r.text, html=r.html, msgid=msgid, kind=row.kind
            )
        title, text = self._short(row, user)
        if row.kind == FORWARD_KIND:
            title = "Mail for " + user.address
        return compose.short_email(**common, subject=title, text=text, msgid=msgid, kind=row.kind)

    async def _postpone(self, row: Row, until: float) -> None:
        await self.store.postpone(row.id, until, "quiet hours", self.clock())

    async def _record(
        self, row: Row, term: int, *, ok: bool, error: str = "", message_id: str = "", final: bool = False
    ) -> None:
        attempts = row.attempts + 1
        if ok:
            state, next_attempt = State.SENT, 0.0
        elif final or attempts >= self.settings.max_attempts:
            state, next_attempt = State.FAILED, 0.0
        else:
            delay = min(self.settings.retry_max, self.settings.retry_initial * 2 ** min(attempts - 1, 30))
            state, next_attempt = State.PENDING, self.clock() + delay
        event = {State.SENT: Event.NOTIFY_SENT, State.FAILED: Event.NOTIFY_FAILED}.get(state, Event.NOTIFY_RETRY)
        log.log(
            logging.INFO if ok else logging.WARNING,
            "%s: id=%d user=%s kind=%s mode=%s attempts=%d %s",
            event,
            row.id,
            row.user,
            row.kind,
            row.mode.value,
            attempts,
            error,
        )
        await self.store.record_attempt(
            row.id,
            term=term,
            state=state,
            attempts=attempts,
            next_attempt=next_attempt,
            error=error,
            message_id=message_id,
            now=self.clock(),
        )


_plugins_loaded: list[bool] = []


def _new_apprise(url: str) -> apprise.Apprise | None:
    """An Apprise object for `url`, or None when the URL is unusable.

    Apprise loads its plugins on first use; some of them import deprecated
    standard modules, which is theirs to fix, not a warning for our users."""
    ap = apprise.Apprise()
    if not _plugins_loaded:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ok = ap.add(url)
        _plugins_loaded.append(True)
    else:
        ok = ap.add(url)
    return ap if ok else None


async def _apprise(url: str, title: str, body: str) -> str | None:
    """Send through Apprise; None when the service accepted it, else what went wrong."""
    ap = _new_apprise(url)
    if ap is None:
        return "not a usable Apprise URL"
    with apprise.LogCapture(level=logging.WARNING) as captured:
        try:
            async with asyncio.timeout(APPRISE_TIMEOUT):
                ok = await ap.async_notify(body=body, title=title)
        except TimeoutError:
            return "timed out"
        lines = captured.getvalue().strip().splitlines()
    if ok:
        return None
    return (lines[-1] if lines else "the service did not accept the notification")[:300]
