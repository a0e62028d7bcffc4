"""Acceptance policy and durable commit for the SMTP receiver.

No open relay: a recipient outside our domains gets 554 5.7.1; an unknown
user in our domains gets 550 5.1.1 at RCPT time, so we never accept what we
would have to bounce (no backscatter). A message is handed to the queue only
after the store made it durable.
"""

from __future__ import annotations

import asyncio
import email.policy
import logging
import time
from collections.abc import Callable
from email.parser import BytesHeaderParser
from typing import Protocol

from mailstandby.antispam import Action, Verdict, render
from mailstandby.config import SMTPSettings, disk_reserve
from mailstandby.core.model import Address, Envelope
from mailstandby.core.reply import Rejected, Reply
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
        verifier: Verifier | None = None,
    ) -> None:
        self.scanner = scanner  # content check (rspamd) of inbound mail, if configured
        self.verifier = verifier  # recipient verification by the primary (backup-MX mode), if configured
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

    async def check_recipient(self, address: Address) -> None:
        if not self.directory.serves(address.domain):
            raise Rejected(codes.C554_RELAY_DENIED, detail=f"relay to {address}")
        if self.directory.lookup(address) is None:
            raise Rejected(codes.C550_UNKNOWN_USER, detail=f"unknown {address}")
        if self.verifier is not None and (refusal := await self.verifier.refusal(address)) is not None:
            raise Rejected(refusal, detail=f"the primary refuses {address}")

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


class Verifier(Protocol):
    async def refusal(self, address: Address) -> Reply | None: ...


class Scanner(Protocol):
    async def scan(self, queue_id: str, envelope: Envelope, message: bytes) -> Verdict: ...


MAX_HEADER_BLOCK = 100 * 1024  # bytes of a submitted header section (Postfix header_size_limit)
MAX_ADDRESS_HEADER = 2000  # characters of one From:/Sender: value (the stdlib parser is quadratic beyond)
SENDER_HEADERS = ("from", "sender")


class HeaderTooBig(ValueError):
    pass


def header_senders(message: bytes) -> list[tuple[str, str]]:
    """(header name, address) for each mailbox in the From: and Sender: fields of `message`.

    Reads the header section only (at most `MAX_HEADER_BLOCK` bytes, else `HeaderTooBig`).
    Raises ValueError for a value it cannot vouch for: longer than `MAX_ADDRESS_HEADER`, or
    one the parser fails on (deeply nested comments). A group's mailboxes count; a field
    naming no mailbox at all yields an empty address, which nobody owns."""
    if message.startswith(b"\r\n"):
        return []  # an empty header section
    end = message.find(b"\r\n\r\n", 0, MAX_HEADER_BLOCK + 4)
    if end < 0 and len(message) > MAX_HEADER_BLOCK:
        raise HeaderTooBig
    head = message if end < 0 else message[: end + 2]
    parsed = BytesHeaderParser(policy=email.policy.default).parsebytes(head, headersonly=True)
    found: list[tuple[str, str]] = []
    for name, raw in parsed.raw_items():
        if name.lower() not in SENDER_HEADERS:
            continue
        if len(raw) > MAX_ADDRESS_HEADER:
            raise ValueError(f"{name} of {len(raw)} characters")
        try:
            field = email.policy.default.header_fetch_parse(name, raw)
            addresses = [(a.username, a.domain) for a in field.addresses]
        except Exception as e:  # RecursionError on nested comments, or a parser bug: refuse
            raise ValueError(f"{name} ({type(e).__name__})") from None
        found += [(name, f"{local}@{domain}" if domain else local) for local, domain in addresses] or [(name, "")]
    return found


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

    def _owns(self, user: str, address: str) -> bool:
        """`address` is the user's own or one of their aliases, by the directory."""
        try:
            owner = self.directory.lookup(Address.parse(address))
        except ValueError:
            owner = None
        return owner is not None and owner.address == user

    def check_sender(self, sender: str, user: str | None) -> None:
        if user is None:
            raise Rejected(codes.C530_AUTH_REQUIRED)
        if not self._owns(user, sender):
            raise Rejected(codes.C553_NOT_OWNER, detail=f"{user} as <{sender}>")

    async def check_header_senders(self, user: str, message: bytes) -> None:
        """RFC 6409 §8: every From: and Sender: address must be the user's own (aliases included),
        else 553 5.7.1. The header parse runs in a worker thread: the stdlib address parser is
        quadratic on some values, so values are also capped (`header_senders`)."""
        try:
            found = await asyncio.to_thread(header_senders, message)
        except HeaderTooBig:
            raise Rejected(codes.C552_HEADER_TOO_BIG, detail=f"header block over {MAX_HEADER_BLOCK} bytes") from None
        except ValueError as e:
            raise Rejected(codes.C553_HEADER_NOT_OWNER, detail=f"{user}: unreadable {e}") from None
        for name, address in found:
            if not self._owns(user, address):
                raise Rejected(codes.C553_HEADER_NOT_OWNER, detail=f"{user} as {name}: <{address[:200]}>")

    async def check_recipient(self, address: Address) -> None:
        if self.directory.serves(address.domain) and self.directory.lookup(address) is None:
            raise Rejected(codes.C550_UNKNOWN_USER, detail=f"unknown {address}")

    async def commit(self, queue_id: str, envelope: Envelope, trace: bytes, message: bytes) -> None:
        if envelope.auth_user is not None:
            await self.check_header_senders(envelope.auth_user, message)
        await super().commit(queue_id, envelope, trace, message)
        if envelope.auth_user is None:
            return
        try:  # the message is queued: a missing Sent copy is logged, never a reason to refuse
            await self.mailboxes.ensure_user(envelope.auth_user)
            await self.mailboxes.append(envelope.auth_user, "Sent", message, frozenset({"\\Seen"}))
        except Exception:
            log.exception("could not file the Sent copy of %s for %s", queue_id, envelope.auth_user)
