"""RFC 3464 delivery status notifications for permanent failures.

A DSN is sent with the null reverse-path and never in answer to a message
that itself had a null reverse-path (RFC 5321 §4.5.5, §6.1), so bounces can
never loop. Everything taken from the failed message is encoded, never pasted
into our headers (no header injection).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid

from mailstandby.core.reply import Reply

HEADERS_RETURNED = 64 * 1024


@dataclass(frozen=True, slots=True)
class Failure:
    rcpt: str
    reply: Reply
    expired: bool = False


def _clean(text: str) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in text)


def build_dsn(
    *,
    hostname: str,
    bounce_from: str,
    queue_id: str,
    sender: str,
    arrival: float,
    failures: list[Failure],
    original: bytes,
) -> bytes:
    """The complete DSN message (headers and body), CRLF line endings.

    Built as bytes with a random boundary: the only values taken from the
    failed message are addresses (already validated, and cleaned of anything
    unprintable here) and its header block, which stays inside its own part.
    """
    boundary = f"{queue_id}/{secrets.token_hex(8)}"
    lines = [
        f"This is the mail system at host {hostname}.",
        "",
        "I'm sorry to have to inform you that your message could not",
        "be delivered to one or more recipients. The reasons follow,",
        "and the headers of your message are attached below.",
        "",
    ]
    for f in failures:
        why = "delivery time expired" if f.expired else "permanent failure"
        lines.append(f"<{_clean(f.rcpt)}>: {why}: {_clean(str(f.reply))}")
    headers_end = original.find(b"\r\n\r\n")
    headers = original if headers_end < 0 else original[: headers_end + 2]
    head = [
        f"From: Mail Delivery System <{_clean(bounce_from)}@{hostname}>",
        f"To: <{_clean(sender)}>",
        "Subject: Undelivered Mail Returned to Sender",
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
        *lines,
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "Content-Description: Delivery report",
        "",
        _status_fields(hostname, queue_id, arrival, failures),
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "Content-Description: Undelivered Message Headers",
        "",
        "",
    ]
    tail = f"\r\n--{boundary}--\r\n".encode()
    return "\r\n".join(head).encode("utf-8") + headers[:HEADERS_RETURNED] + tail


def _status_fields(hostname: str, queue_id: str, arrival: float, failures: list[Failure]) -> str:
    arrived = format_datetime(datetime.fromtimestamp(arrival, UTC))
    out = [f"Reporting-MTA: dns; {hostname}", f"X-Mailstandby-Queue-ID: {queue_id}", f"Arrival-Date: {arrived}", ""]
    for f in failures:
        status = f.reply.status if f.reply.status.startswith("5") else "5" + f.reply.status[1:]
        if f.expired:
            status = "4.4.7"
        out += [
            f"Final-Recipient: rfc822; {_clean(f.rcpt)}",
            "Action: failed",
            f"Status: {status or '5.0.0'}",
            f"Diagnostic-Code: smtp; {f.reply.code} {_clean(f.reply.status)} {_clean(f.reply.text)}",
            "",
        ]
    return "\r\n".join(out)
