"""RFC 3464 delivery status notifications, as the sender asked for them (RFC 3461).

A DSN is sent with the null reverse-path and never in answer to a message
that itself had a null reverse-path (RFC 5321 §4.5.5, §6.1), so bounces can
never loop. Everything taken from the original message is encoded, never
pasted into our headers (no header injection).

What the sender asked (RFC 3461) is honoured here:
- NOTIFY per recipient: NEVER means no DSN at all; a failure is reported when
  NOTIFY is unset or holds FAILURE; a delay when it is unset or holds DELAY
  (§4.1's default, which Postfix follows); a success only when it holds
  SUCCESS (`wanted`).
- A delay notice (Action: delayed, a 4.x.x Status, Will-Retry-Until) always
  returns the headers only, as Postfix's delay warning does: the message is
  still on its way.
- RET=FULL returns the whole message (up to `FULL_RETURNED` octets, else its
  headers); RET=HDRS or no RET returns the headers only (§4.3 leaves the
  default to us; Postfix returns the message, we keep mail content out of
  notifications unless asked).
- ENVID comes back as Original-Envelope-Id, ORCPT as Original-Recipient.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid

from mailstandby.core.reply import Reply
from mailstandby.smtp.codec import xtext_encode

HEADERS_RETURNED = 64 * 1024
FULL_RETURNED = 10 * 1024 * 1024  # RET=FULL beyond this returns the headers (Postfix bounce_size_limit idea)

FAILED = "failed"
DELIVERED = "delivered"  # RFC 3464 §2.3.3: filed in a standby mailbox
RELAYED = "relayed"  # handed to a next hop that was not asked for DSNs (RFC 3461 §5.2.2)
DELAYED = "delayed"  # RFC 3464 §2.3.3: still queued after queue.delay_warning_time; retried until expiry

_NOTIFY_WORD = {FAILED: "FAILURE", DELIVERED: "SUCCESS", RELAYED: "SUCCESS", DELAYED: "DELAY"}


@dataclass(frozen=True, slots=True)
class Failure:
    """The outcome of one recipient a DSN reports: a failure, or (`action`) a delivery or relay."""

    rcpt: str
    reply: Reply
    expired: bool = False
    action: str = FAILED
    orcpt: str = ""  # RFC 3461 ORCPT "addr-type;address", echoed as Original-Recipient
    retry_until: float = 0.0  # DELAYED: when the queue gives up (RFC 3464 §2.3.9 Will-Retry-Until)


def wanted(notify: str, action: str) -> bool:
    """Whether NOTIFY (as stored: "", "NEVER", "DELAY,SUCCESS"...) asks for a DSN about `action`."""
    words = set(notify.split(",")) if notify else {"FAILURE", "DELAY"}
    return _NOTIFY_WORD[action] in words


def _clean(text: str) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in text)


@dataclass(frozen=True, slots=True)
class Original:
    """The message a DSN is about, and what its sender asked to get back."""

    queue_id: str
    sender: str
    arrival: float
    body: bytes
    ret: str = ""  # "FULL", "HDRS" or ""
    envid: str = ""


def build_dsn(*, hostname: str, bounce_from: str, original: Original, failures: list[Failure]) -> bytes:
    """The complete DSN message (headers and body), CRLF line endings.

    Built as bytes with a random boundary: the only values taken from the
    original message are addresses and ids (already validated, and cleaned of
    anything unprintable here) and its header block or whole text, which stays
    inside its own part.
    """
    boundary = f"{original.queue_id}/{secrets.token_hex(8)}"
    failed = any(f.action == FAILED for f in failures)
    delayed = not failed and any(f.action == DELAYED for f in failures)
    if delayed:
        original = replace(original, ret="HDRS")  # a warning: the message is still on its way
    head = [
        f"From: Mail Delivery System <{_clean(bounce_from)}@{hostname}>",
        f"To: <{_clean(original.sender)}>",
        f"Subject: {_subject(failed, delayed)}",
        f"Date: {format_datetime(datetime.now(UTC))}",
        f"Message-ID: {make_msgid(domain=hostname)}",
        "Auto-Submitted: auto-replied",  # RFC 3834
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Description: Notification",
        "",
        *_human_text(hostname, failures, failed, delayed),
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "Content-Description: Delivery report",
        "",
        _status_fields(hostname, original, failures),
        f"--{boundary}",
        *_returned_head(original, failed),
        "",
        "",
    ]
    tail = f"\r\n--{boundary}--\r\n".encode()
    return "\r\n".join(head).encode("utf-8") + _returned(original) + tail


def _subject(failed: bool, delayed: bool) -> str:
    if failed:
        return "Undelivered Mail Returned to Sender"
    return "Delayed Mail (still being retried)" if delayed else "Successful Mail Delivery Report"


def _human_text(hostname: str, failures: list[Failure], failed: bool, delayed: bool) -> list[str]:
    lines = [f"This is the mail system at host {hostname}.", ""]
    if failed:
        lines += [
            "I'm sorry to have to inform you that your message could not",
            "be delivered to one or more recipients. The reasons follow.",
        ]
    elif delayed:
        until = max(f.retry_until for f in failures)
        lines += [
            "THIS IS A WARNING ONLY. YOU DO NOT NEED TO RESEND YOUR MESSAGE.",
            "",
            "Your message could not be delivered yet; delivery will be retried until",
            f"{format_datetime(datetime.fromtimestamp(until, UTC))}. The reasons follow.",
        ]
    else:
        lines += ["Your message was delivered (or relayed onwards) as you asked to be told."]
    lines.append("")
    for f in failures:
        why = "delivery time expired" if f.expired else {FAILED: "permanent failure"}.get(f.action, f.action)
        why = "temporary failure, still trying" if f.action == DELAYED else why
        lines.append(f"<{_clean(f.rcpt)}>: {why}: {_clean(str(f.reply))}")
    return lines


def _full(original: Original) -> bool:
    return original.ret == "FULL" and len(original.body) <= FULL_RETURNED


def _returned_head(original: Original, failed: bool) -> list[str]:
    if _full(original):
        return [
            "Content-Type: message/rfc822",
            "Content-Description: " + ("Undelivered Message" if failed else "Message"),
        ]
    return ["Content-Type: text/rfc822-headers", "Content-Description: Message Headers"]


def _returned(original: Original) -> bytes:
    if _full(original):
        return original.body
    headers_end = original.body.find(b"\r\n\r\n")
    headers = original.body if headers_end < 0 else original.body[: headers_end + 2]
    return headers[:HEADERS_RETURNED]


def _status_fields(hostname: str, original: Original, failures: list[Failure]) -> str:
    arrived = format_datetime(datetime.fromtimestamp(original.arrival, UTC))
    out = []
    if original.envid:
        out.append(f"Original-Envelope-Id: {xtext_encode(original.envid)}")  # RFC 3464 §2.2.1
    out += [
        f"Reporting-MTA: dns; {hostname}",
        f"X-Mailstandby-Queue-ID: {original.queue_id}",
        f"Arrival-Date: {arrived}",
    ]
    out.append("")
    for f in failures:
        status = _status(f)
        if f.orcpt:
            addr_type, _, address = f.orcpt.partition(";")
            out.append(f"Original-Recipient: {addr_type}; {_clean(address)}")  # RFC 3464 §2.3.1
        out += [
            f"Final-Recipient: rfc822; {_clean(f.rcpt)}",
            f"Action: {f.action}",
            f"Status: {status or '5.0.0'}",
            f"Diagnostic-Code: smtp; {f.reply.code} {_clean(f.reply.status)} {_clean(f.reply.text)}",
        ]
        if f.action == DELAYED:
            out.append(f"Will-Retry-Until: {format_datetime(datetime.fromtimestamp(f.retry_until, UTC))}")
        out.append("")
    return "\r\n".join(out)


def _status(f: Failure) -> str:
    """RFC 3463: the class follows the action (5 failed, 4 delayed, 2 delivered or relayed)."""
    if f.action == FAILED:
        return "4.4.7" if f.expired else "5" + f.reply.status[1:]
    first = "4" if f.action == DELAYED else "2"
    return f.reply.status if f.reply.status.startswith(first) else first + ".0.0"
