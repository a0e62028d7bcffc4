"""A notifier on a real SQLiteStore and QueueRunner, with a fake smarthost and an HTTP sink for Apprise.

Users (corp.test):
- alice: an alternate address, a phone with an SMS gateway, an Apprise `json://` URL
- bob: an alternate address only
- carol: an Apprise URL; does not want the failback notice
- dave: no alternate contact at all (unreachable)
Mail to other domains goes to `smarthost` (a FakePrimary) through `[outbound]`.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from fake_primary import FakePrimary, Received
from http_sink import HTTPSink
from tests.support.backends import Store, build_store

from mailstandby.config import NotifySettings, OutboundSettings, PrimarySettings, QueueSettings, StoreSettings
from mailstandby.core.leadership import Solo
from mailstandby.directory.base import Device, Forwarding, NoticeKind, Platform, Preferences, User
from mailstandby.directory.static import StaticDirectory
from mailstandby.notify.forward import Forwarder
from mailstandby.notify.notifier import Notifier
from mailstandby.notify.tokens import load_key
from mailstandby.queue.runner import QueueRunner
from mailstandby.routing import Router
from mailstandby.smtp.relay import RelayConnection
from mailstandby.store.sqlite_notify import SQLiteNotifyStore

HOSTNAME = "standby.corp.test"
SETUP_URL = "https://standby.corp.test"
TIMEOUT = 20.0
PEER = {"connect_timeout": 2.0, "command_timeout": 5.0, "data_timeout": 5.0, "tls": "none"}


def users(port: int, **extra: User) -> dict[str, User]:
    url = f"json://127.0.0.1:{port}"
    found = {
        "alice": User(
            "alice@corp.test",
            display_name="Alice Liddell",
            alternates=("alice@home.test",),
            notify_urls=(f"{url}/alice",),
            devices=(Device("a-phone", Platform.IOS, "+15550001", "15550001@sms.test"),),
        ),
        "bob": User("bob@corp.test", alternates=("bob@home.test",)),
        "carol": User(
            "carol@corp.test",
            notify_urls=(f"{url}/carol",),
            preferences=Preferences(notify=frozenset(NoticeKind) - {NoticeKind.FAILBACK}),
        ),
        "dave": User("dave@corp.test"),
        "erin": User(
            "erin@corp.test",
            alternates=("erin@home.test",),
            preferences=Preferences(forward=Forwarding.FULL),
        ),
        "fred": User(
            "fred@corp.test",
            notify_urls=(f"{url}/fred",),
            devices=(Device("f-pager", Platform.PAGER, sms_gateway="15550006@sms.test"),),
            preferences=Preferences(forward=Forwarding.SUMMARY, summary_length=60),
        ),
    }
    found.update(extra)
    return found


@dataclass
class Rig:
    data_dir: Path
    smarthost: FakePrimary
    http: HTTPSink
    settings: NotifySettings
    people: dict[str, User]
    store_settings: StoreSettings = field(default_factory=StoreSettings)  # url set: PostgreSQL
    store: Store | None = None
    notifications: SQLiteNotifyStore | None = None
    runner: QueueRunner | None = None
    notifier: Notifier | None = None
    forwarder: Forwarder | None = None
    clock: Callable[[], float] | None = None
    started: list[Any] = field(default_factory=list)

    @property
    def directory(self) -> StaticDirectory:
        return StaticDirectory(["corp.test"], self.people.values())

    async def start(self, *, concurrency: int = 4, deliver: bool = True) -> Notifier:
        """Open the store, start a queue runner and a notifier on it (again after `stop()`: a restart)."""
        store = build_store(self.data_dir, self.store_settings)
        await store.open()
        directory = self.directory
        peer = {"host": "127.0.0.1", "port": self.smarthost.port, **PEER}
        primary, outbound = PrimarySettings(**peer), OutboundSettings(**peer)
        queue = QueueSettings(concurrency=2, retry_initial=0.05, retry_max=0.2)
        runner = QueueRunner(
            store,
            Router(directory, smarthost=True),
            lambda: RelayConnection(primary, HOSTNAME),
            queue,
            hostname=HOSTNAME,
            connect_outbound=lambda: RelayConnection(outbound, HOSTNAME),
        )
        await runner.start()
        kw: dict[str, Any] = {"clock": self.clock} if self.clock else {}
        notifications = SQLiteNotifyStore(store)
        notifier = Notifier(
            notifications,
            directory,
            self.settings,
            hostname=HOSTNAME,
            submit=runner.submit,
            key=load_key(self.data_dir),
            leadership=Solo(),
            domains=["corp.test"],
            concurrency=concurrency,
            **kw,
        )
        if deliver:
            await notifier.start()
        self.store, self.notifications, self.runner, self.notifier = store, notifications, runner, notifier
        self.forwarder = Forwarder(notifier, self.settings, hostname=HOSTNAME)
        return notifier

    async def stop(self) -> None:
        if self.notifier is not None:
            await self.notifier.stop()
        if self.runner is not None:
            await self.runner.stop(0.5)
        if self.store is not None:
            await self.store.close()
        self.store = self.notifications = self.runner = self.notifier = None

    async def settled(self) -> list[dict[str, Any]]:
        """Wait until no notification is pending and the queue is empty; the final status."""
        assert self.notifier is not None and self.runner is not None
        async with asyncio.timeout(TIMEOUT):
            while True:
                status = await self.notifier.status()
                if all(s["state"] != "pending" for s in status) and self.runner.depth == 0:
                    return status
                await asyncio.sleep(0.02)

    async def wait_status(self, condition: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        """Wait until the notifier's status satisfies `condition`; that status."""
        assert self.notifier is not None
        async with asyncio.timeout(TIMEOUT):
            while not condition(status := await self.notifier.status()):
                await asyncio.sleep(0.02)
        return status

    def mail_to(self, rcpt: str) -> list[Received]:
        return [m for m in self.smarthost.messages if rcpt in m.rcpts]


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def settings(**overrides: Any) -> NotifySettings:
    base: dict[str, Any] = {
        "organization": "Corp",
        "public_host": "mail.corp.test",
        "imap_port": 993,
        "submission_port": 587,
        "setup_url": SETUP_URL,
        "retry_initial": 0.05,
        "retry_max": 0.2,
    }
    return NotifySettings(**{**base, **overrides})
