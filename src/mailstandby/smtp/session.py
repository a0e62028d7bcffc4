"""One SMTP conversation (RFC 5321 with RFC 1870, 2920, 3207, 6152, 6531, 2034).

The session owns the protocol state and nothing else: bytes come and go
through a `SessionIO`, recipients are judged and messages committed by an
`Intake`. Every command gets exactly one reply (RFC 5321 §4.2); commands are
dispatched through one table that also says in which states each is allowed.
Abuse (too many errors, junk commands, pipelining before the 354, HTTP on
the SMTP port) ends the session with a 421/554/221 reply.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from enum import Enum, auto
from typing import Protocol

from mailstandby.auth import Authenticator, is_loopback
from mailstandby.config import SMTPSettings
from mailstandby.core.events import Event
from mailstandby.core.model import Address, Envelope, new_queue_id
from mailstandby.core.reply import CloseSession, Rejected, Reply
from mailstandby.limits import MemoryBudget
from mailstandby.ratelimit import ClientRates
from mailstandby.smtp import codes, sasl, transaction
from mailstandby.smtp.codec import Command, ehlo_keywords, helo_argument, no_argument, parse_command, valid_helo_name
from mailstandby.smtp.transaction import Transaction
from mailstandby.transport import ConnectionClosed, LineTooLong, Reservation

log = logging.getLogger(__name__)
TRACE = 5


class SessionIO(Protocol):
    peer: tuple[str, int]
    tls_active: bool

    async def read_line(self, limit: int, timeout: float) -> bytes: ...
    async def read_data(self, limit: int, timeout: float, reservation: Reservation | None = None) -> bytes: ...
    async def read_exact(self, n: int, timeout: float) -> bytes: ...
    async def discard_exact(self, n: int, timeout: float) -> None: ...
    async def input_within(self, timeout: float) -> bool: ...
    def write(self, data: bytes) -> None: ...
    async def flush(self) -> None: ...
    def has_buffered_input(self) -> bool: ...
    async def start_tls(self, context: ssl.SSLContext, timeout: float) -> None: ...


class Intake(Protocol):
    """Acceptance policy and durable commit, as the session needs them."""

    def check_space(self, size: int = 0) -> None:
        """Raise Rejected(452 4.3.1) when the store cannot take `size` more bytes of mail."""
        ...

    def check_sender(self, sender: str, user: str | None) -> None:
        """Raise Rejected when `user` (None: not authenticated) may not send as `sender`."""
        ...

    async def check_recipient(self, address: Address) -> None:
        """Raise Rejected (550 5.1.1 unknown user, 554 5.7.1 relay denied) or return."""
        ...

    async def commit(self, queue_id: str, envelope: Envelope, trace: bytes, message: bytes) -> None:
        """Durably store `trace + message`; raise Rejected(451/452/552) on failure."""
        ...


def _rfc5322_now() -> str:
    """The current time as an RFC 5322 date, formatted at most once a second."""
    second = int(time.time())
    if _date_cache[0] != second:
        _date_cache[:] = [second, format_datetime(datetime.fromtimestamp(second, UTC).astimezone())]
    return str(_date_cache[1])


_date_cache: list[int | str] = [0, ""]


@dataclass(frozen=True, slots=True)
class Login:
    """How a submission session authenticates users (RFC 4954)."""

    authenticator: Authenticator
    allow_plaintext_on_loopback: bool = False


class State(Enum):
    CONNECTED = auto()  # banner sent, no EHLO yet
    GREETED = auto()  # EHLO/HELO done, no transaction
    MAIL = auto()  # MAIL accepted
    RCPT = auto()  # at least one RCPT accepted


ANY = frozenset(State)
GREETED_UP = frozenset({State.GREETED, State.MAIL, State.RCPT})

_FORBIDDEN = {"CONNECT", "GET", "POST", "HEAD", "PUT"}  # HTTP to the SMTP port: cross-protocol abuse
_JUNK = {"NOOP", "RSET", "VRFY", "HELP"}


class Session:
    """Serves one connection until QUIT, abuse, timeout or shutdown."""

    def __init__(
        self,
        io: SessionIO,
        intake: Intake,
        settings: SMTPSettings,
        *,
        hostname: str,
        tls_context: ssl.SSLContext | None,
        sid: str = "",
        login: Login | None = None,
        data_budget: MemoryBudget | None = None,
        rates: ClientRates | None = None,
    ) -> None:
        self.io = io
        self.rates = rates or ClientRates.unlimited()  # per-client message and recipient rates (anvil)
        self.data_budget = data_budget  # message data all sessions of the listener hold at once
        self.login = login  # set on submission listeners: AUTH offered, and required for MAIL
        self.user: str | None = None
        self.intake = intake
        self.settings = settings
        self.hostname = hostname
        self.tls_context = tls_context
        self.sid = sid or new_queue_id()
        self.log = logging.LoggerAdapter(log, {"sid": self.sid, "peer": io.peer[0]})
        self.state = State.CONNECTED
        self.helo = ""
        self.esmtp = False
        self.tx: Transaction | None = None
        self.errors = 0
        self.junk = 0
        self.closing = False
        self.busy = False  # inside DATA or a commit: shutdown waits for it

    # -- the loop --------------------------------------------------------------
    async def run(self) -> None:
        try:
            await self._serve()
        finally:
            if self.tx is not None:
                self.tx.release()

    async def _serve(self) -> None:
        if await self.io.input_within(self.settings.greet_wait):  # postscreen pregreet: talked first
            self.log.info("%s: input before the greeting", Event.SMTP_SESSION_ABUSE)
            self.reply(codes.C521_PREGREET)
            await self.io.flush()
            return
        self.reply(codes.greeting(self.hostname))
        while not self.closing:
            try:
                await self.step()
            except CloseSession as c:
                self.log.info("%s: %s %s", Event.SMTP_SESSION_ABUSE, c.reply, c.detail)
                self.reply(c.reply)
                self.closing = True
            except ConnectionClosed:
                return
            except TimeoutError:
                self.reply(codes.C421_TIMEOUT)
                self.closing = True
        await self.io.flush()

    # -- the transaction's state (its commands are in smtp/transaction.py) -------------
    def begin(self, tx: Transaction) -> None:
        self.tx, self.state = tx, State.MAIL

    def in_transaction_with_recipients(self) -> None:
        self.state = State.RCPT

    def end_transaction(self) -> None:
        """Forget the transaction (RSET, EHLO, STARTTLS, end of data); its buffered chunks are freed."""
        if self.tx is not None:
            self.tx.release()
        self.tx = None
        if self.state is not State.CONNECTED:
            self.state = State.GREETED

    async def step(self) -> None:
        """Read one command and answer it."""
        try:
            line = await self.io.read_line(self.settings.max_line_length, self.settings.command_timeout)
        except LineTooLong:
            self.reject(Rejected(codes.C500_LINE_TOO_LONG))
            return
        try:
            cmd = parse_command(line)
            if self.log.isEnabledFor(TRACE):
                self.log.log(TRACE, "C: %s", cmd.verb if cmd.verb == "AUTH" else line.rstrip())
            allowed, handler = COMMANDS.get(cmd.verb, (frozenset(), None))
            if handler is None:
                if cmd.verb in _FORBIDDEN:
                    raise CloseSession(codes.C221_FORBIDDEN_COMMAND)
                raise Rejected(codes.C502_NOT_IMPLEMENTED if cmd.verb in _KNOWN else codes.C500_UNKNOWN)
            if self.state not in allowed:
                raise Rejected(codes.C503_NEED_HELO if self.state is State.CONNECTED else codes.C503_NEED_MAIL)
            if cmd.verb in _JUNK:
                self.junk += 1
                if self.junk > self.settings.max_junk_commands:
                    raise CloseSession(codes.C421_TOO_MANY_ERRORS, detail="junk command limit")
            await handler(self, cmd)
        except CloseSession:
            raise
        except Rejected as r:
            self.reject(r)

    def reply(self, r: Reply) -> None:
        enhanced = self.esmtp  # RFC 2034; the banner and 354 carry no enhanced status
        self.io.write(r.wire(enhanced=enhanced))

    def reject(self, r: Rejected) -> None:
        self.log.log(
            logging.INFO if r.user_fault else logging.WARNING, "%s: %s %s", Event.SMTP_REJECTED, r.reply, r.detail
        )
        self.errors += 1
        if self.errors >= self.settings.max_errors:
            raise CloseSession(codes.C421_TOO_MANY_ERRORS, detail=f"{self.errors} errors")
        self.reply(r.reply)

    # -- commands -------------------------------------------------------------
    async def ehlo(self, cmd: Command) -> None:
        self._greet(cmd, esmtp=True)
        keywords = ehlo_keywords(
            max_size=self.settings.max_message_size,
            starttls=self.tls_context is not None and not self.io.tls_active,
        )
        if self.login is not None and self.user is None and self._auth_allowed():
            keywords.append("AUTH PLAIN LOGIN")
        self.reply(codes.ehlo(self.hostname, keywords))

    def _auth_allowed(self) -> bool:
        """No password in clear (RFC 4954 §4): TLS, or loopback when configured."""
        assert self.login is not None
        return self.io.tls_active or (self.login.allow_plaintext_on_loopback and is_loopback(self.io.peer[0]))

    async def auth(self, cmd: Command) -> None:
        """RFC 4954: AUTH PLAIN [initial-response] | AUTH LOGIN; passwords never logged."""
        if self.login is None:
            raise Rejected(codes.C502_NOT_IMPLEMENTED)
        if self.user is not None:
            raise Rejected(codes.C503_ALREADY_AUTHENTICATED)
        if self.tx is not None:
            raise Rejected(codes.C503_MAIL_IN_PROGRESS)
        mechanism, _, initial = cmd.arg.partition(" ")
        mechanism = mechanism.upper()
        if mechanism not in ("PLAIN", "LOGIN"):
            raise Rejected(codes.C504_AUTH_MECHANISM)
        if not self._auth_allowed():
            raise Rejected(codes.C538_ENCRYPTION_REQUIRED)
        if mechanism == "PLAIN":
            response = sasl.b64decode(initial) if initial and initial != "=" else b""
            if not initial:
                response = sasl.b64decode(await self._challenge(""))
            username, password = sasl.plain_credentials(response)
        else:
            first = initial or await self._challenge("VXNlcm5hbWU6")  # "Username:"
            username = sasl.text(sasl.b64decode(first))
            password = sasl.text(sasl.b64decode(await self._challenge("UGFzc3dvcmQ6")))  # "Password:"
        try:
            user = await self.login.authenticator.authenticate(
                username, password, peer=self.io.peer[0], protocol="submission"
            )
        except Exception:  # the check itself failed (store, hashing pool): temporary (RFC 4954 §6)
            self.log.exception("authentication check failed")
            raise Rejected(codes.C454_AUTH_TEMPORARY, user_fault=False) from None
        if user is None:
            raise Rejected(codes.C535_AUTH_FAILED, detail=f"for {username[:100]!r}")
        self.user = user
        self.reply(codes.C235_AUTH_OK)

    async def _challenge(self, text: str) -> str:
        self.reply(codes.challenge(text))
        line = await self.io.read_line(sasl.MAX_RESPONSE + 2, self.settings.command_timeout)
        return line.rstrip(b"\r\n").decode("ascii", "replace").strip()

    async def helo(self, cmd: Command) -> None:
        self._greet(cmd, esmtp=False)
        self.reply(codes.ehlo(self.hostname, []))

    def _greet(self, cmd: Command, *, esmtp: bool) -> None:
        name = helo_argument(cmd.arg)
        if self.settings.reject_invalid_helo_hostname and not valid_helo_name(name):
            raise Rejected(codes.C501_INVALID_HELO, detail=f"HELO {name[:100]!r}")
        self.helo = name
        self.esmtp = esmtp
        self.end_transaction()  # RFC 5321 §4.1.4: EHLO resets the transaction
        self.state = State.GREETED

    async def starttls(self, cmd: Command) -> None:
        no_argument(cmd)
        if self.io.tls_active:
            raise Rejected(codes.C503_TLS_ACTIVE)
        if self.tls_context is None:
            raise Rejected(codes.C454_TLS_UNAVAILABLE)
        if self.state in (State.MAIL, State.RCPT):
            raise Rejected(codes.C503_MAIL_IN_PROGRESS)
        self.reply(codes.C220_READY_TLS)
        await self.io.start_tls(
            self.tls_context, self.settings.command_timeout
        )  # drops plaintext pipelined behind STARTTLS
        # RFC 3207 §4.2: forget everything learned before TLS
        self.state, self.helo, self.esmtp, self.tx, self.user = State.CONNECTED, "", False, None, None

    def trace_header(self, queue_id: str, envelope: Envelope) -> bytes:
        """The Received header (RFC 5321 §4.4, protocol names from RFC 3848)."""
        proto = ("UTF8SMTP" if envelope.smtputf8 else "ESMTP") if self.esmtp else "SMTP"
        if self.io.tls_active:
            proto += "S"
        if self.user is not None:
            proto += "A"  # RFC 3848: ESMTPA / ESMTPSA
        recipient = f"\r\n\tfor <{envelope.recipients[0]}>" if len(envelope.recipients) == 1 else ""
        # the client's name goes into a header we add: printable only, ASCII unless SMTPUTF8 (RFC 6531 §3.7.3)
        helo = "".join(
            c if c.isprintable() and (c.isascii() or envelope.smtputf8) else "?" for c in self.helo if c not in "()"
        )[:255]
        now = _rfc5322_now()
        text = (
            f"Received: from {helo} ([{self.io.peer[0]}])\r\n\tby {self.hostname} (mailstandby)"
            f" with {proto} id {queue_id}{recipient};\r\n\t{now}\r\n"
        )
        return text.encode("utf-8")

    async def rset(self, cmd: Command) -> None:
        no_argument(cmd)  # RFC 5321 §4.1.1.5: `rset = "RSET" CRLF`
        self.end_transaction()
        self.reply(codes.C250_RESET)

    async def noop(self, cmd: Command) -> None:
        self.reply(codes.C250_OK)

    async def vrfy(self, cmd: Command) -> None:
        if not cmd.arg:
            raise Rejected(codes.C501_SYNTAX)
        self.reply(codes.C252_CANNOT_VRFY)

    async def help(self, cmd: Command) -> None:
        self.reply(codes.C214_HELP)

    async def quit(self, cmd: Command) -> None:
        # RFC 5321 §4.1.1.10 has no argument; like Postfix, a client that says goodbye is let go anyway
        self.reply(codes.C221_BYE)
        self.closing = True


Handler = Callable[[Session, Command], Awaitable[None]]

COMMANDS: dict[str, tuple[frozenset[State], Handler]] = {
    "EHLO": (ANY, Session.ehlo),
    "HELO": (ANY, Session.helo),
    "STARTTLS": (ANY, Session.starttls),
    "MAIL": (GREETED_UP, transaction.mail),
    "RCPT": (GREETED_UP, transaction.rcpt),
    "DATA": (GREETED_UP, transaction.data),
    "BDAT": (ANY, transaction.bdat),  # its chunk is read even when refused (RFC 3030 §2)
    "RSET": (ANY, Session.rset),
    "NOOP": (ANY, Session.noop),
    "VRFY": (ANY, Session.vrfy),
    "HELP": (ANY, Session.help),
    "QUIT": (ANY, Session.quit),
    "AUTH": (GREETED_UP, Session.auth),
}
_KNOWN = {"EXPN", "TURN", "ETRN", "ATRN", "SEND", "SOML", "SAML"}
