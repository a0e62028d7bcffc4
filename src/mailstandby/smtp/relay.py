"""The client side towards the primary: SMTP or LMTP through aiosmtplib.

`send()` returns one Reply per recipient, never raises for a delivery
problem: anything the primary did not clearly accept or clearly refuse
(connection refused, timeout, a reply we cannot parse, a dropped
connection after the final dot) comes back as a 4xx reply, so the message
stays queued. Unknown means temporary.
"""

from __future__ import annotations

import logging
import ssl

import aiosmtplib

from mailstandby.config import PrimarySettings
from mailstandby.core.reply import Reply

log = logging.getLogger(__name__)

ACCEPTED = Reply(250, "2.0.0", "Ok")


def _reply(code: int, message: str, default_status: str) -> Reply:
    text = " ".join(message.split())[:300]
    first, _, rest = text.partition(" ")
    if first.count(".") == 2 and first[:1] in "245":
        return Reply(code, first, rest)
    return Reply(code, default_status, text)


def temporary(why: str) -> Reply:
    return Reply(451, "4.4.1", f"primary unreachable or unclear: {why}"[:300])


class RelayConnection:
    """One open session with the primary; reusable for several messages."""

    def __init__(self, settings: PrimarySettings, hostname: str) -> None:
        self.settings = settings
        self.hostname = settings.helo_name or hostname
        self.lmtp = settings.protocol == "lmtp"
        tls_context = None
        if settings.tls != "none":
            tls_context = ssl.create_default_context()
            if not settings.tls_verify:
                tls_context.check_hostname = False
                tls_context.verify_mode = ssl.CERT_NONE
        self.client = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            local_hostname=self.hostname,
            timeout=settings.command_timeout,
            start_tls={"none": False, "starttls": None, "required": True}[settings.tls],
            validate_certs=settings.tls_verify,
            tls_context=tls_context,
        )
        self.sent = 0

    @property
    def usable(self) -> bool:
        return self.client.is_connected

    async def open(self) -> None:
        await self.client.connect(timeout=self.settings.connect_timeout)
        if self.lmtp:
            resp = await self.client.execute_command(b"LHLO", self.hostname.encode())
            if resp.code != 250:
                raise aiosmtplib.SMTPHeloError(resp.code, resp.message)
            self.client.last_ehlo_response = resp
        else:
            await self.client.ehlo()
        if self.settings.tls == "required" and self.client.get_transport_info("sslcontext") is None:
            raise aiosmtplib.SMTPException("TLS required but the primary did not offer STARTTLS")

    async def close(self) -> None:
        try:
            if self.client.is_connected:
                await self.client.quit(timeout=5)
        except aiosmtplib.SMTPException:
            pass
        finally:
            self.client.close()

    async def send(
        self, sender: str, recipients: list[str], body: bytes, *, smtputf8: bool, eight_bit: bool
    ) -> dict[str, Reply]:
        """One transaction; a Reply for each recipient."""
        try:
            return await self._transaction(sender, recipients, body, smtputf8=smtputf8, eight_bit=eight_bit)
        except aiosmtplib.SMTPResponseException as e:
            reply = _reply(e.code, e.message, "4.4.2" if e.code < 500 else "5.0.0")
            if reply.code < 400 or reply.code >= 600:
                reply = temporary(f"unexpected reply {e.code}")
            if reply.code == 421:
                self.client.close()
            return dict.fromkeys(recipients, reply)
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError) as e:
            self.client.close()
            return dict.fromkeys(recipients, temporary(type(e).__name__ + ": " + str(e)))

    async def _transaction(
        self, sender: str, recipients: list[str], body: bytes, *, smtputf8: bool, eight_bit: bool
    ) -> dict[str, Reply]:
        c = self.client
        if self.sent:
            await c.rset()
        self.sent += 1
        options = []
        if smtputf8:
            if not c.supports_extension("smtputf8"):
                # RFC 6531 §3.4: never downgrade silently
                return dict.fromkeys(recipients, Reply(550, "5.6.7", "primary does not support SMTPUTF8"))
            options.append("SMTPUTF8")
        if eight_bit and c.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        if c.supports_extension("size"):
            options.append(f"SIZE={len(body)}")
        await c.mail(sender, options=options)
        results: dict[str, Reply] = {}
        accepted: list[str] = []
        for rcpt in recipients:
            try:
                await c.rcpt(rcpt)
                accepted.append(rcpt)
            except aiosmtplib.SMTPRecipientRefused as e:
                results[rcpt] = _reply(e.code, e.message, "5.1.1" if e.code >= 500 else "4.2.0")
        if not accepted:
            return results
        if self.lmtp:
            return results | await self._lmtp_data(accepted, body)
        try:
            resp = await c.data(body, timeout=self.settings.data_timeout)
        except aiosmtplib.SMTPDataError as e:
            failed = _reply(e.code, e.message, "4.0.0" if e.code < 500 else "5.0.0")
            return results | dict.fromkeys(accepted, failed)
        return results | dict.fromkeys(accepted, _reply(resp.code, resp.message, "2.0.0"))

    async def _lmtp_data(self, accepted: list[str], body: bytes) -> dict[str, Reply]:
        """RFC 2033 §4.2: one reply to the final dot per accepted recipient, in order."""
        results: dict[str, Reply] = {}
        try:
            resp = await self.client.data(body, timeout=self.settings.data_timeout)
            first = _reply(resp.code, resp.message, "2.0.0")
        except aiosmtplib.SMTPDataError as e:
            first = _reply(e.code, e.message, "4.0.0" if e.code < 500 else "5.0.0")
        results[accepted[0]] = first
        for rcpt in accepted[1:]:
            assert self.client.protocol is not None
            resp = await self.client.protocol.read_response(timeout=self.settings.data_timeout)
            results[rcpt] = _reply(resp.code, resp.message, "2.0.0" if resp.code < 300 else "4.0.0")
        return results
