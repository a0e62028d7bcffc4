"""The composition root: the only place that builds concrete objects.

Start order: store, directory, queue runner, listeners; stop order is the
reverse, with a grace period for sessions in DATA and deliveries in flight.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.routing import BaseRoute

from mailstandby import __version__
from mailstandby.admin.api import Services, create_app
from mailstandby.admin.auth import AdminAuthenticator
from mailstandby.admin.metrics import StandbyCollector, registry
from mailstandby.admin.server import AdminServer
from mailstandby.antispam import RspamdScanner
from mailstandby.auth import HashingPool, PasswordAuthenticator
from mailstandby.config import Config, disk_reserve
from mailstandby.core.events import Event
from mailstandby.core.leadership import Solo
from mailstandby.core.model import Mode
from mailstandby.core.signals import Trouble
from mailstandby.directory.importer import DirectoryService, configured
from mailstandby.directory.static import from_settings
from mailstandby.directory.view import DirectoryView
from mailstandby.dns.switch import DNSSwitch
from mailstandby.failover.coordinator import Coordinator, Effects
from mailstandby.files import PRIVATE_UMASK, tighten
from mailstandby.imap.server import IMAPServer
from mailstandby.intake import GatewayIntake, SubmissionIntake
from mailstandby.looplag import LoopLagMonitor
from mailstandby.milter.server import MilterServer
from mailstandby.milter.sink import StandbySink
from mailstandby.monitor.service import Monitor
from mailstandby.notify.forward import Forwarder
from mailstandby.notify.notifier import Notifier
from mailstandby.notify.setup import SetupService, setup_routes
from mailstandby.notify.tokens import load_key
from mailstandby.pop3.server import POP3Server
from mailstandby.queue.inbox import Inbox
from mailstandby.queue.inflight import InDoubt
from mailstandby.queue.runner import QueueRunner
from mailstandby.routing import Router
from mailstandby.shared_settings import shared_settings
from mailstandby.smtp.lmtp import LMTPConnection
from mailstandby.smtp.mx import MXConnection, MXResolver
from mailstandby.smtp.relay import PrimaryConnection, RelayConnection
from mailstandby.smtp.server import SMTPServer
from mailstandby.smtp.session import Login
from mailstandby.store.changefeed import ChangeListener
from mailstandby.store.postgres import PostgresStore
from mailstandby.store.postgres_leader import PostgresLeadership
from mailstandby.store.sqlite import SQLiteStore
from mailstandby.store.sqlite_directory import SQLiteDirectoryStore
from mailstandby.store.sqlite_failover import SQLiteFailoverStore
from mailstandby.store.sqlite_mailbox import SQLiteMailboxStore
from mailstandby.store.sqlite_notify import SQLiteNotifyStore
from mailstandby.store.sqlite_sync import SQLiteSyncRecords
from mailstandby.sync.engine import SyncEngine
from mailstandby.sync.lookup import PrimaryMailboxLookup
from mailstandby.sync.records import RunLock
from mailstandby.tls import CertificateReloader, ensure_self_signed
from mailstandby.verify import RecipientVerifier

log = logging.getLogger(__name__)


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        node = config.node
        self.store = (
            PostgresStore(
                node.data_dir,
                config.store,
                shared_settings(config),
                node_id=node.node_id,
                lease=config.queue.lease,
            )
            if config.store.url
            else SQLiteStore(node.data_dir, config.store)
        )
        # One leader among the nodes sharing a PostgreSQL store; the embedded store's one node leads for good.
        self.leadership: Solo | PostgresLeadership = (
            PostgresLeadership(config.store.url, config.cluster, node.node_id) if config.store.url else Solo()
        )
        # One view for everyone; imports swap its contents (no restart, no new references).
        self.directory = DirectoryView(from_settings(config.directory))
        self.directory_service = DirectoryService(self.directory, SQLiteDirectoryStore(self.store), config.directory)
        direct_mx = config.outbound.direct_mx and not config.outbound.host  # other domains by MX during an outage
        self.router = Router(self.directory, smarthost=bool(config.outbound.host), direct_mx=direct_mx)
        # Journal copies never eat into the space kept for accepting mail (Postfix queue_minfree rule).
        self.mailboxes = SQLiteMailboxStore(self.store, journal_reserve=disk_reserve(config.smtp))
        # other nodes' mailbox changes reach this node's IMAP sessions (PostgreSQL: LISTEN/NOTIFY)
        self.changes = (
            ChangeListener(config.store.url, node.node_id, self.mailboxes.remote_change, self.mailboxes.resync)
            if config.store.url
            else None
        )
        # Accepted mail reaches the queue through the inbox, queue trouble the monitor through a signal:
        # both built first, so every part below gets what it needs when it is built.
        self.inbox = Inbox()
        self.trouble = Trouble()
        self.tasks: list[asyncio.Task[None]] = []
        self.notifications = SQLiteNotifyStore(self.store)
        self.notifier = Notifier(
            self.notifications,
            self.directory,
            config.notify,
            hostname=node.hostname,
            submit=self.inbox.submit,
            key=load_key(node.data_dir),
            leadership=self.leadership,
            domains=config.directory.domains,
        )
        self.forwarder = Forwarder(self.notifier, config.notify, hostname=node.hostname)
        self.runner = QueueRunner(
            self.store,
            self.router,
            self._primary_connection,
            config.queue,
            hostname=node.hostname,
            journal=self.mailboxes if config.journal.enabled else None,
            standby=self.mailboxes,
            connect_outbound=(lambda: RelayConnection(config.outbound, node.hostname))
            if config.outbound.host
            else None,
            connect_direct=self._direct_connection(MXResolver(config.outbound)) if direct_mx else None,
            in_doubt=self._in_doubt(),
            evidence=self.trouble.report,
            forwarding=self.forwarder,  # outage mail to users' alternates, as they asked
            inbox=self.inbox,
        )
        # one bound on argon2 work for every login and new password (docs/security.md)
        self.hashing = HashingPool(config.auth.max_verifications, min_length=config.auth.min_password_length)
        # the one live context every listener holds, reloaded in place (docs/security.md, TLS)
        self.certificates = CertificateReloader(*self._certificate(), workdir=node.data_dir / "tls")
        self._build_failover()
        self.scanner = RspamdScanner(config.antispam) if config.antispam.rspamd_url else None
        verifier = None
        if config.smtp.verify_recipients:
            verifier = RecipientVerifier(
                config.smtp,
                config.primary,
                hostname=node.hostname,
                in_service=lambda: self.router.mode is not Mode.FAILED_OVER,
            )
        self.intake = GatewayIntake(self.directory, self.store, config.smtp, self.inbox.submit, self.scanner, verifier)
        tls_context = self.certificates.context
        self.smtp = SMTPServer(config.smtp, self.intake, hostname=node.hostname, tls_context=tls_context)
        self.authenticator = PasswordAuthenticator(self.directory, self.mailboxes, config.auth, hashing=self.hashing)
        self.submission = SMTPServer(
            config.submission,
            SubmissionIntake(self.directory, self.store, config.submission, self.inbox.submit, self.mailboxes),
            hostname=node.hostname,
            tls_context=tls_context,
            login=Login(self.authenticator, config.submission.allow_plaintext_auth_on_loopback),
            listen_tls=config.submission.listen_tls,
        )
        self.imap = IMAPServer(config.imap, self.mailboxes, self.authenticator, tls_context=tls_context)
        self.pop3 = POP3Server(
            config.pop3, self.mailboxes, self.authenticator, hostname=node.hostname, tls_context=tls_context
        )
        self.milter = MilterServer(
            config.milter,
            self.router,
            StandbySink(self.store, self.mailboxes, self.inbox.submit),
            hostname=node.hostname,
            max_size=config.smtp.max_message_size,
        )
        self._stopped = asyncio.Event()

    def _build_failover(self) -> None:
        """Monitor -> coordinator -> router and queue; the admin API on top."""
        config = self.config
        self.failover_store = SQLiteFailoverStore(self.store)
        self.sync: SyncEngine | None = None  # failback sync (docs/sync.md): FAILING_BACK runs it
        if config.sync.automatic and (config.sync.imap_host or config.sync.smtp_fallback):
            node = config.node
            self.sync = SyncEngine(
                SQLiteSyncRecords(node.data_dir, url=config.store.url),
                RunLock(node.data_dir),
                config.sync,
                config.primary,
                hostname=node.hostname,
            )
        self.dns = DNSSwitch(config.dns, self.failover_store, self.leadership) if config.dns.enabled else None
        effects = Effects(
            reroute=self.runner.reroute,
            announce=self.notifier.announce_scope,
            sync=self.sync.failback if self.sync is not None else None,
            dns=self.dns,
        )
        self.coordinator = Coordinator(
            self.failover_store,
            self.router,
            self.leadership,
            effects,
            automatic=config.failover.control == "automatic",
            follow_interval=config.cluster.follow_interval,
        )
        self.monitor = Monitor(
            config.monitor,
            config.primary,
            config.failover,
            hostname=config.node.hostname,
            owner_of=self.router.user_of,
            on_verdict=self.coordinator.observe,
            history=self.failover_store,
            directory=lambda: [u.address for u in self.directory.users() if u.enabled],
            trouble=self.trouble,
        )
        metrics = registry(
            StandbyCollector(
                self.coordinator.snapshot,
                self.monitor.snapshot,
                lambda: self.runner.depth,
                lambda: self.coordinator.transitions,
            )
        )
        self.loop_lag = LoopLagMonitor(metrics, warn_after=config.node.loop_lag_warning)
        self.dns = DNSSwitch(config.dns, self.failover_store, self.leadership) if config.dns.enabled else None
        services = Services(
            failover=self.coordinator,
            history=self.failover_store,
            auth=AdminAuthenticator(self.failover_store, self.failover_store, config.admin, hashing=self.hashing),
            monitor=self.monitor.snapshot,
            queue_depth=lambda: self.runner.depth,
            metrics=metrics,
            metrics_public=config.admin.metrics_public,
            dns=self.dns,
            routes=self._setup_routes(),
            sync_status=self._sync_status if self.sync is not None else None,
            notifications=self.notifier.status,
            readiness=self.notifier.readiness,
        )
        self.admin = AdminServer(config.admin, create_app(services), tls_context=self.certificates.context)

    async def _sync_status(self) -> dict[str, Any]:
        assert self.sync is not None
        status = await self.sync.status()
        t = status.total
        total = {"total": t.total, "done": t.done, "failed": t.failed, "pending": t.pending}
        return {"failover": self.coordinator.snapshot()["mode"], "users": status.as_dict(), "total": total}

    def _setup_routes(self) -> list[BaseRoute]:
        """Phone setup links and autoconfig (notify), served by the admin HTTPS server."""
        service = SetupService(
            self.notifications,
            self.directory,
            self.config.notify,
            hostname=self.config.node.hostname,
            key=self.notifier.key,
            credentials=self.mailboxes,
            send_code=self.notifier.send_code,
            hashing=self.hashing,
        )
        return setup_routes(service)

    def _in_doubt(self) -> InDoubt | None:
        """Deliveries in doubt are looked up in the primary mailbox when the sync can log in there."""
        if not (self.config.queue.lookup_in_doubt and PrimaryMailboxLookup.configured(self.config.sync)):
            return None
        return InDoubt(self.store, PrimaryMailboxLookup(self.config.sync), self.router.user_of, time.time)

    def _primary_connection(self) -> PrimaryConnection:
        primary, hostname = self.config.primary, self.config.node.hostname
        if primary.protocol == "lmtp":
            return LMTPConnection(primary, hostname)
        return RelayConnection(primary, hostname)

    def _direct_connection(self, resolver: MXResolver) -> Callable[[str], PrimaryConnection]:
        outbound, hostname = self.config.outbound, self.config.node.hostname
        return lambda domain: MXConnection(domain, outbound, hostname, resolver)

    def _smarthost_connection(self) -> PrimaryConnection:
        return RelayConnection(self.config.outbound, self.config.node.hostname)

    def _certificate(self) -> tuple[Path, Path]:
        tls = self.config.tls
        if tls.cert is not None and tls.key is not None:
            return tls.cert, tls.key
        return ensure_self_signed(self.config.node.data_dir / "tls", self.config.node.hostname)

    def addresses(self) -> dict[str, list[str]]:
        """Every listener by service name: smtp, submission(s), imap(s), pop3(s), admin, milter."""

        def fmt(addrs: list[tuple[str, int]]) -> list[str]:
            return [f"{h}:{p}" for h, p in addrs]

        found = {
            "smtp": fmt(self.smtp.addresses),
            "submission": fmt(self.submission.addresses),
            "submissions": fmt(self.submission.tls_addresses),
            "imap": fmt(self.imap.addresses),
            "imaps": fmt(self.imap.tls_addresses),
            "pop3": fmt(self.pop3.addresses),
            "pop3s": fmt(self.pop3.tls_addresses),
            "admin": fmt(self.admin.addresses),
            "milter": fmt(self.milter.addresses),
        }
        return {name: addrs for name, addrs in found.items() if addrs}

    async def start(self) -> None:
        self._tighten_files()
        await self.store.open()
        await self.leadership.start()  # the coordinator and the notifier act only while this node leads
        self._start_directory()
        await self.coordinator.start()  # routing follows the recorded state before the first delivery
        await self.runner.start()
        await self.notifier.start()
        self.tasks.append(asyncio.create_task(self.loop_lag.run(), name="loop-lag"))
        if self.changes is not None:
            self.tasks.append(asyncio.create_task(self.changes.run(), name="mailbox-changes"))
        watch = self.certificates.watch(self.config.tls.reload_interval)
        self.tasks.append(asyncio.create_task(watch, name="certificate-watch"))
        self.tasks.append(asyncio.create_task(self.monitor.run(), name="monitor"))
        if self.config.journal.enabled:
            self.tasks.append(asyncio.create_task(self._prune_journal(), name="journal-pruning"))
        await self.smtp.start()
        await self.submission.start()
        await self.imap.start()
        await self.pop3.start()
        await self.admin.start()
        await self.milter.start()
        self._announce()
        # Objects alive after start-up live as long as the process: keep them out of
        # the collector's way, and collect young objects less often under load.
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 20, 20)

    def _tighten_files(self) -> None:
        """Everything under the data directory is private (docs/security.md), also what an older
        version or an administrator left readable."""
        data_dir = self.config.node.data_dir
        changed = tighten(data_dir)
        if changed:
            shown = ", ".join(str(p.relative_to(data_dir)) or "." for p in changed[:10])
            more = f" and {len(changed) - 10} more" if len(changed) > 10 else ""
            log.warning(
                "%s: group/other access taken away from %d paths under %s: %s%s",
                Event.STORE_PERMISSIONS_FIXED,
                len(changed),
                data_dir,
                shown,
                more,
            )

    def _start_directory(self) -> None:
        """The stored import now (LDAP may be dark); then the refresh timer and the reload watch."""
        settings = self.config.directory
        self.directory_service.load()
        if settings.refresh_interval and configured(settings):
            run = self.directory_service.run_refresh(settings.refresh_interval)
            self.tasks.append(asyncio.create_task(run, name="directory-refresh"))
        watch = self.directory_service.watch(settings.reload_interval)
        self.tasks.append(asyncio.create_task(watch, name="directory-watch"))

    async def _prune_journal(self) -> None:
        """Journal copies are history the primary also has: keep `retention_days` of it."""
        settings = self.config.journal
        while True:
            try:
                pruned = await self.mailboxes.prune_journal(time.time() - settings.retention_days * 86400)
                if pruned:
                    log.info("pruned %d journal copies older than %g days", pruned, settings.retention_days)
            except Exception:
                log.exception("journal pruning failed; will try again")
            await asyncio.sleep(settings.prune_interval)

    def _announce(self) -> None:
        listeners = self.addresses()
        run = self.config.node.data_dir / "run"
        run.mkdir(exist_ok=True)
        tmp = run / "listeners.json.tmp"
        tmp.write_text(json.dumps({"pid": os.getpid(), **listeners}))
        tmp.replace(run / "listeners.json")
        log.info(
            "mailstandby %s ready: %d users in %d domains; queue holds %d messages",
            __version__,
            len(self.directory),
            len(self.directory.domains),
            self.runner.depth,
        )
        for name, addrs in listeners.items():
            for a in addrs:
                print(f"mailstandby: {name} listening on {a}", flush=True)

    async def stop(self) -> None:
        grace = self.config.node.shutdown_grace
        log.info("shutting down (grace %.0fs)", grace)
        await self.milter.stop(grace)
        await self.smtp.stop(grace)
        await self.submission.stop(grace)
        await self.imap.stop(grace)
        await self.pop3.stop(grace)
        await self.admin.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.notifier.stop()
        await self.coordinator.stop()  # cancels a failback sync in progress (the next start resumes it)
        if self.sync is not None:
            await self.sync.close()
        await self.leadership.stop()
        await self.runner.stop(grace)
        if self.scanner is not None:
            await self.scanner.close()
        await self.store.close()
        self._stopped.set()

    async def serve(self) -> None:
        """Run until SIGTERM or SIGINT, then shut down gracefully."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.certificates.reload, "SIGHUP")
        await self.start()
        await stop.wait()
        await self.stop()


def run(config: Config) -> None:
    """Serve on the configured event loop until a signal."""
    os.umask(PRIVATE_UMASK)  # whatever the server creates is its own (files 0600, directories 0700)
    uvloop = None
    if config.node.event_loop in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if config.node.event_loop == "uvloop":
                raise
    if uvloop is not None:
        uvloop.run(_serve(config))
    else:
        asyncio.run(_serve(config))


async def _serve(config: Config) -> None:
    await App(config).serve()
