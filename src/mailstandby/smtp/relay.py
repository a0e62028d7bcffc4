"""The client side towards the primary over SMTP, through aiosmtplib (LMTP: lmtp.py).

`send()` returns one Reply per recipient, never raises for a delivery
problem: anything the primary did not clearly accept or clearly refuse
(connection refused, timeout, a reply we cannot parse, a dropped
connection after the final dot) comes back as a 4xx reply, so the message
stays queued. Unknown means temporary.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import aiosmtplib

from mailstandby.config import PrimarySettings
from mailstandby.core.reply import Reply
from mailstandby.smtp.codec import dsn_mail_params, dsn_rcpt_params

log = logging.getLogger(__name__)

ACCEPTED = Reply(250, "2.0.0", "Ok")


def parse_reply_text(code: int, message: str, default_status: str) -> Reply:
    """A Reply from a reply's code and text, taking the enhanced status from the text when present."""
    text = " ".join(message.split())[:300]
    first, _, rest = text.partition(" ")
    if first.count(".") == 2 and first[:1] in "245":
        return Reply(code, first, rest)
    return Reply(code, default_status, text)


def temporary(why: str) -> Reply:
    return Reply(451, "4.4.1", f"primary unreachable or unclear: {why}"[:300])


@dataclass(frozen=True, slots=True)
class DsnRequest:
    """What the sender asked (RFC 3461), passed on to a next hop that advertises DSN (§5.2.1): that hop
    then owns the reporting. A hop without DSN gets none of it (§5.2.2: we report `relayed`)."""

    ret: str = ""  # "FULL", "HDRS" or ""
    envid: str = ""  # decoded; xtext-encoded again on the wire
    notify: Mapping[str, str] = field(default_factory=dict)  # rcpt -> NOTIFY as stored ("" or absent: unset)
    orcpt: Mapping[str, str] = field(default_factory=dict)  # rcpt -> "type;address" (absent: unset)

    def mail_params(self) -> list[str]:
        return dsn_mail_params(self.ret, self.envid)

    def rcpt_params(self, rcpt: str) -> list[str]:
        return dsn_rcpt_params(self.notify.get(rcpt, ""), self.orcpt.get(rcpt, ""))


class DataUnanswered(Exception):
    """The connection failed after DATA was accepted: the primary may have the message (RFC 5321 §6.1)."""


UNANSWERED = "no reply to the end of data (the primary may have taken it; a retry can duplicate it)"


class RelayConnection:
    """One open session with the primary; reusable for several messages."""

    def __init__(self, settings: PrimarySettings, hostname: str) -> None:
        self.settings = settings
        self.hostname = settings.helo_name or hostname
        tls_context = None
        if settings.tls != "none":
            tls_context = ssl.create_default_context()
            if not settings.tls_verify:
                tls_context.check_hostname = False
                tls_context.verify_mode = ssl.CERT_NONE
        username = getattr(settings, "username", None)  # a smarthost may want SMTP AUTH
        password_file = getattr(settings, "password_file", None)
        password = password_file.read_text(encoding="utf-8").strip() if username and password_file else None
        self.client = aiosmtplib.SMTP(
            username=username,
            password=password,
            hostname=settings.host,
            port=settings.port,
            local_hostname=self.hostname,
            timeout=settings.command_timeout,
            start_tls={"none": False, "starttls": None, "required": True}[settings.tls],
            validate_certs=settings.tls_verify,
            tls_context=tls_context,
        )
        self.sent = 0
        self._passed_dsn = False

    @property
    def usable(self) -> bool:
        return self.client.is_connected

    @property
    def passed_dsn(self) -> bool:
        """The last `send` passed the sender's DSN request on (the peer advertised DSN, RFC 3461 §5.2.1)."""
        return self._passed_dsn

    async def open(self) -> None:
        """Connect and EHLO (STARTTLS as configured). On any failure, cancellation included, the
        connection is closed when this raises."""
        try:
            await self.client.connect(timeout=self.settings.connect_timeout)
            await self.client.ehlo()
            if self.settings.tls == "required" and self.client.get_transport_info("sslcontext") is None:
                raise aiosmtplib.SMTPException("TLS required but the primary did not offer STARTTLS")
        except BaseException:
            self.client.close()
            raise

    async def close(self) -> None:
        try:
            if self.client.is_connected:
                await self.client.quit(timeout=5)
        except aiosmtplib.SMTPException:
            pass
        finally:
            self.client.close()

    def abort(self) -> None:
        self.client.close()

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
        """One transaction; a Reply for each recipient."""
        try:
            return await self._transaction(sender, recipients, body, smtputf8=smtputf8, eight_bit=eight_bit, dsn=dsn)
        except aiosmtplib.SMTPResponseException as e:
            if not 400 <= e.code < 600:  # a reply out of turn, or unparseable (-1): the session is out of step
                self.client.close()
                return dict.fromkeys(recipients, temporary(f"unexpected reply {e.code}"))
            reply = parse_reply_text(e.code, e.message, "4.4.2" if e.code < 500 else "5.0.0")
            if reply.code == 421:
                self.client.close()
            return dict.fromkeys(recipients, reply)
        except DataUnanswered as e:
            self.client.close()
            cause = e.__cause__
            return dict.fromkeys(recipients, temporary(f"{UNANSWERED}: {type(cause).__name__}: {cause}"))
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError, ValueError) as e:
            self.client.close()
            return dict.fromkeys(recipients, temporary(type(e).__name__ + ": " + str(e)))

    def _mail_options(self, size: int, *, smtputf8: bool, eight_bit: bool) -> list[str]:
        c = self.client
        options = ["SMTPUTF8"] if smtputf8 else []
        if eight_bit and c.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        if c.supports_extension("size"):
            options.append(f"SIZE={size}")
        return options

    async def _transaction(
        self,
        sender: str,
        recipients: list[str],
        body: bytes,
        *,
        smtputf8: bool,
        eight_bit: bool,
        dsn: DsnRequest | None,
    ) -> dict[str, Reply]:
        c = self.client
        self._passed_dsn = False
        if self.sent:
            try:
                await c.rset()
            except aiosmtplib.SMTPResponseException as e:  # about RSET, not about these recipients
                raise aiosmtplib.SMTPException(f"RSET answered {e.code}") from e
        self.sent += 1
        if smtputf8 and not c.supports_extension("smtputf8"):
            # RFC 6531 §3.4: never downgrade silently
            return dict.fromkeys(recipients, Reply(550, "5.6.7", "primary does not support SMTPUTF8"))
        if dsn is not None and not c.supports_extension("dsn"):
            dsn = None  # RFC 3461 §5.2.2: a hop without DSN is not sent the parameters
        options = self._mail_options(len(body), smtputf8=smtputf8, eight_bit=eight_bit)
        if dsn is not None:
            options += dsn.mail_params()
            self._passed_dsn = True
        encoding = "utf-8" if smtputf8 else "ascii"  # RFC 6531 addresses
        await c.mail(sender, options=options, encoding=encoding)
        results: dict[str, Reply] = {}
        accepted: list[str] = []
        for rcpt in recipients:
            try:
                await c.rcpt(rcpt, options=dsn.rcpt_params(rcpt) if dsn else None, encoding=encoding)
                accepted.append(rcpt)
            except aiosmtplib.SMTPRecipientRefused as e:
                if not 400 <= e.code < 600:  # e.g. an early reply meant for another command
                    raise
                results[rcpt] = parse_reply_text(e.code, e.message, "5.1.1" if e.code >= 500 else "4.2.0")
        if not accepted:
            return results
        try:
            resp = await c.data(body, timeout=self.settings.data_timeout)
        except aiosmtplib.SMTPDataError as e:
            if not 400 <= e.code < 600:  # e.g. 250 to DATA: the body was never sent
                raise
            failed = parse_reply_text(e.code, e.message, "4.0.0" if e.code < 500 else "5.0.0")
            return results | dict.fromkeys(accepted, failed)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError, TimeoutError) as e:
            raise DataUnanswered from e  # logged as such: the one place a duplicate can come from
        return results | dict.fromkeys(accepted, parse_reply_text(resp.code, resp.message, "2.0.0"))


class PrimaryConnection(Protocol):
    """What the queue runner needs from a connection to the primary (SMTP or LMTP)."""

    @property
    def usable(self) -> bool: ...

    @property
    def passed_dsn(self) -> bool:
        """Whether the last `send` passed the DSN request on (the peer advertised DSN): the next hop
        then reports success itself, and we send no `relayed` DSN for it."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def abort(self) -> None:
        """Drop the connection at once, nothing said (a send that failed or was cancelled midway)."""
        ...

    async def send(
        self,
        sender: str,
        recipients: list[str],
        body: bytes,
        *,
        smtputf8: bool,
        eight_bit: bool,
        dsn: DsnRequest | None = None,
    ) -> dict[str, Reply]: ...
