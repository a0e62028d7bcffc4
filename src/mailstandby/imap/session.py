"""One IMAP4rev1 conversation (RFC 3501 with LITERAL-, SASL-IR, ID, ENABLE, IDLE, NAMESPACE,
UIDPLUS, MOVE, UNSELECT, SPECIAL-USE, CHILDREN and APPENDLIMIT).

States: not authenticated → authenticated → selected → logout (RFC 3501 §3).
Every command goes through one table (`COMMANDS`: name → allowed states, handler)
and gets exactly one tagged response; untagged mailbox updates are written
before it (`SelectedCommands.sync_after`, from the session's `MailboxView`).

Invariants:
- Input is read only through `parser.CommandReader`: literals are invited,
  read or discarded as it says, so a refused `{n+}` literal is consumed and
  never runs as commands (RELIABILITY P11). Before login the literal limits are
  tiny (P12); the line limit is `max_line_length` (P13).
- Credentials are refused without TLS unless the peer is loopback and
  `allow_plaintext_auth_on_loopback` is set (RFC 3501 §6.2.3, RELIABILITY A1).
  Command arguments are never logged, so passwords never are.
- STARTTLS drops plaintext pipelined behind it (`Connection.start_tls`, T1)
  and resets the reader; capabilities are re-sent by the client's CAPABILITY.
- BAD commands count, as Dovecot counts them (RELIABILITY P6): before login every
  one, and the `max_bad_commands_before_login`-th (3) is answered only with
  `* BYE Too many invalid IMAP commands.`; after login those in a row (any
  other reply resets the count), the `max_bad_commands`-th (20) gets its BAD
  and then the BYE. A BAD below the limit leaves the session usable.
- A handler reports failure by raising `Reply` (NO or BAD); a StoreError (the
  database away) is answered `NO [UNAVAILABLE]` (RFC 5530 §3: temporary); any
  other exception is logged here and answered `NO [SERVERBUG]` without detail (CONTRIBUTING.md: client text generic).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from enum import Enum, auto

from mailstandby.auth import Authenticator, SessionSlots, is_loopback
from mailstandby.config import IMAPSettings
from mailstandby.core.events import Event
from mailstandby.imap import responses as r
from mailstandby.imap.fetching import StructureCache
from mailstandby.imap.io import SessionIO
from mailstandby.imap.mailboxes import Done, MailboxCommands, Reply
from mailstandby.imap.parser import (
    Authenticate,
    Command,
    CommandReader,
    Id,
    LiteralRequest,
    Login,
    ParseError,
    parse_sasl_response,
)
from mailstandby.imap.selected import SelectedCommands
from mailstandby.imap.syntax import TAG_CHARS
from mailstandby.store.base import StoreError
from mailstandby.store.mailbox import MailboxStore
from mailstandby.transport import ConnectionClosed, LineTooLong

log = logging.getLogger(__name__)
TRACE = 5
LOGIN_LITERAL = 8 * 1024  # literals before login: user names and passwords only (RELIABILITY P12)
SASL_LINE = 12 * 1024 + 2  # RFC 4954 §4 asks for at least 12288 octets
FLUSH_AT = 256 * 1024
SHUTDOWN_BYE = b"* BYE server shutting down\r\n"
INTERNAL_ERROR = "Internal error occurred. Refer to server log for more information."
# RFC 5530 §3 UNAVAILABLE: a subsystem is down, try again later (the store during a database failover)
STORE_UNAVAILABLE = "Temporary failure, try again later."


class State(Enum):
    NOT_AUTHENTICATED = auto()
    AUTHENTICATED = auto()
    SELECTED = auto()
    LOGOUT = auto()


def parse_plain(data: bytes) -> tuple[str, str] | None:
    """RFC 4616 PLAIN: (authcid, password), or None when malformed or authzid differs."""
    parts = data.split(b"\x00")
    if len(parts) != 3:
        return None
    try:
        authzid, authcid, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        return None
    if authzid and authzid != authcid:
        return None  # RELIABILITY A4: no proxy authorisation
    return authcid, password


ANY = frozenset(State) - {State.LOGOUT}
NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
AUTHED = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})
Handler = Callable[["Session", Command], Awaitable[Done | None]]


class Session(MailboxCommands, SelectedCommands):
    """Serves one connection until LOGOUT, too many bad commands, timeout or shutdown."""

    def __init__(
        self,
        io: SessionIO,
        store: MailboxStore,
        authenticator: Authenticator,
        settings: IMAPSettings,
        *,
        tls_context: ssl.SSLContext | None,
        sid: str = "",
        slots: SessionSlots | None = None,
        structures: StructureCache | None = None,
    ) -> None:
        self.io = io
        self.structures = structures if structures is not None else StructureCache(1000)
        self.store = store
        self.authenticator = authenticator
        self.settings = settings
        self.tls_context = tls_context
        self.slots = slots if slots is not None else SessionSlots(settings.max_connections_per_user)
        self.sid = sid
        self.log = logging.LoggerAdapter(log, {"sid": sid, "peer": io.peer[0]})
        self.state = State.NOT_AUTHENTICATED
        self.user = ""
        self.bad = 0
        self.closing = False
        self.busy = False  # executing a command: shutdown waits for it, up to its grace period
        self._slot: tuple[str, str] | None = None
        self._queued = 0
        self.reader = self._new_reader()
        SelectedCommands.__init__(self)

    # -- the loop ----------------------------------------------------------------------
    async def run(self) -> None:
        self.send(r.status_line("OK", "mailstandby ready.", r.capability(self.capabilities())))
        try:
            while not self.closing:
                await self.step()
        except TimeoutError:
            self.log.info("%s: idle timeout in state %s", Event.IMAP_SESSION_ABUSE, self.state.name)
            self.send(r.status_line("BYE", "Disconnected for inactivity."))
        finally:
            self.end()
        await self.io.flush()

    def end(self) -> None:
        """Release what the session holds; safe to call twice."""
        self.deselect()
        if self._slot is not None:
            self.slots.release(self._slot)
            self._slot = None

    @property
    def timeout(self) -> float:
        return self.settings.login_timeout if self.state is State.NOT_AUTHENTICATED else self.settings.idle_timeout

    def _new_reader(self) -> CommandReader:
        if self.state is State.NOT_AUTHENTICATED:
            return CommandReader(max_literal=LOGIN_LITERAL, max_argument=LOGIN_LITERAL)
        return CommandReader(max_literal=self.settings.max_literal_size, max_argument=self.settings.max_line_length)

    async def step(self) -> None:
        if self._queued > FLUSH_AT:
            self._queued = 0
            await self.io.flush()
        try:
            cmd = await self.read_command()
        except LineTooLong as e:
            tag = self.reader_tag(e.head)
            self.reader = self._new_reader()
            self.refuse(tag, "BAD", "Error in IMAP command received by server: Too long argument.")
            return
        except ParseError as e:
            self.log.info("%s: %s %s: %s", Event.IMAP_REJECTED, e.status, e.name or "?", e.message)
            self.refuse(e.tag, e.status, e.message, e.code, counts=e.status == "BAD")
            if e.close:
                self.send(r.status_line("BYE", "Too big literal."))
                self.closing = True
            return
        self.busy = cmd.name != "IDLE"  # shutdown lets a running command finish (IDLE just waits)
        try:
            await self.execute(cmd)
        finally:
            self.busy = False

    def reader_tag(self, head: bytes) -> str:
        """The tag of an overlong line (RELIABILITY P13 answers it tagged), or "*" mid-command."""
        if self.reader.in_command:
            return "*"
        tag = head.split(b" ", 1)[0]
        return tag.decode("ascii") if tag and len(tag) < len(head) and all(b in TAG_CHARS for b in tag) else "*"

    async def read_command(self) -> Command:
        """One command, its literals invited, read or discarded as the reader says."""
        step = self.reader.feed_line(await self.io.read_line(self.settings.max_line_length, self.timeout))
        while isinstance(step, LiteralRequest):
            if step.discard:
                await self.io.discard_exact(step.size, self.timeout)
                self.reader.literal_discarded()
            else:
                if step.synchronizing:
                    self.send(r.continuation())
                self.reader.feed_literal(await self.io.read_exact(step.size, self.timeout))
            step = self.reader.feed_line(await self.io.read_line(self.settings.max_line_length, self.timeout))
        return step

    async def execute(self, cmd: Command) -> None:
        self.log.log(TRACE, "C: %s %s%s", cmd.tag, "UID " if cmd.uid else "", cmd.name)  # never the arguments
        allowed, handler = COMMANDS[cmd.name]
        if self.state not in allowed:
            self.refuse(cmd.tag, "BAD", f"Error in IMAP command {cmd.name}: Command not permitted in this state.")
            return
        try:
            done = await handler(self, cmd) or Done()
        except Reply as e:
            await self.sync_after(cmd)
            self.refuse(cmd.tag, e.status, e.text, e.code, counts=e.counts)
            return
        except ParseError as e:
            self.refuse(cmd.tag, "BAD", e.message)
            return
        except LineTooLong:
            self.refuse(cmd.tag, "BAD", "Error in IMAP command received by server: Too long argument.")
            return
        except (ConnectionClosed, ConnectionError, TimeoutError, asyncio.CancelledError):
            raise
        except StoreError as e:  # the database is away (restarting, failing over): temporary
            self.log.warning("%s: %s: %s", Event.STORE_UNAVAILABLE, cmd.name, e)
            self.send(r.tagged(cmd.tag, "NO", STORE_UNAVAILABLE, r.UNAVAILABLE))
            return
        except Exception:
            self.log.exception("imap: internal error in %s", cmd.name)
            self.send(r.tagged(cmd.tag, "NO", INTERNAL_ERROR, r.SERVERBUG))
            return
        if done.answered:
            return
        if self.state is not State.LOGOUT:
            await self.sync_after(cmd)
        self.good_reply()
        self.send(r.tagged(cmd.tag, "OK", done.text or f"{cmd.name.title()} completed.", done.code))

    def send(self, data: bytes) -> None:
        self.io.write(data)
        self._queued += len(data)

    async def pace(self) -> None:
        """Flush within a long response (FETCH 1:* BODY[]) so it never piles up in memory."""
        if self._queued > FLUSH_AT:
            self._queued = 0
            await self.io.flush()

    def refuse(self, tag: str, status: str, text: str, code: str | None = None, *, counts: bool = True) -> None:
        if status != "BAD" or not counts:
            self.good_reply()
            self.send(r.tagged(tag, status, text, code))
            return
        self.bad += 1
        logged_in = self.state in AUTHED
        limit = self.settings.max_bad_commands if logged_in else self.settings.max_bad_commands_before_login
        if self.bad < limit:
            self.send(r.tagged(tag, status, text, code))
            return
        self.log.info("%s: %d bad commands", Event.IMAP_SESSION_ABUSE, self.bad)
        if logged_in:  # Dovecot's imap answers the last one; its imap-login only says BYE
            self.send(r.tagged(tag, status, text, code))
        self.send(r.status_line("BYE", "Too many invalid IMAP commands."))
        self.closing = True

    def good_reply(self) -> None:
        """A command answered OK or NO: after login the BAD count starts again (Dovecot's)."""
        if self.state in AUTHED:
            self.bad = 0

    def _set_selected(self, selected: bool) -> None:
        if self.state in AUTHED:
            self.state = State.SELECTED if selected else State.AUTHENTICATED

    # -- any state -----------------------------------------------------------------------
    @property
    def auth_allowed(self) -> bool:
        if self.io.tls_active:
            return True
        return self.settings.allow_plaintext_auth_on_loopback and is_loopback(self.io.peer[0])

    def capabilities(self) -> list[str]:
        caps = ["LITERAL-", "SASL-IR", "ID", "ENABLE", "IDLE", "NAMESPACE", "UIDPLUS", "MOVE", "UNSELECT", "CONDSTORE"]
        caps += ["SPECIAL-USE", "CHILDREN", f"APPENDLIMIT={self.settings.max_literal_size}"]
        if self.state is State.NOT_AUTHENTICATED:
            if self.tls_context is not None and not self.io.tls_active:
                caps.append("STARTTLS")
            caps.append("AUTH=PLAIN" if self.auth_allowed else "LOGINDISABLED")
        return caps

    async def capability(self, cmd: Command) -> Done | None:
        self.send(r.untagged(r.capability(self.capabilities())))
        return None

    async def noop(self, cmd: Command) -> Done | None:
        return None

    async def logout(self, cmd: Command) -> Done | None:
        self.send(r.status_line("BYE", "Logging out"))
        self.state = State.LOGOUT
        self.closing = True
        return Done("Logout completed.")

    async def id_(self, cmd: Command) -> Done | None:
        assert isinstance(cmd.args, Id)
        self.send(r.untagged("ID", b'("name" "mailstandby")'))
        return None

    # -- not authenticated ---------------------------------------------------------------
    async def starttls(self, cmd: Command) -> Done | None:
        if self.io.tls_active or self.tls_context is None:
            raise Reply("BAD", "TLS is already active." if self.io.tls_active else "TLS support isn't enabled.")
        self.send(r.tagged(cmd.tag, "OK", "Begin TLS negotiation now."))
        await self.io.start_tls(self.tls_context, 60.0)  # drops plaintext pipelined behind STARTTLS (T1)
        self.reader = self._new_reader()
        return Done(answered=True)

    async def login(self, cmd: Command) -> Done | None:
        assert isinstance(cmd.args, Login)
        self.require_auth_allowed()
        return await self.sign_in(cmd.args.user, cmd.args.password)

    async def authenticate(self, cmd: Command) -> Done | None:
        args = cmd.args
        assert isinstance(args, Authenticate)
        if args.mechanism != "PLAIN":
            raise Reply("NO", "Unsupported authentication mechanism.")
        self.require_auth_allowed()
        data = args.initial
        if data is None:
            self.send(b"+ \r\n")
            data = parse_sasl_response(await self.io.read_line(SASL_LINE, self.timeout), cmd.tag)
            if data is None:
                raise Reply("BAD", "Authentication aborted by client.", counts=False)
        plain = parse_plain(data)
        if plain is None:
            raise Reply("NO", "Authentication failed.", r.AUTHENTICATIONFAILED)
        return await self.sign_in(*plain)

    def require_auth_allowed(self) -> None:
        if not self.auth_allowed:
            text = "Plaintext authentication disallowed on non-secure (SSL/TLS) connections."
            raise Reply("NO", text, r.PRIVACYREQUIRED)

    async def sign_in(self, username: str, password: str) -> Done:
        peer = self.io.peer[0]
        user = None
        if password:
            user = await self.authenticator.authenticate(username, password, peer=peer, protocol="imap")
        if user is None:
            self.log.info("%s: user=%r", Event.IMAP_LOGIN_FAILED, username[:64])
            raise Reply("NO", "Authentication failed.", r.AUTHENTICATIONFAILED)
        if not self.slots.acquire((user, peer)):
            raise Reply("NO", "Maximum number of connections from user+IP exceeded.", r.LIMIT)
        self._slot = (user, peer)
        try:
            await self.store.ensure_user(user)
        except Exception:
            self.end()
            raise
        self.user = user
        self.bad = 0  # a fresh budget after login, as Dovecot's imap-login and imap count apart
        self.state = State.AUTHENTICATED
        self.reader = self._new_reader()
        self.log.info("%s: user=%s", Event.IMAP_LOGIN, user)
        return Done("Logged in", r.capability(self.capabilities()))


COMMANDS: dict[str, tuple[frozenset[State], Handler]] = {
    "CAPABILITY": (ANY, Session.capability),
    "NOOP": (ANY, Session.noop),
    "LOGOUT": (ANY, Session.logout),
    "ID": (ANY, Session.id_),
    "STARTTLS": (NOT_AUTH, Session.starttls),
    "LOGIN": (NOT_AUTH, Session.login),
    "AUTHENTICATE": (NOT_AUTH, Session.authenticate),
    "ENABLE": (AUTHED, Session.enable),
    "NAMESPACE": (AUTHED, Session.namespace),
    "SELECT": (AUTHED, Session.select),
    "EXAMINE": (AUTHED, Session.select),
    "CREATE": (AUTHED, Session.create),
    "DELETE": (AUTHED, Session.delete),
    "RENAME": (AUTHED, Session.rename),
    "SUBSCRIBE": (AUTHED, Session.subscribe),
    "UNSUBSCRIBE": (AUTHED, Session.subscribe),
    "LIST": (AUTHED, Session.list_),
    "LSUB": (AUTHED, Session.list_),
    "STATUS": (AUTHED, Session.status),
    "APPEND": (AUTHED, Session.append),
    "IDLE": (AUTHED, Session.idle),
    "CHECK": (SELECTED, Session.check),
    "CLOSE": (SELECTED, Session.close),
    "UNSELECT": (SELECTED, Session.unselect),
    "EXPUNGE": (SELECTED, Session.expunge),
    "SEARCH": (SELECTED, Session.search),
    "FETCH": (SELECTED, Session.fetch),
    "STORE": (SELECTED, Session.store_),
    "COPY": (SELECTED, Session.copy),
    "MOVE": (SELECTED, Session.copy),
}

__all__ = ["COMMANDS", "SHUTDOWN_BYE", "Session", "SessionIO"]
