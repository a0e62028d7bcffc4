"""RFC 3464 delivery status notifications for permanent failures.

A DSN is sent with the null reverse-path and never in answer to a message
that itself had a null reverse-path (RFC 5321 §4.5.5, §6.1), so bounces can
never loop. Everything taken from the failed message is encoded, never pasted
into our headers (no header injection).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
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
    """The complete DSN message (headers and body), CRLF line endings."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"Mail Delivery System <{bounce_from}@{hostname}>"
    msg["To"] = sender
    msg["Subject"] = "Undelivered Mail Returned to Sender"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=hostname)
    msg["Auto-Submitted"] = "auto-replied"  # RFC 3834
    lines = [
        f"This is the mail system at host {hostname}.",
        "",
        "I'm sorry to have to inform you that your message could not",
        "be delivered to one or more recipients. It's attached below.",
        "",
    ]
    for f in failures:
        why = "delivery time expired" if f.expired else "permanent failure"
        lines.append(f"<{_clean(f.rcpt)}>: {why}: {_clean(str(f.reply))}")
    msg.set_content("\r\n".join(lines) + "\r\n")
    msg.make_mixed()
    msg.replace_header("Content-Type", "multipart/report; report-type=delivery-status")
    status = EmailMessage(policy=SMTP)
    status.set_payload(_status_fields(hostname, queue_id, arrival, failures))
    status["Content-Type"] = "message/delivery-status"
    status["Content-Description"] = "Delivery report"
    msg.attach(status)
    headers_end = original.find(b"\r\n\r\n")
    headers = original if headers_end < 0 else original[: headers_end + 2]
    part = EmailMessage(policy=SMTP)
    part.set_payload(headers[:HEADERS_RETURNED].decode("utf-8", "replace"))
    part["Content-Type"] = "text/rfc822-headers"
    part["Content-Description"] = "Undelivered Message Headers"
    msg.attach(part)
    return msg.as_bytes()


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
