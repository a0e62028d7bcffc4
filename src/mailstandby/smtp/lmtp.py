"""An LMTP client (RFC 2033) for delivering straight into a mailbox server.

Written here because aiosmtplib cannot read LMTP's per-recipient replies:
its protocol discards replies that arrive without an outstanding command, so
the second and later replies after the final dot would be lost. The rules
match `relay.RelayConnection`: every outcome is a per-recipient Reply,
anything unclear is a 4xx, replies are bounded in size and line count.
"""

from __future__ import annotations

import asyncio
import ssl

from mailstandby.config import PrimarySettings
from mailstandby.core.reply import Reply
from mailstandby.smtp.relay import UNANSWERED, DsnRequest, parse_reply_text, temporary

MAX_REPLY_LINES = 100
MAX_LINE = 4096


class ProtocolError(Exception):
    """The server said something that is not an LMTP reply."""


class LMTPConnection:
    def __init__(self, settings: PrimarySettings, hostname: str) -> None:
        self.settings = settings
        self.hostname = settings.helo_name or hostname
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.extensions: set[str] = set()
        self.sent = 0
        self._body_sent = False  # in the current transaction
        self._passed_dsn = False  # in the last transaction

    @property
    def usable(self) -> bool:
        return self.writer is not None and not self.writer.is_closing()

    @property
    def passed_dsn(self) -> bool:
        """The last `send` passed the DSN request on (LHLO advertised DSN; RFC 2033 §4.2, RFC 3461)."""
        return self._passed_dsn

    async def open(self) -> None:
        """Connect, LHLO, STARTTLS as configured. On any failure, cancellation included, the
        connection is gone when this raises (no transport left for the collector)."""
        try:
            await self._open()
        except BaseException:
            self.abort()
            raise

    async def _open(self) -> None:
        s = self.settings
        async with asyncio.timeout(s.connect_timeout):
            self.reader, self.writer = await asyncio.open_connection(s.host, s.port, limit=MAX_LINE * 2)
            code, _ = await self._read_reply()
            if code != 220:
                raise ProtocolError(f"greeting {code}")
            code, lines = await self._command(f"LHLO {self.hostname}")
            if code != 250:
                raise ProtocolError(f"LHLO answered {code}")
            self.extensions = {line.split(" ")[0].upper() for line in lines[1:]}
            if s.tls != "none" and "STARTTLS" in self.extensions:
                await self._starttls()
            elif s.tls == "required":
                raise ProtocolError("TLS required but the primary did not offer STARTTLS")

    async def _starttls(self) -> None:
        assert self.writer is not None
        code, _ = await self._command("STARTTLS")
        if code != 220:
            raise ProtocolError(f"STARTTLS answered {code}")
        ctx = ssl.create_default_context()
        if not self.settings.tls_verify:
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        await self.writer.start_tls(ctx, server_hostname=self.settings.host)
        code, lines = await self._command(f"LHLO {self.hostname}")
        if code != 250:
            raise ProtocolError(f"LHLO after STARTTLS answered {code}")
        self.extensions = {line.split(" ")[0].upper() for line in lines[1:]}

    async def close(self) -> None:
        if self.writer is None:
            return
        writer, self.writer = self.writer, None
        try:
            if not writer.is_closing():
                writer.write(b"QUIT\r\n")
                async with asyncio.timeout(2):
                    await self._read_reply()
        except (OSError, TimeoutError, ProtocolError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
            self.writer = None

    async def send(
        self,
        sender: str,
        recipients: list[str],
        body: bytes,
        *,
        smtputf8: bool,
        eight_bit: bool,
        dsn: DsnRequest | None = None,
    ) -> dict[str, Reply]:
        """One reply per recipient. When the session fails part-way through the replies after the
        final dot, the recipients already answered keep their answer (a 250 is a delivery: retrying
        it would deliver twice); only the others become temporary, marked as unanswered after DATA
        when the body had been sent (RFC 2033 §4.2, RFC 5321 §6.1)."""
        results: dict[str, Reply] = {}
        self._body_sent = self._passed_dsn = False
        if dsn is not None and "DSN" not in self.extensions:
            dsn = None  # RFC 3461 §5.2.2: a hop without DSN is not sent the parameters
        try:
            async with asyncio.timeout(self.settings.data_timeout + self.settings.command_timeout):
                return await self._transaction(
                    sender, recipients, body, results, smtputf8=smtputf8, eight_bit=eight_bit, dsn=dsn
                )
        except (OSError, TimeoutError, ProtocolError, asyncio.IncompleteReadError, ssl.SSLError) as e:
            await self.close()
            why = f"{type(e).__name__}: {e}"
            if self._body_sent:
                why = f"{UNANSWERED}: {why}"
            return {rcpt: results.get(rcpt) or temporary(why) for rcpt in recipients}

    async def _transaction(
        self,
        sender: str,
        recipients: list[str],
        body: bytes,
        results: dict[str, Reply],
        *,
        smtputf8: bool,
        eight_bit: bool,
        dsn: DsnRequest | None,
    ) -> dict[str, Reply]:
        """Fills `results` as the replies come, so that a failure part-way keeps what was answered."""
        if self.sent:
            code, _ = await self._command("RSET")
            if code != 250:
                raise ProtocolError(f"RSET answered {code}")
        self.sent += 1
        if smtputf8 and "SMTPUTF8" not in self.extensions:
            return dict.fromkeys(recipients, Reply(550, "5.6.7", "primary does not support SMTPUTF8"))
        params = ["SMTPUTF8"] if smtputf8 else []
        if eight_bit and "8BITMIME" in self.extensions:
            params.append("BODY=8BITMIME")
        if dsn is not None:
            params += dsn.mail_params()
            self._passed_dsn = True
        code, lines = await self._command(" ".join([f"MAIL FROM:<{sender}>", *params]))
        if code != 250:
            return dict.fromkeys(recipients, _refusal(code, lines))
        accepted = []
        for rcpt in recipients:
            code, lines = await self._command(" ".join([f"RCPT TO:<{rcpt}>", *(dsn.rcpt_params(rcpt) if dsn else [])]))
            if code == 250:
                accepted.append(rcpt)
            else:
                results[rcpt] = _refusal(code, lines)
        if not accepted:
            await self._command("RSET")
            self.sent = 0
            return results
        code, lines = await self._command("DATA")
        if code != 354:
            return results | dict.fromkeys(accepted, _refusal(code, lines))
        assert self.writer is not None
        self._body_sent = True  # from here on, a recipient without a reply may have been delivered
        self.writer.write(_dot_stuff(body) + b".\r\n")
        await self.writer.drain()
        for rcpt in accepted:  # RFC 2033 §4.2: one reply per accepted recipient, in order
            code, lines = await self._read_reply()
            if 300 <= code < 400:
                raise ProtocolError(f"reply {code} to the final dot")
            results[rcpt] = _as_reply(code, lines)
        return results

    async def _command(self, line: str) -> tuple[int, list[str]]:
        assert self.writer is not None
        self.writer.write(line.encode("utf-8") + b"\r\n")
        await self.writer.drain()
        async with asyncio.timeout(self.settings.command_timeout):
            return await self._read_reply()

    async def _read_reply(self) -> tuple[int, list[str]]:
        assert self.reader is not None
        lines: list[str] = []
        while len(lines) < MAX_REPLY_LINES:
            try:
                raw = await self.reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as e:
                raise ProtocolError("reply line too long") from e
            if len(raw) > MAX_LINE or len(raw) < 4 or not raw[:3].isdigit() or raw[3:4] not in (b" ", b"-", b"\r"):
                raise ProtocolError(f"malformed reply line {raw[:40]!r}")
            lines.append(raw[4:].decode("utf-8", "replace").strip())
            if raw[3:4] != b"-":
                code = int(raw[:3])
                if not 200 <= code < 600:
                    raise ProtocolError(f"reply code {code}")
                return code, lines
        raise ProtocolError("reply with too many lines")


def _refusal(code: int, lines: list[str]) -> Reply:
    """The reply to a command that was not accepted; anything but 4xx/5xx means the session is out of step."""
    if not 400 <= code < 600:
        raise ProtocolError(f"unexpected reply {code}")
    return _as_reply(code, lines)


def _as_reply(code: int, lines: list[str]) -> Reply:
    return parse_reply_text(code, " ".join(lines), "2.0.0" if code < 300 else ("4.0.0" if code < 500 else "5.0.0"))


def _dot_stuff(body: bytes) -> bytes:
    """RFC 5321 §4.5.2 transparency; the stored body is CRLF-only and ends with CRLF."""
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    if body.startswith(b"."):
        body = b"." + body
    return body.replace(b"\r\n.", b"\r\n..")
