"""The failback sync engine: standby-only mail and the phones' flags into the primary, exactly once.

    engine = SyncEngine(records, RunLock(data_dir), config.sync, config.primary, hostname=...)
    report = await engine.run()            # all users; or run(["alice@corp.test"], progress=cb)
    status = await engine.status()         # per user: total, done, failed, pending
    await engine.close()

Exactly once over IMAP (the invariant a crash must not break):
1. every message to copy gets a pending record before anything is sent (`plan`);
2. per user and primary folder, the engine first reads the folder's Message-ID
   and `X-Mailstandby-Sync` headers (one UID FETCH); a message whose trace id
   (or Message-ID) is already there is recorded done, never appended again:
   this covers a crash, a kill -9 or a cancellation between the server's OK to
   APPEND and our record;
3. the rest is APPENDed with the trace header, in MULTIAPPEND commands pipelined
   with LITERAL+ where the primary offers them, and recorded done once the
   primary's tagged OK (APPENDUID) is in.
A message refused with NO counts an attempt; after `max_attempts` it is given up
and reported. A lost connection (the primary failed) stops the run with
`PrimaryUnavailable`; nothing is recorded for commands without their OK, and a
later run resumes. The run is cancellable at any await.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from mailstandby.config import PrimarySettings, SyncSettings
from mailstandby.core.events import Event
from mailstandby.core.leadership import Lead, NotLeading
from mailstandby.smtp.lmtp import LMTPConnection
from mailstandby.smtp.relay import PrimaryConnection, RelayConnection
from mailstandby.sync.access import AccessError, master_login, read_password, tls_context
from mailstandby.sync.imapclient import Appendable, CommandFailed, ConnectionLost, IMAPClient
from mailstandby.sync.plan import (
    SYNC_FLAGS,
    TRACE_HEADER,
    Action,
    Decision,
    Failure,
    Kind,
    Progress,
    Reason,
    StandbyMessage,
    State,
    SyncReport,
    SyncStatus,
    decide,
    header_values,
    map_folder,
    message_id_of,
    trace_id,
    with_trace,
)
from mailstandby.sync.records import RunLock, SyncRecords

log = logging.getLogger(__name__)

_CHUNK = 512  # messages whose bodies are read, checked and sent together

ProgressCallback = Callable[[Progress], None]


class SyncError(Exception):
    """The sync cannot run (configuration, credentials)."""


class PrimaryUnavailable(SyncError):
    """The primary stopped answering during the sync; a later run resumes where this one stopped."""


class SyncBusy(SyncError):
    """Another process is running the failback sync on this store (the server's, or the command line's)."""


class LoginRefused(SyncError):
    """The primary refused the master login for one user (recorded in `SyncReport.errors`)."""


@dataclass(slots=True)
class _Item:
    msg: StandbyMessage
    folder: str
    decision: Decision
    trace: str


@dataclass(slots=True)
class _Done:
    """An item finished in this run: (user, body id, folder, flags now on the primary, reason, uid)."""

    item: _Item
    flags: frozenset[str]
    reason: Reason
    uid: int | None = None


class SyncEngine:
    def __init__(
        self,
        records: SyncRecords,
        run_lock: RunLock,
        settings: SyncSettings,
        primary: PrimarySettings,
        *,
        hostname: str = "localhost",
        password: str | None = None,
        busy_retry: float = 5.0,
    ) -> None:
        """`records`: the store's sync records (the engine opens them on first use and closes them);
        `password` overrides `settings.password_file` (tests); the file is read at each run.
        `busy_retry`: seconds `failback` waits before trying again while another process syncs."""
        self.records = records
        self.run_lock = run_lock
        self.settings = settings
        self.primary = primary
        self.hostname = hostname
        self._password = password
        self.busy_retry = busy_retry
        self._opened = False
        # During a failback: called with each user whose outage mail is all in the primary (the
        # "mail is back" notice); None in a run from the command line.
        self._user_done: Callable[[str], Awaitable[None]] | None = None
        self._progress: ProgressCallback | None = None
        self._done = self._total = self._failed = 0
        self._tls: ssl.SSLContext | None = None
        self._lead: Lead | None = None  # the leadership term a failback runs in (checked before each effect)

    async def close(self) -> None:
        if self._opened:
            self._opened = False
            await self.records.close()

    async def _open(self) -> None:
        if not self._opened:
            await self.records.open()
            self._opened = True

    async def status(self) -> SyncStatus:
        await self._open()
        return await self.records.status()

    async def failback(
        self, users: frozenset[str] | None, lead: Lead, user_done: Callable[[str], Awaitable[None]]
    ) -> int:
        """The failover coordinator's `SyncRunner`: run until another run could not do more (refused
        messages are retried until `max_attempts`); returns how many messages are left unsynchronized
        (given up, or of users whose login was refused), for the administrator. Raises
        PrimaryUnavailable (the coordinator tries again later) and SyncError; cancellable.
        Each run starts with a record fenced by the leader's term `lead`, and the term is checked
        again before every command that changes the primary: NotLeading once it is over.
        `user_done(user)` is awaited as soon as a user's outage mail is all in the primary."""
        names = sorted(users) if users is not None else None
        await self._open()
        while True:
            try:
                detail = "everyone" if names is None else f"{len(names)} users"
                await self.records.run_started(lead.term, lead.node, detail)
                self._lead, self._user_done = lead, user_done
                try:
                    report = await self.run(names)
                finally:
                    self._lead = self._user_done = None
            except SyncBusy as e:  # `mailstandby sync run` is at it: ours follows when it is done
                log.info("%s: %s; trying again in %.0fs", Event.SYNC_RUN, e, self.busy_retry)
                await asyncio.sleep(self.busy_retry)
                continue
            if report.pending == 0 or report.errors or not report.reasons.get(Reason.REFUSED.value):
                break
        status = await self.records.status(names)
        return status.total.failed + status.total.pending

    # -- a run -------------------------------------------------------------------------------------
    async def run(self, users: Sequence[str] | None = None, progress: ProgressCallback | None = None) -> SyncReport:
        """Synchronize `users` (default: every user with a standby mailbox). Raises PrimaryUnavailable
        when the primary fails mid-run, SyncBusy when another process is syncing this store, and
        SyncError when the sync cannot start."""
        holder = self.run_lock.acquire()
        if holder is not None:
            raise SyncBusy(f"another failback sync is running on this store ({holder})")
        try:
            return await self._run(users, progress)
        finally:
            self.run_lock.release()

    async def _run(self, users: Sequence[str] | None, progress: ProgressCallback | None) -> SyncReport:
        started = time.monotonic()
        await self._open()
        report = SyncReport()
        names = list(users) if users is not None else await self.records.users()
        work = await self._plan(names, report)
        planned = [
            (i.msg, i.folder, Kind.FLAGS if i.msg.journaled else Kind.APPEND) for items in work.values() for i in items
        ]
        await self.records.plan(planned)
        report.planned = len(planned)
        self._progress, self._done, self._total, self._failed = progress, 0, len(planned), 0
        try:
            if self.settings.imap_host:
                await self._run_imap(work, report)
            elif self.settings.smtp_fallback:
                await self._run_smtp(work, report)
            else:
                raise SyncError("sync.imap_host is empty and sync.smtp_fallback is off: nowhere to sync to")
        finally:
            report.elapsed = time.monotonic() - started
        report.pending = (await self.records.status(names)).total.pending
        log.info(
            "%s: planned=%d done=%d failed=%d pending=%d in %.1fs reasons=%s",
            Event.SYNC_RUN,
            report.planned,
            self._done,
            len(report.failures),
            report.pending,
            report.elapsed,
            report.reasons,
        )
        return report

    async def _plan(self, names: list[str], report: SyncReport) -> dict[str, list[_Item]]:
        """Decide for every candidate; forget pending records of messages that no longer need syncing
        (expunged or flagged \\Deleted on the standby since they were planned), so that a run can complete."""
        instance = await self.records.instance()
        records = await self.records.records(names)
        work: dict[str, list[_Item]] = {}
        wanted: set[tuple[str, int, str]] = set()
        for msg in await self.records.candidates(names):
            folder = map_folder(msg.mailbox, self.settings.folder_map)
            if folder is None:
                report.count(Reason.FOLDER_EXCLUDED)
                continue
            key = (msg.user, msg.body_id, folder)
            decision = decide(msg, records.get(key), restore_deleted=self.settings.restore_deleted)
            if decision.action is Action.NOTHING:
                report.count(decision.reason)
                continue
            wanted.add(key)
            work.setdefault(msg.user, []).append(_Item(msg, folder, decision, trace_id(instance, msg.body_id)))
        stale = [key for key, r in records.items() if r.state is State.PENDING and key not in wanted]
        if stale:
            await self.records.forget(stale)
            report.count(Reason.GONE_FROM_STANDBY, len(stale))
        return work

    async def _run_imap(self, work: dict[str, list[_Item]], report: SyncReport) -> None:
        password = self._read_password()
        self._tls = self._ssl_context()
        slots = asyncio.Semaphore(self.settings.concurrency)

        async def one(user: str, items: list[_Item]) -> None:
            async with slots:
                try:
                    await self._sync_user(user, items, password, report)
                except LoginRefused as e:  # this user only (e.g. unknown to the primary); the others go on
                    log.warning("%s: %s", Event.SYNC_LOGIN_REFUSED, e)
                    report.errors[user] = str(e)
                    return
            await self._tell_if_done(user)

        try:
            async with asyncio.TaskGroup() as tg:
                for user, items in work.items():
                    tg.create_task(one(user, items))
        except BaseExceptionGroup as group:
            for exc_type in (NotLeading, PrimaryUnavailable, SyncError):
                match = group.subgroup(exc_type)
                if match is not None:
                    raise match.exceptions[0] from None
            raise

    async def _tell_if_done(self, user: str) -> None:
        """A user whose outage mail is all in the primary now is told so (`user_done`), at once."""
        user_done = self._user_done
        if user_done is None or (await self.records.status([user])).total.pending:
            return
        try:
            await user_done(user)
        except Exception:  # telling is not syncing: the sync goes on, the final notice still comes
            log.exception("could not announce the end of the sync to %s", user)

    def _read_password(self) -> str:
        if self._password is not None:
            return self._password
        try:
            return read_password(self.settings)
        except AccessError as e:
            raise SyncError(str(e)) from None

    def _ssl_context(self) -> ssl.SSLContext | None:
        try:
            return tls_context(self.settings)
        except AccessError as e:
            raise SyncError(str(e)) from None

    def _where(self) -> str:
        return f"{self.settings.imap_host}:{self.settings.imap_port}"

    async def _login(self, user: str, password: str) -> IMAPClient:
        try:
            return await master_login(self.settings, self._tls, user, password)
        except CommandFailed as e:
            raise LoginRefused(f"the primary {self._where()} refused the master login for {user}: {e.text}") from None

    async def _sync_user(self, user: str, items: list[_Item], password: str, report: SyncReport) -> None:
        try:
            client = await self._login(user, password)
            try:
                folders = await client.list_mailboxes()
                by_folder: dict[str, list[_Item]] = {}
                for item in items:
                    by_folder.setdefault(item.folder, []).append(item)
                for folder, fitems in by_folder.items():
                    try:
                        if folder not in folders and folder.upper() != "INBOX":
                            await client.create(folder)
                        await client.select(folder)
                    except CommandFailed as e:  # e.g. a name the primary does not allow: refused, counted
                        for item in fitems:
                            await self._refused(user, item, e, report)
                        continue
                    await self._sync_folder(client, user, folder, fitems, report)
            finally:
                await client.logout()
        except ConnectionLost as e:
            log.error("%s: user=%s: %s", Event.SYNC_PRIMARY_FAILED, user, e)
            raise PrimaryUnavailable(f"the primary's IMAP server {self._where()} failed during the sync: {e}") from None

    async def _sync_folder(
        self, client: IMAPClient, user: str, folder: str, items: list[_Item], report: SyncReport
    ) -> None:
        by_trace: dict[str, tuple[int, frozenset[str]]] = {}
        by_mid: dict[str, tuple[int, frozenset[str]]] = {}
        for uid, flags, header in await client.fetch_header_fields(["Message-ID", TRACE_HEADER]):
            mid, trace = header_values(header)
            if trace:
                by_trace.setdefault(trace, (uid, flags))
            if mid:
                by_mid.setdefault(mid, (uid, flags))
        for start in range(0, len(items), _CHUNK):  # bodies in memory: one chunk's at a time
            await self._sync_chunk(client, user, folder, items[start : start + _CHUNK], by_trace, by_mid, report)

    async def _sync_chunk(
        self,
        client: IMAPClient,
        user: str,
        folder: str,
        items: list[_Item],
        by_trace: dict[str, tuple[int, frozenset[str]]],
        by_mid: dict[str, tuple[int, frozenset[str]]],
        report: SyncReport,
    ) -> None:
        found: list[tuple[_Item, int, frozenset[str], Reason]] = []
        appends: list[tuple[_Item, bytes]] = []
        gone: list[_Done] = []
        for item in items:
            body = await self.records.body(item.msg.body_id)
            if body is None:  # expunged on the standby since the plan
                gone.append(_Done(item, frozenset(), Reason.DELETED_ON_STANDBY))
                continue
            hit = by_trace.get(item.trace) if not item.msg.journaled else None
            reason = Reason.FOUND_BY_TRACE
            if hit is None and by_mid:  # (an empty folder needs no header parse)
                mid = message_id_of(body)
                hit = by_mid.get(mid) if mid else None
                reason = Reason.FOUND_BY_MESSAGE_ID
            if hit is not None:
                found.append((item, hit[0], hit[1], reason))
            elif item.msg.journaled or item.decision.action is Action.FLAGS:
                # nothing to flag; remembered with the flags wanted so that only a new change retries
                gone.append(_Done(item, item.msg.flags & SYNC_FLAGS, Reason.PRIMARY_COPY_MISSING))
            else:
                appends.append((item, body))
        await self._finish(user, gone, report)
        self._check_lead()
        await self._apply_flags(client, user, found, report)
        await self._append_all(client, user, folder, appends, report)

    def _check_lead(self) -> None:
        """A failback run in a leadership term that is over changes nothing more in the primary."""
        if self._lead is not None:
            self._lead.check()

    async def _apply_flags(
        self, client: IMAPClient, user: str, found: list[tuple[_Item, int, frozenset[str], Reason]], report: SyncReport
    ) -> None:
        """Add the standby's flags that the primary's copies lack (one UID STORE per distinct flag set)."""
        by_flags: dict[frozenset[str], list[int]] = {}
        done: list[_Done] = []
        for item, uid, primary_flags, reason in found:
            wanted = item.msg.flags & SYNC_FLAGS
            missing = wanted - primary_flags
            if missing:
                by_flags.setdefault(missing, []).append(uid)
            journaled_or_update = item.msg.journaled or item.decision.action is Action.FLAGS
            done.append(_Done(item, wanted, Reason.FLAGS_APPLIED if journaled_or_update else reason, uid))
        for flags, uids in by_flags.items():
            await client.uid_store_add(uids, flags)
        await self._finish(user, done, report)

    async def _append_all(
        self, client: IMAPClient, user: str, folder: str, appends: list[tuple[_Item, bytes]], report: SyncReport
    ) -> None:
        multi = self.settings.multiappend and "MULTIAPPEND" in client.capabilities and client.can_pipeline
        size = self.settings.batch_messages if multi else 1
        window = 2 if multi else self.settings.batch_messages
        batches: list[list[tuple[_Item, Appendable]]] = [[]]
        used = 0
        for item, body in appends:
            m = Appendable(folder, with_trace(body, item.trace), item.msg.flags & SYNC_FLAGS, item.msg.internal_date)
            if batches[-1] and (len(batches[-1]) >= size or used + len(m.body) > self.settings.batch_bytes):
                batches.append([])
                used = 0
            batches[-1].append((item, m))
            used += len(m.body)
        batches = [b for b in batches if b]
        if not client.can_pipeline:  # synchronizing literals: one message per round trip
            for batch in batches:
                for item, m in batch:
                    self._check_lead()
                    await self._append_one(client, user, item, m, report)
            return
        inflight: deque[tuple[bytes, list[tuple[_Item, Appendable]]]] = deque()
        refused: list[list[tuple[_Item, Appendable]]] = []
        accepted: list[_Done] = []  # recorded a batch's worth at a time: one commit, not one per APPEND
        for batch in batches:
            self._check_lead()
            inflight.append((client.send_append([m for _, m in batch]), batch))
            if len(inflight) >= window:
                accepted += await self._complete(client, user, *inflight.popleft(), refused, report)
                if len(accepted) >= self.settings.batch_messages:
                    await self._finish(user, accepted, report)
                    accepted = []
        while inflight:
            accepted += await self._complete(client, user, *inflight.popleft(), refused, report)
        await self._finish(user, accepted, report)
        for batch in refused:  # find which message the primary refuses: one at a time
            for item, m in batch:
                await self._append_one(client, user, item, m, report)

    async def _complete(
        self,
        client: IMAPClient,
        user: str,
        tag: bytes,
        batch: list[tuple[_Item, Appendable]],
        refused: list[list[tuple[_Item, Appendable]]],
        report: SyncReport,
    ) -> list[_Done]:
        """The next completion: what the primary accepted (for the caller to record), or the refusal."""
        try:
            uids = client.appenduids(await client.finish(tag, "APPEND"), len(batch))
        except CommandFailed as e:
            if len(batch) == 1:
                await self._refused(user, batch[0][0], e, report)
            else:
                refused.append(batch)
            return []
        return [_Done(item, m.flags, Reason.APPENDED, uid) for (item, m), uid in zip(batch, uids, strict=True)]

    async def _append_one(self, client: IMAPClient, user: str, item: _Item, m: Appendable, report: SyncReport) -> None:
        try:
            if client.can_pipeline:
                uids = client.appenduids(await client.finish(client.send_append([m]), "APPEND"), 1)
            else:
                uids = await client.append_synchronizing(m)
        except CommandFailed as e:
            await self._refused(user, item, e, report)
            return
        await self._finish(user, [_Done(item, m.flags, Reason.APPENDED, uids[0])], report)

    async def _refused(self, user: str, item: _Item, e: CommandFailed, report: SyncReport) -> None:
        gave_up = await self.records.refused(user, item.msg.body_id, item.folder, str(e), self.settings.max_attempts)
        event = Event.SYNC_GAVE_UP if gave_up else Event.SYNC_REFUSED
        log.warning("%s: user=%s folder=%s body=%d: %s", event, user, item.folder, item.msg.body_id, e.text)
        report.count(Reason.REFUSED)
        if gave_up:
            report.failures.append(Failure(user, item.folder, item.msg.body_id, str(e)))
            self._failed += 1
            self._tick(user)

    async def _finish(self, user: str, done: list[_Done], report: SyncReport) -> None:
        if not done:
            return
        await self.records.finish([(user, d.item.msg.body_id, d.item.folder, d.flags, d.reason, d.uid) for d in done])
        for d in done:
            report.count(d.reason)
        self._done += len(done)
        self._tick(user)

    def _tick(self, user: str) -> None:
        if self._progress is not None:
            self._progress(Progress(user, self._done, self._total, self._failed))

    # -- SMTP fallback -------------------------------------------------------------------------------
    async def _run_smtp(self, work: dict[str, list[_Item]], report: SyncReport) -> None:
        """Re-inject standby-only INBOX mail through the primary's SMTP/LMTP port (at least once:
        a crash between the primary's 250 and our record sends that message again, carrying the
        same trace header). Other folders and flags need IMAP: recorded with reason `no-imap`."""

        for user, items in work.items():
            await self._finish(user, [_Done(i, frozenset(), Reason.NO_IMAP) for i in items if not _inbound(i)], report)
            todo = [i for i in items if _inbound(i)]
            if not todo:
                continue
            conn: PrimaryConnection = (
                LMTPConnection(self.primary, self.hostname)
                if self.primary.protocol == "lmtp"
                else RelayConnection(self.primary, self.hostname)
            )
            try:
                await conn.open()
            except Exception as e:
                raise PrimaryUnavailable(
                    f"the primary's SMTP server {self.primary.host}:{self.primary.port} is unreachable: {e}"
                ) from None
            try:
                for item in todo:
                    await self._reinject(conn, user, item, report)
            finally:
                await conn.close()

    async def _reinject(self, conn: PrimaryConnection, user: str, item: _Item, report: SyncReport) -> None:
        body = await self.records.body(item.msg.body_id)
        if body is None:
            await self._finish(user, [_Done(item, frozenset(), Reason.DELETED_ON_STANDBY)], report)
            return
        replies = await conn.send("", [user], with_trace(body, item.trace), smtputf8=False, eight_bit=True)
        reply = replies[user]
        if 200 <= reply.code < 300:
            await self._finish(user, [_Done(item, frozenset(), Reason.REINJECTED)], report)
        elif reply.code >= 500:
            await self._refused(user, item, CommandFailed("SMTP", str(reply.code), str(reply)), report)
        else:
            raise PrimaryUnavailable(f"the primary's SMTP server deferred re-injection: {reply}")


def _inbound(item: _Item) -> bool:
    return not item.msg.journaled and item.decision.action is Action.APPEND and item.msg.mailbox == "INBOX"
