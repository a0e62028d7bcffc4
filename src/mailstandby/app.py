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
import ssl
import time

from mailstandby import __version__
from mailstandby.auth import PasswordAuthenticator
from mailstandby.config import Config, disk_reserve
from mailstandby.directory.importer import DirectoryService, configured
from mailstandby.directory.static import from_settings
from mailstandby.directory.view import DirectoryView
from mailstandby.imap.server import IMAPServer
from mailstandby.intake import GatewayIntake, SubmissionIntake
from mailstandby.pop3.server import POP3Server
from mailstandby.queue.runner import QueueRunner
from mailstandby.routing import Router
from mailstandby.smtp.lmtp import LMTPConnection
from mailstandby.smtp.relay import PrimaryConnection, RelayConnection
from mailstandby.smtp.server import SMTPServer
from mailstandby.smtp.session import Login
from mailstandby.store.sqlite import SQLiteStore
from mailstandby.store.sqlite_mailbox import SQLiteMailboxStore
from mailstandby.tls import ensure_self_signed, server_context

log = logging.getLogger(__name__)


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        node = config.node
        self.store = SQLiteStore(node.data_dir, config.store)
        # One view for everyone; imports swap its contents (no restart, no new references).
        self.directory = DirectoryView(from_settings(config.directory))
        self.directory_service = DirectoryService(
            self.directory, self.store, config.directory, node.data_dir / "mailstandby.db"
        )
        self.router = Router(self.directory, smarthost=bool(config.outbound.host))
        # Journal copies never eat into the space kept for accepting mail (Postfix queue_minfree rule).
        self.mailboxes = SQLiteMailboxStore(self.store, journal_reserve=disk_reserve(config.smtp))
        self.runner = QueueRunner(
            self.store,
            self.router,
            self._primary_connection,
            config.queue,
            hostname=node.hostname,
            journal=self.mailboxes if config.journal.enabled else None,
            connect_outbound=(lambda: RelayConnection(config.outbound, node.hostname))
            if config.outbound.host
            else None,
        )
        self.tasks: list[asyncio.Task[None]] = []
        self.intake = GatewayIntake(self.directory, self.store, config.smtp, self.runner.submit)
        tls_context = self._tls_context()
        self.smtp = SMTPServer(config.smtp, self.intake, hostname=node.hostname, tls_context=tls_context)
        self.authenticator = PasswordAuthenticator(self.directory, self.mailboxes, config.auth)
        self.submission = SMTPServer(
            config.submission,
            SubmissionIntake(self.directory, self.store, config.submission, self.runner.submit, self.mailboxes),
            hostname=node.hostname,
            tls_context=tls_context,
            login=Login(self.authenticator, config.submission.allow_plaintext_auth_on_loopback),
            listen_tls=config.submission.listen_tls,
        )
        self.imap = IMAPServer(config.imap, self.mailboxes, self.authenticator, tls_context=tls_context)
        self.pop3 = POP3Server(
            config.pop3, self.mailboxes, self.authenticator, hostname=node.hostname, tls_context=tls_context
        )
        self._stopped = asyncio.Event()

    def _primary_connection(self) -> PrimaryConnection:
        primary, hostname = self.config.primary, self.config.node.hostname
        if primary.protocol == "lmtp":
            return LMTPConnection(primary, hostname)
        return RelayConnection(primary, hostname)

    def _smarthost_connection(self) -> PrimaryConnection:
        return RelayConnection(self.config.outbound, self.config.node.hostname)

    def _tls_context(self) -> ssl.SSLContext:
        tls = self.config.tls
        if tls.cert is not None and tls.key is not None:
            return server_context(tls.cert, tls.key)
        cert, key = ensure_self_signed(self.config.node.data_dir / "tls", self.config.node.hostname)
        return server_context(cert, key)

    def addresses(self) -> dict[str, list[str]]:
        """Every listener by service name: smtp, submission(s), imap(s), pop3(s)."""

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
        }
        return {name: addrs for name, addrs in found.items() if addrs}

    async def start(self) -> None:
        await self.store.open()
        self._start_directory()
        await self.runner.start()
        if self.config.journal.enabled:
            self.tasks.append(asyncio.create_task(self._prune_journal(), name="journal-pruning"))
        await self.smtp.start()
        await self.submission.start()
        await self.imap.start()
        await self.pop3.start()
        self._announce()
        # Objects alive after start-up live as long as the process: keep them out of
        # the collector's way, and collect young objects less often under load.
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 20, 20)

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
        await self.smtp.stop(grace)
        await self.submission.stop(grace)
        await self.imap.stop(grace)
        await self.pop3.stop(grace)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.runner.stop(grace)
        await self.store.close()
        self._stopped.set()

    async def serve(self) -> None:
        """Run until SIGTERM or SIGINT, then shut down gracefully."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        await stop.wait()
        await self.stop()


def run(config: Config) -> None:
    """Serve on the configured event loop until a signal."""
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
