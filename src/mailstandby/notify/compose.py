"""Pure building blocks: where a user can be reached, what templates see, and the messages sent.

Headers are built with `email.message.EmailMessage` from values (names and
addresses through `email.headerregistry`, encoded as needed): a value holding
CR or LF is flattened to one line first, so neither a template nor a
directory entry can add a header. Every message we generate carries
`Auto-Submitted: auto-generated` (RFC 3834), so auto-responders and our own
forwarder leave it alone.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, formatdate
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from mailstandby.config import NotifySettings
from mailstandby.directory.base import NoticeKind, User
from mailstandby.notify.htmltext import html_to_text

FORWARDED_HEADER = "X-Mailstandby-Forwarded"  # our hop counter on forwarded mail
MAX_SUMMARY_SOURCE = 1024 * 1024  # bytes of a message read for its summary (headers and the first text part)


class Mode(StrEnum):
    EMAIL = "email"  # an alternate address: full notice (text + HTML)
    SMS_EMAIL = "sms-email"  # a carrier email-to-SMS gateway: short text
    APPRISE = "apprise"  # an Apprise URL (SMS provider, push, chat, webhook): short text


@dataclass(frozen=True, slots=True)
class Destination:
    mode: Mode
    key: str  # stored: the address, or `url:` + a digest of the URL (URLs may hold secrets)
    target: str  # the address or the URL itself; never stored or logged for URLs

    @property
    def shown(self) -> str:
        return self.target if self.mode is not Mode.APPRISE else redact_url(self.target)


def url_key(url: str) -> str:
    return "url:" + hashlib.sha256(url.encode()).hexdigest()[:20]


def redact_url(url: str) -> str:
    """The service and the URL's digest: enough to tell destinations apart, without tokens or topics
    (many services keep the secret in the host part, e.g. ntfy://TOPIC, tgram://BOT_TOKEN)."""
    scheme = urlsplit(url).scheme
    return f"{scheme or 'url'}://… ({url_key(url)})"


def destinations(user: User) -> list[Destination]:
    """Every distinct way to reach `user` outside the primary, in profile order."""
    found: dict[tuple[Mode, str], Destination] = {}
    for a in user.alternates:
        found.setdefault((Mode.EMAIL, a.lower()), Destination(Mode.EMAIL, a, a))
    for d in user.devices:
        if d.sms_gateway:
            found.setdefault(
                (Mode.SMS_EMAIL, d.sms_gateway.lower()), Destination(Mode.SMS_EMAIL, d.sms_gateway, d.sms_gateway)
            )
    for url in (*user.notify_urls, *(d.push_url for d in user.devices if d.push_url)):
        key = url_key(url)
        found.setdefault((Mode.APPRISE, key), Destination(Mode.APPRISE, key, url))
    return list(found.values())


def in_quiet_hours(quiet: tuple[int, int] | None, now: float) -> float | None:
    """When the user's quiet hours (standby local time) end, if `now` is inside them; else None."""
    if quiet is None or quiet[0] == quiet[1]:
        return None
    start, end = quiet
    t = time.localtime(now)
    hour = t.tm_hour
    inside = start <= hour < end if start < end else (hour >= start or hour < end)
    if not inside:
        return None
    days = 1 if hour >= end else 0
    base = time.mktime((t.tm_year, t.tm_mon, t.tm_mday + days, end, 0, 0, 0, 0, -1))
    return base


# -- what templates see ------------------------------------------------------------------


def _security_text(security: str) -> str:
    return "SSL/TLS" if security == "ssl" else "STARTTLS"


def standby_info(settings: NotifySettings, hostname: str) -> dict[str, Any]:
    def service(port: int, security: str) -> dict[str, Any]:
        return {"port": port, "security": security, "security_text": _security_text(security)}

    return {
        "host": settings.public_host or hostname,
        "imap": service(settings.imap_port, settings.imap_security),
        "pop3": service(settings.pop3_port, settings.pop3_security),
        "submission": service(settings.submission_port, settings.submission_security),
    }


def notice_context(
    user: User,
    kind: str,
    occurrence: str,
    settings: NotifySettings,
    hostname: str,
    *,
    setup_url: str = "",
    setup_expires: float | None = None,
    has_password: bool = False,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    name = user.display_name or user.address.partition("@")[0]
    expires = format_datetime(datetime.fromtimestamp(setup_expires).astimezone()) if setup_expires else ""
    return {
        "user": {"address": user.address, "display_name": user.display_name, "name": name},
        "kind": kind,
        "occurrence": occurrence,
        "organization": settings.organization,
        "standby": standby_info(settings, hostname),
        "setup_url": setup_url,
        "setup_expires": expires,
        "has_password": has_password,
        "message": {"sender": "", "subject": "", "excerpt": ""},
        "code": "",
        "code_minutes": int(settings.code_lifetime // 60),
        **(extra or {}),
    }


def sample_context(settings: NotifySettings, hostname: str) -> dict[str, Any]:
    """A context with every variable set, for checking templates."""
    user = User("jane.doe@example.test", display_name="Jane Doe", alternates=("jane@home.example",))
    return notice_context(
        user,
        NoticeKind.FAILOVER.value,
        "failover-1",
        settings,
        hostname,
        setup_url=(settings.setup_url or "https://standby.example.test") + "/setup/SAMPLE-TOKEN",
        setup_expires=time.time() + settings.link_lifetime,
        has_password=False,
        extra={
            "message": {"sender": "sender@example.test", "subject": "Quarterly figures", "excerpt": "Hi Jane, ..."},
            "code": "123456",
        },
    )


# -- messages ------------------------------------------------------------------------------


def one_line(value: str, limit: int = 900) -> str:
    """A header value: control characters and line breaks become spaces, and `=?` is broken up.

    The email package decodes RFC 2047 encoded words in the values it is given, so
    `=?UTF-8?Q?=0A?=Bcc: x` would come back out as a line break and a real header
    on this Python (CPython gh-121650, RELIABILITY P8): no value of ours may hold one."""
    flat = " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", value).split())[:limit]
    return flat.replace("=?", "= ?")


def _from(sender: str, organization: str) -> HeaderAddress:
    local, _, domain = sender.rpartition("@")
    return HeaderAddress(display_name=one_line(organization or "Mail operations", 200), username=local, domain=domain)


def _base(sender: str, organization: str, to: str, subject: str, msgid: str) -> EmailMessage:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = _from(sender, organization)
    local, _, domain = to.rpartition("@")
    msg["To"] = HeaderAddress(username=one_line(local, 200), domain=one_line(domain, 200))
    msg["Subject"] = one_line(subject)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = msgid
    msg["Auto-Submitted"] = "auto-generated"
    return msg


def _checked(msg: EmailMessage) -> bytes:
    """The message's bytes, after making sure its header section holds exactly the headers we set."""
    raw = msg.as_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    names = [line.split(":", 1)[0].lower() for line in head.split("\r\n") if line and line[0] not in " \t"]
    if names != [k.lower() for k in msg]:
        raise ValueError("generated headers do not match the ones set (header injection?)")
    return raw


def notice_email(
    *, sender: str, organization: str, to: str, subject: str, text: str, html: str, msgid: str, kind: str
) -> bytes:
    """multipart/alternative: plain text first, HTML second (RFC 2046 §5.1.4)."""
    msg = _base(sender, organization, to, subject, msgid)
    msg["X-Mailstandby-Notice"] = one_line(kind, 40)
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return _checked(msg)


def short_email(*, sender: str, organization: str, to: str, subject: str, text: str, msgid: str, kind: str) -> bytes:
    """A plain-text message for an SMS gateway (or a summary to an alternate address)."""
    msg = _base(sender, organization, to, subject, msgid)
    msg["X-Mailstandby-Notice"] = one_line(kind, 40)
    msg.set_content(text)
    return _checked(msg)


def trace_headers(values: list[tuple[str, str]]) -> bytes:
    """Header lines (folded, encoded) to put in front of a message we resend."""
    msg = EmailMessage(policy=policy.SMTP.clone(max_line_length=998))  # one line each, as other MTAs' trace
    for name, value in values:
        msg[name] = one_line(value)
    head = msg.as_bytes()
    return head[: head.rindex(b"\r\n\r\n") + 2] if b"\r\n\r\n" in head else head


@dataclass(frozen=True, slots=True)
class Summary:
    sender: str
    subject: str
    excerpt: str


def summarize(raw: bytes, length: int) -> Summary:
    """From, Subject and the first `length` characters of the text (HTML stripped), all on one line.

    CPU-bound on attacker input (any sender's message): callers on the event loop run it in a
    worker thread. Bounded: only the first `MAX_SUMMARY_SOURCE` bytes of the message are parsed
    and the HTML step is linear with its own cap (`htmltext`)."""
    msg = BytesParser(policy=policy.default).parsebytes(raw[:MAX_SUMMARY_SOURCE])
    try:
        sender = one_line(str(msg.get("From", "")), 200)
        subject = one_line(str(msg.get("Subject", "")), 200)
    except Exception:  # a header the parser cannot make sense of
        sender, subject = "", ""
    text = ""
    try:
        part = msg.get_body(preferencelist=("plain", "html"))
        if part is not None:
            content = part.get_content()
            text = content if isinstance(content, str) else ""
            if part.get_content_subtype() == "html":
                text = html_to_text(text)
    except Exception:  # a best-effort excerpt: odd MIME never stops the summary (RELIABILITY P15)
        text = ""
    return Summary(sender or "(unknown sender)", subject or "(no subject)", one_line(text, length))
