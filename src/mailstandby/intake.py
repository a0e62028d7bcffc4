"""Acceptance policy and durable commit for the SMTP receiver.

No open relay: a recipient outside our domains gets 554 5.7.1; an unknown
user in our domains gets 550 5.1.1 at RCPT time, so we never accept what we
would have to bounce (no backscatter). A message is handed to the queue only
after the store made it durable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from mailstandby.antispam import Action, Verdict, render
from mailstandby.config import SMTPSettings, disk_reserve
from mailstandby.core.model import Address, Envelope
from mailstandby.core.reply import Rejected
from mailstandby.directory.base import Directory
from mailstandby.smtp import codes
from mailstandby.store.base import MailStore, NewMessage, QueuedMessage, StoreError
from mailstandby.store.mailbox import MailboxStore

log = logging.getLogger(__name__)

FULL_BACKOFF = 5.0  # seconds new mail is refused after the store ran out of space


class GatewayIntake:
    def __init__(
        self,
        directory: Directory,
        store: MailStore,
        settings: SMTPSettings,
        on_accepted: Callable[[QueuedMessage], None],
        scanner: Scanner | None = None,
    ) -> None:
        self.scanner = scanner  # content check (rspamd) of inbound mail, if configured
        self.directory = directory
        self.store = store
        self.settings = settings
        self.on_accepted = on_accepted
        self.reserve = disk_reserve(settings)
        self._full_until = 0.0  # after the store reported ENOSPC: refuse for a moment whatever statvfs says

    def check_space(self, size: int = 0) -> None:
        """Refuse (452 4.3.1) unless the reserve plus `size` bytes are free (Postfix queue_minfree)."""
        try:
            ok = time.monotonic() >= self._full_until and self.store.free_space() >= self.reserve + size
        except OSError:
            ok = False
        if not ok:
            log.warning("free space below the reserve of %d bytes: refusing mail", self.reserve + size)
            raise Rejected(codes.C452_NO_SPACE, user_fault=False)

    def check_sender(self, sender: str, user: str | None) -> None:
        """Inbound mail may come from anyone (the primary's own checks follow)."""

    def check_recipient(self, address: Address) -> None:
        if not self.directory.serves(address.domain):
            raise Rejected(codes.C554_RELAY_DENIED, detail=f"relay to {address}")
        if self.directory.lookup(address) is None:
            raise Rejected(codes.C550_UNKNOWN_USER, detail=f"unknown {address}")

    async def commit(self, queue_id: str, envelope: Envelope, trace: bytes, message: bytes) -> None:
        if self.scanner is not None:
            trace = await self._check_content(queue_id, envelope, message) + trace
        try:
            queued = await self.store.accept(NewMessage(queue_id, envelope, trace + message, time.time()))
        except StoreError as e:
            log.error("commit of %s failed: %s", queue_id, e)
            if e.no_space:
                self._full_until = time.monotonic() + FULL_BACKOFF
            if e.too_big:
                raise Rejected(codes.C552_FILE_TOO_BIG, user_fault=False) from None
            raise Rejected(codes.C451_LOCAL_ERROR, user_fault=False) from None
        except OSError as e:  # not a StoreError: unknown means temporary, never a silent disconnect
            log.error("commit of %s failed: %s", queue_id, e)
            raise Rejected(codes.C451_LOCAL_ERROR, user_fault=False) from None
        self.on_accepted(queued)


    async def _check_content(self, queue_id: str, envelope: Envelope, message: bytes) -> bytes:
        """rspamd's verdict, honoured before the final dot is answered; returns headers to prepend."""
        assert self.scanner is not None
        v = await self.scanner.scan(queue_id, envelope, message)
        log.info("content check %s: %s -> %s", queue_id, v.detail, v.action)
        if v.action is Action.REJECT:
            raise Rejected(codes.C554_SPAM, detail=v.detail)
        if v.action is Action.TEMPFAIL:
            raise Rejected(codes.C451_CONTENT_CHECK, detail=v.detail, user_fault=False)
        return render(v.headers)


class Scanner(Protocol):
    async def scan(self, queue_id: str, envelope: Envelope, message: bytes) -> Verdict: ...


class SubmissionIntake(GatewayIntake):
    """Mail from authenticated users (RFC 6409): any destination, but only from their own addresses.

    A copy of each accepted message, as the user wrote it (without our trace
    header), is filed in the user's Sent mailbox.
    """

    def __init__(
        self,
        directory: Directory,
        store: MailStore,
        settings: SMTPSettings,
        on_accepted: Callable[[QueuedMessage], None],
        mailboxes: MailboxStore,
    ) -> None:
        super().__init__(directory, store, settings, on_accepted)
        self.mailboxes = mailboxes

    def check_sender(self, sender: str, user: str | None) -> None:
        if user is None:
            raise Rejected(codes.C530_AUTH_REQUIRED)
        try:
            owner = self.directory.lookup(Address.parse(sender))
        except ValueError:
            owner = None
        if owner is None or owner.address != user:
            raise Rejected(codes.C553_NOT_OWNER, detail=f"{user} as <{sender}>")

    def check_recipient(self, address: Address) -> None:
        if self.directory.serves(address.domain) and self.directory.lookup(address) is None:
            raise Rejected(codes.C550_UNKNOWN_USER, detail=f"unknown {address}")

    async def commit(self, queue_id: str, envelope: Envelope, trace: bytes, message: bytes) -> None:
        await super().commit(queue_id, envelope, trace, message)
        if envelope.auth_user is None:
            return
        try:  # the message is queued: a missing Sent copy is logged, never a reason to refuse
            await self.mailboxes.ensure_user(envelope.auth_user)
            await self.mailboxes.append(envelope.auth_user, "Sent", message, frozenset({"\\Seen"}))
        except Exception:
            log.exception("could not file the Sent copy of %s for %s", queue_id, envelope.auth_user)
