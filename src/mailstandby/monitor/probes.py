"""Probes of the primary: each says OK, FAILED or INCONCLUSIVE, with a detail and its latency.

- `tcp`: the port accepts a connection;
- `smtp`: banner 220, EHLO 250, QUIT — the MTA is really answering;
- `rcpt`: one session, `MAIL FROM:<>` then `RCPT TO` for a batch of addresses,
  RSET, the next batch, ..., QUIT (nothing is ever sent); SMTP or LMTP (LMTP
  asks the mailbox server itself). Each RCPT waits for a slot of a shared
  `Pacer`, so the primary never sees more than the configured rate. A mailbox
  that is unavailable (4.2.x / 5.2.x, or a bare 450/550) is FAILED (5xx) or
  SOFT_FAILED (4xx); an address the primary does not know (5.1.x) is
  INCONCLUSIVE — a configuration problem to report, not an outage;
- `end_to_end`: send a probe message through the primary, find it over IMAP
  within a deadline, delete it.

Failures are hard (FAILED: refused, reset, 5xx) or soft (SOFT_FAILED: timed
out, 4xx). A connection that is refused, reset or closed before its banner is
tried again at once, up to three times: a primary that turns away one
connection in two (at its connection limit, or behind a flaky balancer) still
takes mail, and only refusals in a row count.

Probes never raise: any error is an observation.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import logging
import ssl
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from mailstandby.core.reply import Reply
from mailstandby.monitor.health import Observation
from mailstandby.smtp.relay import parse_reply_text

log = logging.getLogger(__name__)

MAX_LINE = 4096
MAX_LINES = 100


@dataclass(frozen=True, slots=True)
class Result:
    seen: Observation
    detail: str
    latency: float


class DialogError(Exception):
    pass


class _Dialog:
    """A minimal SMTP/LMTP command-reply exchange (no pipelining, bounded replies)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def reply(self) -> Reply:
        lines: list[str] = []
        while len(lines) < MAX_LINES:
            raw = await self.reader.readline()
            if not raw:
                raise DialogError("connection closed")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if len(line) < 3 or not line[:3].isdigit():
                raise DialogError(f"not a reply: {line[:80]!r}")
            lines.append(line[4:])
            if line[3:4] != "-":
                return parse_reply_text(int(line[:3]), " ".join(lines), "")
        raise DialogError("reply too long")

    async def command(self, text: str) -> Reply:
        self.writer.write(text.encode() + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def close(self) -> None:
        try:
            self.writer.write(b"QUIT\r\n")
            await self.writer.drain()
        except (OSError, RuntimeError):
            pass
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()


CONNECT_ATTEMPTS = 3  # a refused/reset connection is tried again at once, up to this many times


def _soft(e: BaseException) -> bool:
    """Timeouts are soft failures (a slow or overloaded primary); refusals and resets are hard."""
    return isinstance(e, TimeoutError)


def _failure(e: BaseException) -> Observation:
    return Observation.SOFT_FAILED if _soft(e) else Observation.FAILED


def _by_code(reply: Reply) -> Observation:
    return Observation.SOFT_FAILED if 400 <= reply.code < 500 else Observation.FAILED


async def tcp(host: str, port: int, timeout: float) -> Result:
    started = time.monotonic()
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return Result(Observation.OK, "connected", time.monotonic() - started)
        except (OSError, TimeoutError) as e:
            if _soft(e) or attempt + 1 == CONNECT_ATTEMPTS:
                return Result(_failure(e), f"connect: {_why(e)}", time.monotonic() - started)
    raise AssertionError("unreachable")


async def _greeted(host: str, port: int, timeout: float) -> tuple[_Dialog, Reply]:
    """A connection and its banner; a refused, reset or silently closed connection is tried again once."""
    for attempt in range(CONNECT_ATTEMPTS):
        dialog = None
        try:
            async with asyncio.timeout(timeout):
                dialog = _Dialog(*await asyncio.open_connection(host, port, limit=MAX_LINE * 2))
                return dialog, await dialog.reply()
        except (OSError, DialogError) as e:
            if dialog is not None:
                await dialog.close()
            if attempt + 1 == CONNECT_ATTEMPTS:
                raise
            log.debug("probe connection to %s:%d failed (%s); trying again", host, port, _why(e))
        except BaseException:
            if dialog is not None:
                await dialog.close()
            raise
    raise AssertionError("unreachable")


async def smtp(host: str, port: int, helo: str, timeout: float, *, lmtp: bool = False) -> Result:
    """Banner and EHLO (LHLO for LMTP)."""
    started = time.monotonic()
    dialog = None
    verb = "LHLO" if lmtp else "EHLO"
    try:
        dialog, banner = await _greeted(host, port, timeout)
        async with asyncio.timeout(timeout):
            if banner.code != 220:
                return Result(_by_code(banner), f"banner {banner}", time.monotonic() - started)
            hello = await dialog.command(f"{verb} {helo}")
            if hello.code != 250:
                return Result(_by_code(hello), f"{verb} {hello}", time.monotonic() - started)
            return Result(Observation.OK, f"banner and {verb}", time.monotonic() - started)
    except (OSError, TimeoutError, DialogError) as e:
        return Result(_failure(e), _why(e), time.monotonic() - started)
    finally:
        if dialog is not None:
            await dialog.close()


def classify_rcpt(reply: Reply) -> Observation:
    """RFC 3463: X.1.x is about the address (unknown user), X.2.x about the mailbox (unavailable, full)."""
    if reply.code < 400:
        return Observation.OK
    if reply.status[2:4] == "1.":
        return Observation.INCONCLUSIVE
    if reply.status[2:4] == "2." or (not reply.status and reply.code in (450, 550)):
        return _by_code(reply)
    return Observation.INCONCLUSIVE  # 4.3.x, 4.4.x, 421, policy: the system probe speaks for those


class Pacer:
    """At most `rate` RCPT commands a second, shared by every address probe (a leaky bucket
    without burst: each command takes the next free slot `1 / rate` seconds after the last)."""

    def __init__(self, rate: float) -> None:
        self.spacing = 1.0 / rate
        self._next = 0.0
        self.sent = 0  # RCPT commands paced so far

    async def slot(self) -> None:
        now = time.monotonic()
        at = max(now, self._next)
        self._next = at + self.spacing
        self.sent += 1
        if at > now:
            await asyncio.sleep(at - now)


@dataclass(frozen=True, slots=True)
class Session:
    """What one RCPT session said: a result per address it reached, and whether it could talk at all."""

    results: dict[str, Result]
    failure: str = ""  # why the session ended early ("" when every address was asked)


async def rcpt(
    host: str,
    port: int,
    helo: str,
    addresses: Sequence[str],
    timeout: float,
    *,
    lmtp: bool = False,
    batch: int = 50,
    pacer: Pacer | None = None,
) -> Session:
    """One session: `batch` RCPTs per transaction, RSET between transactions, QUIT; nothing is sent.
    `timeout` bounds each command, not the session (a long rotation session is paced)."""
    results: dict[str, Result] = {}
    dialog = None
    try:
        dialog, banner = await _greeted(host, port, timeout)
        if banner.code != 220:
            raise DialogError(f"banner {banner}")
        if (hello := await _timed(dialog, f"{'LHLO' if lmtp else 'EHLO'} {helo}", timeout)).code != 250:
            raise DialogError(f"hello {hello}")
        for start in range(0, len(addresses), batch):
            if (mail := await _timed(dialog, "MAIL FROM:<>", timeout)).code != 250:
                raise DialogError(f"MAIL {mail}")
            for address in addresses[start : start + batch]:
                if pacer is not None:
                    await pacer.slot()
                t = time.monotonic()
                reply = await _timed(dialog, f"RCPT TO:<{address}>", timeout)
                results[address] = Result(classify_rcpt(reply), str(reply), time.monotonic() - t)
            await _timed(dialog, "RSET", timeout)
    except (OSError, TimeoutError, DialogError) as e:
        return Session(results, f"RCPT probe: {_why(e)}")
    finally:
        if dialog is not None:
            await dialog.close()
    return Session(results)


async def _timed(dialog: _Dialog, command: str, timeout: float) -> Reply:
    async with asyncio.timeout(timeout):
        return await dialog.command(command)


@dataclass(frozen=True, slots=True)
class EndToEnd:
    smtp_host: str
    smtp_port: int
    helo: str
    address: str
    password: str
    imap_host: str
    imap_port: int
    imap_tls_verify: bool
    deadline: float


async def end_to_end(p: EndToEnd, timeout: float) -> Result:
    """Send a probe message through the primary; OK when it is found over IMAP (then deleted)."""
    started = time.monotonic()
    token = uuid.uuid4().hex
    msg = EmailMessage()
    msg["From"] = msg["To"] = p.address
    msg["Subject"] = "mailstandby end-to-end probe"
    msg["Date"] = format_datetime(datetime.now().astimezone())
    msg["Message-ID"] = make_msgid("probe")
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Mailstandby-Probe"] = token
    msg.set_content("This message checks that mail reaches this mailbox. It deletes itself.\n")
    dialog = None
    try:
        async with asyncio.timeout(timeout):
            dialog = _Dialog(*await asyncio.open_connection(p.smtp_host, p.smtp_port, limit=MAX_LINE * 2))
            for step, want in (("", 220), (f"EHLO {p.helo}", 250), ("MAIL FROM:<>", 250)):
                reply = await (dialog.command(step) if step else dialog.reply())
                if reply.code != want:
                    return Result(Observation.FAILED, f"probe send: {reply}", time.monotonic() - started)
            for step, want in ((f"RCPT TO:<{p.address}>", 250), ("DATA", 354)):
                if (reply := await dialog.command(step)).code != want:
                    return Result(Observation.FAILED, f"probe send: {reply}", time.monotonic() - started)
            data = msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n").replace(b"\r\n.", b"\r\n..")
            dialog.writer.write(data + b"\r\n.\r\n")
            if (reply := await dialog.reply()).code != 250:
                return Result(Observation.FAILED, f"probe send: {reply}", time.monotonic() - started)
    except (OSError, TimeoutError, DialogError) as e:
        return Result(_failure(e), f"probe send: {_why(e)}", time.monotonic() - started)
    finally:
        if dialog is not None:
            await dialog.close()
    try:
        found = await asyncio.to_thread(_find_and_delete, p, token)
    except (OSError, imaplib.IMAP4.error, ssl.SSLError, TimeoutError) as e:
        return Result(_failure(e), f"probe read: {_why(e)}", time.monotonic() - started)
    if not found:
        return Result(
            Observation.SOFT_FAILED, f"probe not delivered within {p.deadline:.0f}s", time.monotonic() - started
        )
    return Result(Observation.OK, "probe delivered and read back", time.monotonic() - started)


def _find_and_delete(p: EndToEnd, token: str) -> bool:
    context = ssl.create_default_context()
    if not p.imap_tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if p.imap_port == 993:
        imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(p.imap_host, p.imap_port, ssl_context=context, timeout=10)
    else:
        imap = imaplib.IMAP4(p.imap_host, p.imap_port, timeout=10)
        if "STARTTLS" in imap.capabilities:
            imap.starttls(context)
    try:
        imap.login(p.address, p.password)
        imap.select("INBOX")
        end = time.monotonic() + p.deadline
        while True:
            typ, data = imap.uid("SEARCH", "HEADER", "X-Mailstandby-Probe", token)
            uids = data[0].split() if typ == "OK" and data and data[0] else []
            if uids:
                # This round's probe and any left from rounds that timed out (delivered late).
                typ, data = imap.uid("SEARCH", "HEADER", "X-Mailstandby-Probe", '""')
                stale = data[0].split() if typ == "OK" and data and data[0] else []
                imap.uid("STORE", b",".join(sorted(set(uids + stale))).decode(), "+FLAGS.SILENT", "(\\Deleted)")
                imap.expunge()
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.5)
            imap.noop()
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            imap.logout()


def _why(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timed out"
    return f"{type(e).__name__}: {e}"[:200]
