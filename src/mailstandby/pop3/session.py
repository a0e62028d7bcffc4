"""One POP3 conversation (RFC 1939 with RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH, RFC 3206 codes).

States: AUTHORIZATION → TRANSACTION → UPDATE (RFC 1939 §3). Every command gets
exactly one response; commands go through one table that also says in which
states each is allowed.

Invariants:
- The maildrop is the INBOX snapshot taken at login: its message numbers,
  sizes and unique ids do not change during the session, and mail that
  arrives later is not shown until the next login (RFC 1939 §8).
- Nothing changes in the store before QUIT in TRANSACTION (the UPDATE state):
  DELE only marks, and a connection that drops, times out or is shut down
  deletes nothing (RFC 1939 §6, RELIABILITY D9). In UPDATE the DELE'd messages
  get \\Deleted through the store and exactly those UIDs are expunged, so IMAP
  sees the deletion and messages an IMAP client flagged are left alone.
- \\Seen: RETR marks the message \\Seen, applied with the deletions at QUIT
  (what Dovecot's pop3 does with its default pop3_no_flag_updates=no); TOP
  never does (it is a preview). A session without QUIT changes no flag either.
- The unique id (UIDL, RFC 1939 §7) is "<uidvalidity>.<uid>" of the INBOX:
  stable across sessions and restarts, never reused (RFC 3501 §2.3.1.1).
- Credentials are never accepted without TLS unless the peer is loopback and
  `allow_plaintext_auth_on_loopback` is set (RFC 2595 §2.2, RELIABILITY A1);
  USER answers the same for every name, and every failed login gets the same
  `-ERR [AUTH]` reply (A2). PASS and AUTH arguments are never logged.
- Bad commands (unknown, wrong state, bad syntax, overlong, NUL) and failed
  logins count; at `max_bad_commands` the session ends with -ERR.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Protocol

from mailstandby.auth import Authenticator, SessionSlots, is_loopback
from mailstandby.config import POP3Settings
from mailstandby.core.events import Event
from mailstandby.core.model import new_queue_id
from mailstandby.pop3 import codec, codes
from mailstandby.pop3.codec import Command
from mailstandby.pop3.codes import CommandError, Reply
from mailstandby.store.mailbox import FlagMode, MailboxError, MailboxStore, MessageMeta
from mailstandby.transport import LineTooLong

log = logging.getLogger(__name__)
TRACE = 5
INBOX = "INBOX"
FLUSH_AT = 256 * 1024  # flush queued replies past this much: pipelined RETRs must not pile up in memory
SECRET_KEYWORDS = frozenset({"PASS", "AUTH"})


class SessionIO(Protocol):
    peer: tuple[str, int]
    tls_active: bool

    async def read_line(self, limit: int, timeout: float) -> bytes: ...
    def write(self, data: bytes) -> None: ...
    async def flush(self) -> None: ...
    async def start_tls(self, context: ssl.SSLContext, timeout: float) -> None: ...


class State(Enum):
    AUTHORIZATION = auto()
    TRANSACTION = auto()
    UPDATE = auto()


@dataclass(slots=True)
class Maildrop:
    """The INBOX as it was at login, numbered from 1, with this session's marks."""

    uidvalidity: int
    messages: list[MessageMeta]
    deleted: set[int] = field(default_factory=set)  # message numbers marked by DELE
    retrieved: set[int] = field(default_factory=set)  # message numbers sent by RETR

    def get(self, number: int) -> MessageMeta:
        if not 1 <= number <= len(self.messages):
            raise CommandError(codes.ERR_NO_MESSAGE, bad=False)
        if number in self.deleted:
            raise CommandError(codes.ERR_ALREADY_DELETED, bad=False)
        return self.messages[number - 1]

    def live(self) -> list[tuple[int, MessageMeta]]:
        return [(n, m) for n, m in enumerate(self.messages, 1) if n not in self.deleted]

    def stat(self) -> tuple[int, int]:
        live = self.live()
        return len(live), sum(m.size for _, m in live)

    def unique_id(self, meta: MessageMeta) -> str:
        return f"{self.uidvalidity}.{meta.uid}"

    def uids(self, numbers: set[int]) -> list[int]:
        return [self.messages[n - 1].uid for n in sorted(numbers)]


def _printable(text: str, limit: int = 256) -> str:
    """Client text fit for one log line (RELIABILITY X9)."""
    return repr(text[:limit])


class Session:
    """Serves one connection until QUIT, too many bad commands, timeout or shutdown."""

    def __init__(
        self,
        io: SessionIO,
        store: MailboxStore,
        authenticator: Authenticator,
        settings: POP3Settings,
        *,
        hostname: str,
        tls_context: ssl.SSLContext | None,
        sid: str = "",
        slots: SessionSlots | None = None,
    ) -> None:
        self.io = io
        self.store = store
        self.authenticator = authenticator
        self.settings = settings
        self.hostname = hostname
        self.tls_context = tls_context
        self.slots = slots if slots is not None else SessionSlots(settings.max_connections_per_user)
        self.sid = sid or new_queue_id()
        self.log = logging.LoggerAdapter(log, {"sid": self.sid, "peer": io.peer[0]})
        self.state = State.AUTHORIZATION
        self.username: str | None = None  # from USER, until PASS
        self.user: str | None = None  # the canonical user once logged in
        self.maildrop: Maildrop | None = None
        self.bad = 0
        self.closing = False
        self.busy = False  # in UPDATE: shutdown waits for it
        self._slot: tuple[str, str] | None = None
        self._queued = 0

    # -- the loop --------------------------------------------------------------------
    async def run(self) -> None:
        self.send(codes.greeting(self.hostname).wire())
        try:
            while not self.closing:
                await self.step()
        except TimeoutError:
            self.log.info("%s: idle for %.0fs", Event.POP3_SESSION_ABUSE, self.settings.timeout)
            self.send(codes.ERR_TIMEOUT.wire())
        finally:
            self.end()
        await self.io.flush()

    def end(self) -> None:
        """Release what the session holds; safe to call twice."""
        if self._slot is not None:
            self.slots.release(self._slot)
            self._slot = None

    async def step(self) -> None:
        """Read one command and answer it."""
        if self._queued > FLUSH_AT:
            self._queued = 0
            await self.io.flush()
        try:
            line = await self.io.read_line(codec.MAX_LINE, self.settings.timeout)
        except LineTooLong:
            self.refuse(CommandError(codes.ERR_LINE_TOO_LONG))
            return
        try:
            cmd = codec.parse_command(line)
            self.trace(cmd, line)
            allowed, handler = COMMANDS.get(cmd.keyword, (frozenset(), None))
            if handler is None:
                raise CommandError(codes.ERR_UNKNOWN, detail=f"keyword {cmd.keyword}")
            if self.state not in allowed:
                raise CommandError(codes.ERR_BAD_STATE, detail=f"{cmd.keyword} in {self.state.name}")
            await handler(self, cmd)
        except CommandError as e:
            self.refuse(e)

    def trace(self, cmd: Command, line: bytes) -> None:
        if self.log.isEnabledFor(TRACE):
            shown = cmd.keyword if cmd.keyword in SECRET_KEYWORDS else line.rstrip(b"\r\n")
            self.log.log(TRACE, "C: %r", shown)

    def send(self, data: bytes) -> None:
        self.io.write(data)
        self._queued += len(data)

    def refuse(self, e: CommandError) -> None:
        self.log.info("%s: %s %s", Event.POP3_REJECTED, e.reply.wire().rstrip().decode(), e.detail)
        if e.bad:
            self.bad += 1
            if self.bad >= self.settings.max_bad_commands:
                self.log.info("%s: %d bad commands", Event.POP3_SESSION_ABUSE, self.bad)
                self.send(codes.ERR_TOO_MANY_BAD.wire())
                self.closing = True
                return
        self.send(e.reply.wire())

    # -- AUTHORIZATION ---------------------------------------------------------------
    @property
    def auth_allowed(self) -> bool:
        """RFC 2595 §2.2: credentials only under TLS (or on loopback when configured)."""
        if self.io.tls_active:
            return True
        return self.settings.allow_plaintext_auth_on_loopback and is_loopback(self.io.peer[0])

    def capabilities(self) -> list[str]:
        """RFC 2449 §5; the same list in AUTHORIZATION and TRANSACTION."""
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.auth_allowed:
            caps += ["USER", "SASL PLAIN"]
        if self.tls_context is not None and not self.io.tls_active:
            caps.append("STLS")
        caps.append("IMPLEMENTATION mailstandby")
        return caps

    async def capa(self, cmd: Command) -> None:
        codec.no_args(cmd)
        self.send(codec.multiline(codes.OK_CAPA, self.capabilities()))

    async def stls(self, cmd: Command) -> None:
        codec.no_args(cmd)
        if self.io.tls_active:
            raise CommandError(codes.ERR_TLS_ACTIVE)
        if self.tls_context is None:
            raise CommandError(codes.ERR_TLS_UNAVAILABLE)
        self.send(codes.OK_BEGIN_TLS.wire())
        await self.io.start_tls(self.tls_context, self.settings.timeout)  # drops plaintext pipelined behind STLS
        self.username = None  # RFC 2595 §4: nothing learned before TLS is kept

    async def user_(self, cmd: Command) -> None:
        self.require_auth_allowed()
        args = cmd.args
        if len(args) != 1:
            raise CommandError(codes.ERR_SYNTAX)
        self.username = args[0]
        self.send(codes.OK_USER.wire())

    async def pass_(self, cmd: Command) -> None:
        self.require_auth_allowed()
        username, self.username = self.username, None
        if username is None:
            raise CommandError(codes.ERR_NO_USER)
        await self.login(username, cmd.arg)  # RFC 1939 §7: the password may contain spaces

    async def auth(self, cmd: Command) -> None:
        args = cmd.args
        if not args:
            mechanisms = ["PLAIN"] if self.auth_allowed else []
            self.send(codec.multiline(codes.OK_SASL_MECHS, mechanisms))
            return
        if len(args) > 2:
            raise CommandError(codes.ERR_SYNTAX)
        if args[0].upper() != "PLAIN":
            raise CommandError(codes.ERR_UNKNOWN_MECHANISM, detail=f"mechanism {_printable(args[0], 32)}")
        self.require_auth_allowed()
        response = args[1] if len(args) == 2 else await self.sasl_continuation()
        username, password = codec.parse_plain(codec.decode_sasl_response(response))
        await self.login(username, password)

    async def sasl_continuation(self) -> str:
        """RFC 5034 §4: an empty challenge, then one base64 line or "*" to abort."""
        self.send(b"+ \r\n")
        try:
            line = await self.io.read_line(codec.MAX_SASL_LINE, self.settings.timeout)
        except LineTooLong:
            raise CommandError(codes.ERR_LINE_TOO_LONG, detail="SASL response") from None
        text = codec.decode_line(line)
        if text.strip(" ") == "*":
            raise CommandError(codes.ERR_SASL_ABORTED, bad=False)
        return text

    def require_auth_allowed(self) -> None:
        if not self.auth_allowed:
            raise CommandError(codes.ERR_AUTH_PLAINTEXT, detail="credentials without TLS")

    async def login(self, username: str, password: str) -> None:
        peer = self.io.peer[0]
        try:
            user = await self.authenticator.authenticate(username, password, peer=peer, protocol="pop3")
        except Exception:
            self.log.exception("authenticator failed")  # unknown means temporary (CONTRIBUTING.md)
            raise CommandError(codes.ERR_SYS_TEMP_ERROR, bad=False) from None
        if user is None or not password:
            self.log.info("%s: user=%s", Event.POP3_LOGIN_FAILED, _printable(username))
            raise CommandError(codes.ERR_AUTH_FAILED, detail="bad credentials")
        slot = (user, peer)
        if not self.slots.acquire(slot):
            raise CommandError(codes.ERR_IN_USE_TOO_MANY, detail=f"user={user}", bad=False)
        try:
            await self.store.ensure_user(user)
            snap = await self.store.snapshot(user, INBOX)
        except Exception:
            self.slots.release(slot)
            self.log.warning("cannot open the maildrop of %s", user, exc_info=True)
            raise CommandError(codes.ERR_SYS_TEMP_MAILDROP, bad=False) from None
        self._slot, self.user, self.state = slot, user, State.TRANSACTION
        self.maildrop = Maildrop(snap.info.uidvalidity, snap.messages)
        count, size = self.maildrop.stat()
        self.log.info("%s: user=%s messages=%d octets=%d", Event.POP3_LOGIN, user, count, size)
        self.send(codes.OK_LOGGED_IN.wire())

    # -- TRANSACTION -----------------------------------------------------------------
    @property
    def drop(self) -> Maildrop:
        assert self.maildrop is not None  # the dispatch table allows these only in TRANSACTION
        return self.maildrop

    async def stat(self, cmd: Command) -> None:
        codec.no_args(cmd)
        self.send(codes.ok_stat(*self.drop.stat()).wire())

    async def list_(self, cmd: Command) -> None:
        number = codec.optional_number(cmd)
        if number is not None:
            self.send(codes.ok_listing(number, str(self.drop.get(number).size)).wire())
            return
        lines = [f"{n} {m.size}" for n, m in self.drop.live()]
        self.send(codec.multiline(codes.ok_messages(*self.drop.stat()), lines))

    async def uidl(self, cmd: Command) -> None:
        number = codec.optional_number(cmd)
        if number is not None:
            self.send(codes.ok_listing(number, self.drop.unique_id(self.drop.get(number))).wire())
            return
        lines = [f"{n} {self.drop.unique_id(m)}" for n, m in self.drop.live()]
        self.send(codec.multiline(codes.OK, lines))

    async def top(self, cmd: Command) -> None:
        number, lines = codec.top_args(cmd)
        data = await self.read(self.drop.get(number))
        self.send(codes.OK.wire() + codec.top(data, lines))

    async def retr(self, cmd: Command) -> None:
        number = codec.one_number(cmd)
        meta = self.drop.get(number)
        data = await self.read(meta)
        self.send(codes.ok_octets(meta.size).wire() + codec.message(data))
        self.drop.retrieved.add(number)

    async def read(self, meta: MessageMeta) -> bytes:
        try:
            return await self.store.read_message(meta.body_id)
        except MailboxError as e:
            if e.reason == "nonexistent":  # an IMAP client expunged it since our login
                raise CommandError(codes.ERR_MESSAGE_GONE, detail=f"uid={meta.uid}", bad=False) from None
            self.log.warning("cannot read uid=%d: %s", meta.uid, e.reason)
        except Exception:
            self.log.exception("cannot read uid=%d", meta.uid)
        raise CommandError(codes.ERR_SYS_TEMP_ERROR, bad=False)

    async def dele(self, cmd: Command) -> None:
        number = codec.one_number(cmd)
        self.drop.get(number)
        self.drop.deleted.add(number)
        self.send(codes.OK_DELETED.wire())

    async def rset(self, cmd: Command) -> None:
        codec.no_args(cmd)
        self.drop.deleted.clear()
        self.send(codes.ok_messages(*self.drop.stat()).wire())

    async def noop(self, cmd: Command) -> None:
        codec.no_args(cmd)
        self.send(codes.OK_NOOP.wire())

    # -- QUIT and UPDATE -------------------------------------------------------------
    async def quit(self, cmd: Command) -> None:
        self.closing = True
        if self.state is not State.TRANSACTION:
            self.send(codes.OK_BYE.wire())
            return
        self.state, self.busy = State.UPDATE, True
        try:
            reply = await self.update()
        finally:
            self.busy = False
        self.send(reply.wire())

    async def update(self) -> Reply:
        """RFC 1939 §6: remove the messages marked as deleted (and mark the retrieved ones \\Seen)."""
        drop, user = self.drop, self.user
        assert user is not None
        deleted = drop.uids(drop.deleted)
        seen = [
            drop.messages[n - 1].uid
            for n in sorted(drop.retrieved - drop.deleted)
            if "\\Seen" not in drop.messages[n - 1].flags
        ]
        try:
            if deleted:
                await self.store.store_flags(user, INBOX, deleted, frozenset({"\\Deleted"}), FlagMode.ADD)
                await self.store.expunge(user, INBOX, deleted)
            if seen:
                await self.store.store_flags(user, INBOX, seen, frozenset({"\\Seen"}), FlagMode.ADD)
        except Exception:
            self.log.exception("%s: user=%s failed", Event.POP3_UPDATE, user)
            return codes.ERR_SYS_TEMP_NOT_REMOVED
        self.log.info("%s: user=%s deleted=%d seen=%d", Event.POP3_UPDATE, user, len(deleted), len(seen))
        return codes.OK_BYE


Handler = Callable[[Session, Command], Awaitable[None]]

AUTHORIZATION = frozenset({State.AUTHORIZATION})
TRANSACTION = frozenset({State.TRANSACTION})
BOTH = AUTHORIZATION | TRANSACTION

COMMANDS: dict[str, tuple[frozenset[State], Handler]] = {
    "CAPA": (BOTH, Session.capa),
    "QUIT": (BOTH, Session.quit),
    "STLS": (AUTHORIZATION, Session.stls),
    "USER": (AUTHORIZATION, Session.user_),
    "PASS": (AUTHORIZATION, Session.pass_),
    "AUTH": (AUTHORIZATION, Session.auth),
    "STAT": (TRANSACTION, Session.stat),
    "LIST": (TRANSACTION, Session.list_),
    "UIDL": (TRANSACTION, Session.uidl),
    "TOP": (TRANSACTION, Session.top),
    "RETR": (TRANSACTION, Session.retr),
    "DELE": (TRANSACTION, Session.dele),
    "RSET": (TRANSACTION, Session.rset),
    "NOOP": (TRANSACTION, Session.noop),
}
