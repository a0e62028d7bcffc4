"""Probes of the primary: each says OK, FAILED or INCONCLUSIVE, with a detail and its latency.

- `tcp`: the port accepts a connection;
- `smtp`: banner 220, EHLO 250, QUIT — the MTA is really answering;
- `rcpt`: `MAIL FROM:<>` then `RCPT TO` for each watched address, then RSET and
  QUIT; SMTP or LMTP (LMTP asks the mailbox server itself). A mailbox that is
  unavailable (4.2.x / 5.2.x, or a bare 450/550) is FAILED; an address the
  primary does not know (5.1.x) is INCONCLUSIVE — a configuration problem to
  report, not an outage;
- `end_to_end`: send a probe message through the primary, find it over IMAP
  within a deadline, delete it.

Probes never raise: any error is an observation.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
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


async def tcp(host: str, port: int, timeout: float) -> Result:
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
        writer.close()
        return Result(Observation.OK, "connected", time.monotonic() - started)
    except (OSError, TimeoutError) as e:
        return Result(Observation.FAILED, f"connect: {_why(e)}", time.monotonic() - started)


async def smtp(host: str, port: int, helo: str, timeout: float, *, lmtp: bool = False) -> Result:
    """Banner and EHLO (LHLO for LMTP)."""
    started = time.monotonic()
    dialog = None
    try:
        async with asyncio.timeout(timeout):
            dialog = _Dialog(*await asyncio.open_connection(host, port, limit=MAX_LINE * 2))
            banner = await dialog.reply()
            if banner.code != 220:
                return Result(Observation.FAILED, f"banner {banner}", time.monotonic() - started)
            hello = await dialog.command(f"{'LHLO' if lmtp else 'EHLO'} {helo}")
            if hello.code != 250:
                return Result(Observation.FAILED, f"{'LHLO' if lmtp else 'EHLO'} {hello}", time.monotonic() - started)
            return Result(Observation.OK, "banner and EHLO", time.monotonic() - started)
    except (OSError, TimeoutError, DialogError) as e:
        return Result(Observation.FAILED, _why(e), time.monotonic() - started)
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
        return Observation.FAILED
    return Observation.INCONCLUSIVE  # 4.3.x, 4.4.x, 421, policy: the system probe speaks for those


async def rcpt(
    host: str, port: int, helo: str, addresses: Sequence[str], timeout: float, *, lmtp: bool = False
) -> dict[str, Result]:
    """One session, one RCPT per watched address; the transaction is reset, nothing is sent."""
    started = time.monotonic()
    results: dict[str, Result] = {}
    dialog = None
    try:
        async with asyncio.timeout(timeout):
            dialog = _Dialog(*await asyncio.open_connection(host, port, limit=MAX_LINE * 2))
            if (banner := await dialog.reply()).code != 220:
                raise DialogError(f"banner {banner}")
            if (hello := await dialog.command(f"{'LHLO' if lmtp else 'EHLO'} {helo}")).code != 250:
                raise DialogError(f"hello {hello}")
            if (mail := await dialog.command("MAIL FROM:<>")).code != 250:
                raise DialogError(f"MAIL {mail}")
            for address in addresses:
                t = time.monotonic()
                reply = await dialog.command(f"RCPT TO:<{address}>")
                results[address] = Result(classify_rcpt(reply), str(reply), time.monotonic() - t)
            await dialog.command("RSET")
    except (OSError, TimeoutError, DialogError) as e:
        why = f"RCPT probe: {_why(e)}"
        for address in addresses:
            results.setdefault(address, Result(Observation.INCONCLUSIVE, why, time.monotonic() - started))
    finally:
        if dialog is not None:
            await dialog.close()
    return results


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
        return Result(Observation.FAILED, f"probe send: {_why(e)}", time.monotonic() - started)
    finally:
        if dialog is not None:
            await dialog.close()
    try:
        found = await asyncio.to_thread(_find_and_delete, p, token)
    except (OSError, imaplib.IMAP4.error, ssl.SSLError, TimeoutError) as e:
        return Result(Observation.FAILED, f"probe read: {_why(e)}", time.monotonic() - started)
    if not found:
        return Result(Observation.FAILED, f"probe not delivered within {p.deadline:.0f}s", time.monotonic() - started)
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
