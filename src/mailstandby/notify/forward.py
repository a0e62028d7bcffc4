"""Forwarding during an outage: each message, or a summary of it, to the user's alternate addresses and modes.

`plan()` is pure: it reads the message's headers and the user's preference and
returns what to send with a reason from a closed set. Never forwarded (RFC 3834
§2, RFC 5230 §4.6 spirit): bounces (null envelope sender, multipart/report),
automatic messages (`Auto-Submitted` other than `no`, `Precedence:
bulk/junk/list`), list traffic unless `notify.forward_lists`, and a message
already forwarded `notify.forward_hop_limit` times by a standby (our
`X-Mailstandby-Forwarded` trace header, or more than MAX_RECEIVED `Received`
lines) — so two users forwarding to each other stop after a few hops.

`forward()` makes the plan durable, exactly once per (message, user):
- full forwarding resends the message as it is, with resent/trace headers put
  in front, from our bounce address (SPF holds for our domain), through the
  queue under a queue id derived from the message id and the user;
- summaries become notification rows (kind `forward`, occurrence = message id)
  delivered by the notifier like any notice.
Calling it again for the same message and user (after a crash) adds nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from email import policy
from email.parser import BytesHeaderParser
from email.utils import formatdate
from enum import StrEnum

from mailstandby.config import NotifySettings
from mailstandby.core.events import Event
from mailstandby.core.model import BodyType, Envelope
from mailstandby.directory.base import Forwarding, User
from mailstandby.notify import compose
from mailstandby.notify.compose import FORWARDED_HEADER, Destination, Mode, Summary
from mailstandby.notify.notifier import FORWARD_KIND, Notifier
from mailstandby.store.base import NewMessage

log = logging.getLogger(__name__)

MAX_RECEIVED = 50  # Received lines beyond which a message is taken to be looping (RFC 5321 §6.3)


class ForwardReason(StrEnum):
    FULL = "forward-full"
    SUMMARY = "forward-summary"
    OFF = "forwarding-off"
    NO_DESTINATION = "no-destination"
    NULL_SENDER = "null-sender"
    DELIVERY_REPORT = "delivery-report"
    AUTO_SUBMITTED = "auto-submitted"
    BULK = "precedence-bulk"
    MAILING_LIST = "mailing-list"
    HOP_LIMIT = "hop-limit"
    FROM_DESTINATION = "from-alternate"  # sent from one of the user's own alternates: it would go back there
    RATE_LIMITED = "rate-limited"  # more summaries this hour than notify.forward_summaries_per_hour


SENDING = frozenset({ForwardReason.FULL, ForwardReason.SUMMARY})
AUTO_HEADERS = ("X-Autoreply", "X-Autorespond")  # vacation programs that predate RFC 3834
LIST_HEADERS = ("List-Id", "List-Post", "List-Unsubscribe", "List-Help", "Mailing-List", "X-Mailing-List")


@dataclass(frozen=True, slots=True)
class ForwardPlan:
    reason: ForwardReason
    full_to: tuple[str, ...] = ()  # addresses getting the whole message
    summary_to: tuple[Destination, ...] = ()  # destinations getting the summary
    summary: Summary | None = None

    @property
    def sends(self) -> bool:
        return self.reason in SENDING


def plan(user: User, raw: bytes, envelope_sender: str, settings: NotifySettings) -> ForwardPlan:
    """What to forward of `raw` for `user`, and why (pure)."""
    mode = user.preferences.forward
    if mode is Forwarding.OFF:
        return ForwardPlan(ForwardReason.OFF)
    dests = compose.destinations(user)
    if mode is Forwarding.FULL:
        dests = [d for d in dests if d.mode is Mode.EMAIL]
    if not dests:
        return ForwardPlan(ForwardReason.NO_DESTINATION)
    if envelope_sender == "":
        return ForwardPlan(ForwardReason.NULL_SENDER)
    if envelope_sender.lower() in {d.target.lower() for d in compose.destinations(user) if d.mode is not Mode.APPRISE}:
        return ForwardPlan(ForwardReason.FROM_DESTINATION)
    headers = BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
    why = _automatic(headers, settings)
    if why is not None:
        return ForwardPlan(why)
    if mode is Forwarding.FULL:
        return ForwardPlan(ForwardReason.FULL, full_to=tuple(d.target for d in dests))
    summary = compose.summarize(raw, user.preferences.summary_length)
    return ForwardPlan(ForwardReason.SUMMARY, summary_to=tuple(dests), summary=summary)


def _automatic(headers: object, settings: NotifySettings) -> ForwardReason | None:
    get_all = headers.get_all  # type: ignore[attr-defined]
    content_type = str(headers.get("Content-Type", "")).lower()  # type: ignore[attr-defined]
    if content_type.startswith("multipart/report"):
        return ForwardReason.DELIVERY_REPORT
    if len(get_all(FORWARDED_HEADER) or []) >= settings.forward_hop_limit:
        return ForwardReason.HOP_LIMIT
    if len(get_all("Received") or []) > MAX_RECEIVED:
        return ForwardReason.HOP_LIMIT
    auto = [str(v).strip().lower().split(";")[0].strip() for v in get_all("Auto-Submitted") or []]
    if any(v and v != "no" for v in auto) or any(get_all(h) for h in AUTO_HEADERS):
        return ForwardReason.AUTO_SUBMITTED
    precedence = {str(v).strip().lower() for v in get_all("Precedence") or []}
    if precedence & {"bulk", "junk"}:
        return ForwardReason.BULK
    if not settings.forward_lists and ("list" in precedence or any(get_all(h) for h in LIST_HEADERS)):
        return ForwardReason.MAILING_LIST
    return None


def forward_id(message_id: str, user: str) -> str:
    return f"fwd-{message_id}-{hashlib.sha256(user.encode()).hexdigest()[:10]}"


class Forwarder:
    """Turns a plan into durable work; the queue runner calls it for each outage delivery."""

    def __init__(self, notifier: Notifier, settings: NotifySettings, *, hostname: str) -> None:
        self.notifier = notifier
        self.settings = settings
        self.hostname = hostname

    def plan(self, user: User, raw: bytes, envelope_sender: str) -> ForwardPlan:
        return plan(user, raw, envelope_sender, self.settings)

    async def forward(self, user: User, raw: bytes, envelope_sender: str, *, message_id: str) -> ForwardPlan:
        """Plan and durably queue the forwarding of message `message_id` (idempotent); returns the plan.

        Planning parses the message (and makes the summary): CPU-bound on any sender's input, so it
        runs in a worker thread, never on the event loop (docs/security.md)."""
        p = await asyncio.to_thread(self.plan, user, raw, envelope_sender)
        log.info("%s: id=%s user=%s reason=%s", Event.NOTIFY_FORWARD, message_id, user.address, p.reason.value)
        if p.full_to:
            await self._resend(user, raw, p.full_to, message_id)
        if p.summary_to and p.summary is not None:
            payload = json.dumps(asdict(p.summary))
            rows = [(user.address, FORWARD_KIND, message_id, d.mode, d.key, payload) for d in p.summary_to]
            now = self.notifier.clock()
            limit = self.settings.forward_summaries_per_hour
            added = await self.notifier.store.add_forward_summary(
                rows, user=user.address, kind=FORWARD_KIND, occurrence=message_id, now=now, limit=limit
            )
            if not added:
                log.warning(
                    "%s: id=%s user=%s reason=%s", Event.NOTIFY_FORWARD, message_id, user.address, "rate-limited"
                )
                return ForwardPlan(ForwardReason.RATE_LIMITED)
            self.notifier.wake()
        return p

    async def _resend(self, user: User, raw: bytes, to: tuple[str, ...], message_id: str) -> None:
        store = self.notifier.store
        qid = forward_id(message_id, user.address)
        if store.queued(qid):
            return  # queued before a crash or by an earlier call
        head = compose.trace_headers(
            [
                (FORWARDED_HEADER, f"for {user.address} by {self.hostname}; {formatdate(localtime=True)}"),
                ("Resent-From", self.notifier.bounce_address),
                ("Resent-To", ", ".join(to)),
                ("Resent-Date", formatdate(localtime=True)),
                ("Resent-Message-ID", f"<{qid}@{self.hostname}>"),
            ]
        )
        eight_bit = any(b > 127 for b in raw)
        envelope = Envelope(
            self.notifier.bounce_address, list(to), body_type=BodyType.EIGHT_BIT if eight_bit else BodyType.SEVEN_BIT
        )
        queued = await store.accept(NewMessage(qid, envelope, head + raw, self.notifier.clock()))
        self.notifier.submit(queued)
