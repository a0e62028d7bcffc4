"""A small asyncio IMAP4rev1 client for failback sync: just what APPENDing into the primary needs.

Commands: CAPABILITY, STARTTLS, LOGIN, AUTHENTICATE PLAIN (with an authorization
identity, RFC 4616), LIST, CREATE, SELECT, EXAMINE, UID FETCH of header fields, UID
SEARCH HEADER (the queue's look-up of deliveries in doubt), UID STORE,
APPEND (RFC 3501 §6.3.11) pipelined with LITERAL+ (RFC 7888), or several messages
in one command with MULTIAPPEND (RFC 3502), LOGOUT.

Errors: the server's NO/BAD come back as `CommandFailed` (the command failed, the
connection is fine); anything that means the connection is unusable (reset, EOF,
timeout, BYE, a response we cannot parse, TLS failure) is `ConnectionLost`, so the
caller can tell "the primary is down" from "this message was refused".
Every read has a timeout; response lines and literals are bounded.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from mailstandby.imap import mutf7
from mailstandby.transport import Connection, ConnectionClosed, LineTooLong

MAX_LINE = 256 * 1024
MAX_LITERAL = 64 * 1024 * 1024
_LITERAL_AT_END = re.compile(rb"\{(\d{1,10})\+?\}\r\n$")
_CODE = re.compile(r"^\[([^\]]*)\]")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class IMAPClientError(Exception):
    """Base of the client's errors."""


class ConnectionLost(IMAPClientError):
    """The connection is unusable: the server is down, went away, timed out or talks nonsense."""


class CommandFailed(IMAPClientError):
    """The server answered NO or BAD to one command; the connection is still usable."""

    def __init__(self, command: str, status: str, text: str) -> None:
        super().__init__(f"{command}: {status} {text}"[:500])
        self.command = command
        self.status = status
        self.text = text


@dataclass(slots=True)
class Response:
    """One tagged completion plus the untagged data that arrived before it."""

    status: str  # OK | NO | BAD
    text: str
    untagged: list[list[object]] = field(default_factory=list)

    @property
    def code(self) -> list[str]:
        """The response code's words (e.g. ["APPENDUID", "38505", "3955"]), or []."""
        m = _CODE.match(self.text)
        return m.group(1).split() if m else []


# -- pure helpers -------------------------------------------------------------------------------------
def quote(value: str) -> bytes:
    """A quoted string (RFC 3501 §4.3); callers send literals for anything with CR, LF or NUL."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError("quoted strings cannot hold CR, LF or NUL")
    return b'"' + value.replace("\\", "\\\\").replace('"', '\\"').encode("utf-8") + b'"'


def mailbox_arg(name: str, utf8: bool) -> bytes:
    return quote(name if utf8 else mutf7.encode(name))


def internal_date(epoch: float) -> bytes:
    """An APPEND date-time (RFC 3501 §9 date-time), in UTC."""
    t = time.gmtime(epoch)
    day = f"{t.tm_mday:2d}-{_MONTHS[t.tm_mon - 1]}-{t.tm_year:04d}"
    return f'"{day} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"'.encode()


def tokenize(pieces: Sequence[bytes | bytearray]) -> list[object]:
    """Tokens of one response: str for atoms and quoted strings, bytes for literals, lists for
    parenthesized lists. `pieces` alternates text and literal data (text, literal, text, ...)."""
    stack: list[list[object]] = [[]]
    for index in range(0, len(pieces), 2):
        text = bytes(pieces[index])
        literal = bytes(pieces[index + 1]) if index + 1 < len(pieces) else None
        i, n = 0, len(text)
        while i < n:
            c = text[i : i + 1]
            if c in b" \r\n":
                i += 1
            elif c == b"(":
                stack.append([])
                i += 1
            elif c == b")":
                if len(stack) == 1:
                    raise ConnectionLost("unbalanced ')' in a server response")
                done = stack.pop()
                stack[-1].append(done)
                i += 1
            elif c == b'"':
                out = bytearray()
                i += 1
                while i < n and text[i : i + 1] != b'"':
                    if text[i : i + 1] == b"\\":
                        i += 1
                    out += text[i : i + 1]
                    i += 1
                i += 1
                stack[-1].append(out.decode("utf-8", "replace"))
            elif c == b"{" and _LITERAL_AT_END.match(text, i) and literal is not None:
                stack[-1].append(literal)
                break
            elif c == b"[":  # a response code or section spec: one token up to the matching ']'
                end = text.find(b"]", i)
                end = n if end < 0 else end + 1
                stack[-1].append(text[i:end].decode("utf-8", "replace"))
                i = end
            else:
                j = i
                while j < n and text[j : j + 1] not in b' ()\r\n"':
                    if text[j : j + 1] == b"[":  # BODY[HEADER.FIELDS (A B)] stays one atom
                        close = text.find(b"]", j)
                        j = n if close < 0 else close
                    j += 1
                stack[-1].append(text[i:j].decode("utf-8", "replace"))
                i = j
    if len(stack) != 1:
        raise ConnectionLost("unbalanced '(' in a server response")
    return stack[0]


def parse_uid_set(text: str) -> list[int]:
    """`3955,3957:3959` -> [3955, 3957, 3958, 3959] (RFC 4315 uid-set, as in APPENDUID)."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition(":")
        a, b = int(lo), int(hi or lo)
        out.extend(range(min(a, b), max(a, b) + 1))
    return out


@dataclass(frozen=True, slots=True)
class Appendable:
    mailbox: str
    body: bytes
    flags: frozenset[str]
    date: float


# -- the client -------------------------------------------------------------------------------------
class IMAPClient:
    def __init__(self, conn: Connection, timeout: float) -> None:
        self.conn = conn
        self.timeout = timeout
        self.capabilities: set[str] = set()
        self._tag = 0

    @classmethod
    async def connect(
        cls, host: str, port: int, *, tls: str, ssl_context: ssl.SSLContext | None, timeout: float
    ) -> IMAPClient:
        """`tls`: "none", "starttls" (required: no STARTTLS offered is an error) or "implicit"."""
        loop = asyncio.get_running_loop()
        implicit = tls == "implicit"
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    Connection,
                    host,
                    port,
                    ssl=ssl_context if implicit else None,
                    server_hostname=host if implicit else None,
                )
        except (OSError, TimeoutError, ssl.SSLError) as e:
            raise ConnectionLost(f"cannot connect to {host}:{port}: {e or type(e).__name__}") from None
        client = cls(conn, timeout)
        try:
            greeting = await client._read_pieces()
            words = tokenize(greeting)
            if words[:2] != ["*", "OK"]:
                raise ConnectionLost(f"unexpected greeting: {bytes(greeting[0])[:200]!r}")
            await client.capability()
            if tls == "starttls":
                await client._starttls(host, ssl_context)
        except BaseException:
            client.abort()
            raise
        return client

    async def _starttls(self, host: str, ssl_context: ssl.SSLContext | None) -> None:
        if "STARTTLS" not in self.capabilities:
            raise ConnectionLost(f"{host} does not offer STARTTLS")
        await self.command(b"STARTTLS")
        if self.conn.has_buffered_input():  # a response injected before the handshake (NO STARTTLS)
            raise ConnectionLost(f"{host} sent data between its STARTTLS reply and the handshake")
        assert ssl_context is not None
        try:
            await self.conn.start_tls(ssl_context, self.timeout, server_hostname=host)
        except (OSError, TimeoutError, ssl.SSLError, ConnectionClosed) as e:
            raise ConnectionLost(f"TLS with {host} failed: {e or type(e).__name__}") from None
        await self.capability()  # RFC 3501 §6.2.1: forget what was said in clear

    # -- commands ----------------------------------------------------------------------------------
    async def capability(self) -> set[str]:
        resp = await self.command(b"CAPABILITY")
        for words in resp.untagged:
            if len(words) > 1 and str(words[1]).upper() == "CAPABILITY":
                self.capabilities = {str(w).upper() for w in words[2:]}
        return self.capabilities

    async def login(self, user: str, password: str) -> None:
        """LOGIN; credentials that a quoted string cannot carry (8-bit, CR, LF) go by AUTHENTICATE PLAIN."""
        if not (user + password).isascii() or any(c in user + password for c in "\r\n\0"):
            await self.authenticate_plain("", user, password)
            return
        await self.command(b"LOGIN " + quote(user) + b" " + quote(password), secret=True)
        await self._refresh_capabilities()

    async def authenticate_plain(self, authzid: str, authcid: str, password: str) -> None:
        """SASL PLAIN (RFC 4616) with an authorization identity: log in as `authcid`, act as `authzid`."""
        blob = base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode())
        if "SASL-IR" in self.capabilities:
            await self.command(b"AUTHENTICATE PLAIN " + blob, secret=True)
        else:
            await self.command(b"AUTHENTICATE PLAIN", continuation=blob, secret=True)
        await self._refresh_capabilities()

    async def list_mailboxes(self) -> dict[str, tuple[str, ...]]:
        """Name -> attributes of every mailbox (LIST "" "*")."""
        resp = await self.command(b'LIST "" "*"')
        out: dict[str, tuple[str, ...]] = {}
        for words in resp.untagged:
            if len(words) >= 5 and str(words[1]).upper() == "LIST":
                raw = words[4]
                name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
                if not self.utf8:
                    name = mutf7.decode(name)
                attrs = tuple(str(a) for a in words[2]) if isinstance(words[2], list) else ()
                out[name] = attrs
        return out

    async def create(self, name: str) -> None:
        await self.command(b"CREATE " + mailbox_arg(name, self.utf8))

    async def select(self, name: str) -> int:
        """SELECT `name`; returns its UIDVALIDITY."""
        resp = await self.command(b"SELECT " + mailbox_arg(name, self.utf8))
        for words in resp.untagged:
            if len(words) > 2 and str(words[1]).upper() == "OK" and str(words[2]).upper().startswith("[UIDVALIDITY"):
                return int(str(words[2]).strip("[]").split()[1])
        return 0

    async def fetch_header_fields(self, fields: Sequence[str]) -> list[tuple[int, frozenset[str], bytes]]:
        """(uid, flags, those header fields) of every message in the selected mailbox."""
        wanted = " ".join(fields).encode()
        resp = await self.command(b"UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (" + wanted + b")])")
        out = []
        for words in resp.untagged:
            if len(words) < 4 or str(words[2]).upper() != "FETCH" or not isinstance(words[3], list):
                continue
            items = words[3]
            uid, flags, header = 0, frozenset[str](), b""
            for key, value in zip(items[::2], items[1::2], strict=False):
                k = str(key).upper()
                if k == "UID":
                    uid = int(str(value))
                elif k == "FLAGS" and isinstance(value, list):
                    flags = frozenset(str(f) for f in value)
                elif k.startswith("BODY["):
                    header = value if isinstance(value, bytes) else str(value).encode()
            if uid:
                out.append((uid, flags, header))
        return out

    async def examine(self, name: str) -> None:
        """EXAMINE `name`: selected read-only (RFC 3501 §6.3.2), nothing changes in it."""
        await self.command(b"EXAMINE " + mailbox_arg(name, self.utf8))

    async def uid_search_header(self, field: str, value: str) -> list[int]:
        """UIDs of the messages whose `field` header contains `value` (RFC 3501 §6.4.4 HEADER)."""
        resp = await self.command(b"UID SEARCH HEADER " + quote(field) + b" " + quote(value))
        uids: list[int] = []
        for words in resp.untagged:
            if len(words) > 1 and str(words[1]).upper() == "SEARCH":
                uids += [int(str(w)) for w in words[2:] if str(w).isdigit()]
        return uids

    async def uid_store_add(self, uids: Sequence[int], flags: frozenset[str]) -> None:
        if uids and flags:
            uid_set = ",".join(str(u) for u in uids).encode()
            await self.command(b"UID STORE " + uid_set + b" +FLAGS.SILENT (" + " ".join(sorted(flags)).encode() + b")")

    async def append(self, messages: Sequence[Appendable]) -> list[int | None]:
        """APPEND `messages` (all to one mailbox): one MULTIAPPEND command when offered (atomic:
        all or none), else one APPEND each, pipelined with LITERAL+. Returns the new UIDs when the
        server says (UIDPLUS), else Nones. A NO raises CommandFailed for the batch."""
        if not messages:
            return []
        if "MULTIAPPEND" in self.capabilities and len(messages) > 1:
            resp = await self._append_command(messages)
            uids = self.appenduids(resp, len(messages))
            return uids
        tags = [self.send_append([m]) for m in messages]
        results: list[int | None] = []
        failure: CommandFailed | None = None
        for tag in tags:
            try:
                resp = await self.finish(tag, "APPEND")
                results.extend(self.appenduids(resp, 1))
            except CommandFailed as e:
                failure = failure or e
                results.append(None)
        if failure is not None:
            raise failure
        return results

    async def logout(self) -> None:
        try:
            async with asyncio.timeout(5):
                await self.command(b"LOGOUT")
        except (IMAPClientError, TimeoutError):
            pass
        finally:
            self.abort()

    def abort(self) -> None:
        self.conn.close()

    @property
    def utf8(self) -> bool:
        return False  # mailbox names go as modified UTF-7, which every server understands

    # -- plumbing -------------------------------------------------------------------------------------
    async def _refresh_capabilities(self) -> None:
        await self.capability()

    def _next_tag(self) -> bytes:
        self._tag += 1
        return b"s%d" % self._tag

    async def command(self, line: bytes, *, continuation: bytes | None = None, secret: bool = False) -> Response:
        tag = self._next_tag()
        self.conn.write(tag + b" " + line + b"\r\n")
        if continuation is not None:
            await self._drain()
            await self._expect_continuation()
            self.conn.write(continuation + b"\r\n")
        return await self.finish(tag, "AUTH" if secret else line.split(b" ", 1)[0].decode())

    async def _append_command(self, messages: Sequence[Appendable]) -> Response:
        return await self.finish(self.send_append(messages), "APPEND")

    def send_append(self, messages: Sequence[Appendable]) -> bytes:
        """Write one APPEND (several messages: MULTIAPPEND) with non-synchronizing literals; the
        server must offer LITERAL+ (checked by the caller via `can_pipeline`)."""
        tag = self._next_tag()
        out = [tag, b" APPEND ", mailbox_arg(messages[0].mailbox, self.utf8)]
        for m in messages:
            out += [b" (", " ".join(sorted(m.flags)).encode(), b") ", internal_date(m.date)]
            out += [b" {%d+}\r\n" % len(m.body), m.body]
        out.append(b"\r\n")
        self.conn.write(b"".join(out))
        return tag

    @property
    def can_pipeline(self) -> bool:
        return "LITERAL+" in self.capabilities

    async def append_synchronizing(self, m: Appendable) -> list[int | None]:
        """APPEND one message waiting for the server's "+" before its literal (no LITERAL+)."""
        tag = self._next_tag()
        self.conn.write(
            tag
            + b" APPEND "
            + mailbox_arg(m.mailbox, self.utf8)
            + b" ("
            + " ".join(sorted(m.flags)).encode()
            + b") "
            + internal_date(m.date)
            + b" {%d}\r\n" % len(m.body)
        )
        await self._drain()
        await self._expect_continuation()
        self.conn.write(m.body + b"\r\n")
        return self.appenduids(await self.finish(tag, "APPEND"), 1)

    @staticmethod
    def appenduids(resp: Response, count: int) -> list[int | None]:
        code = resp.code
        if len(code) == 3 and code[0].upper() == "APPENDUID":
            try:
                uids = parse_uid_set(code[2])
            except ValueError:
                uids = []
            if len(uids) == count:
                return list(uids)
        return [None] * count

    async def _drain(self) -> None:
        try:
            await self.conn.flush()
        except (ConnectionClosed, OSError) as e:
            raise ConnectionLost(f"write failed: {e or type(e).__name__}") from None

    async def _expect_continuation(self) -> None:
        while True:
            pieces = await self._read_pieces()
            first = bytes(pieces[0])
            if first.startswith(b"+"):
                return
            if not first.startswith(b"*"):
                words = tokenize(pieces)
                status = str(words[1]).upper() if len(words) > 1 else "BAD"
                raise CommandFailed("continuation", status, " ".join(str(w) for w in words[2:]))

    async def finish(self, tag: bytes, what: str) -> Response:
        """Read responses up to the tagged completion of `tag`."""
        await self._drain()
        untagged: list[list[object]] = []
        want = tag.decode()
        while True:
            pieces = await self._read_pieces()
            words = tokenize(pieces)
            if not words:
                continue
            head = str(words[0])
            if head == "*":
                if len(words) > 1 and str(words[1]).upper() == "BYE":
                    raise ConnectionLost(f"server said BYE: {_text(words[2:])}")
                untagged.append(words)
            elif head == want:
                status = str(words[1]).upper() if len(words) > 1 else ""
                text = _text(words[2:])
                if status == "OK":
                    return Response(status, text, untagged)
                if status in ("NO", "BAD"):
                    raise CommandFailed(what, status, text)
                raise ConnectionLost(f"bad completion for {what}: {status}")
            elif head == "+":
                raise ConnectionLost(f"unexpected continuation request during {what}")
            else:  # completions come in order (callers read pipelined tags in the order sent)
                raise ConnectionLost(f"unexpected response while waiting for {what}: {head[:40]!r}")

    async def _read_pieces(self) -> list[bytes]:
        """One response: its lines and literals, alternating."""
        pieces: list[bytes] = []
        try:
            while True:
                line = await self.conn.read_line(MAX_LINE, self.timeout)
                pieces.append(line)
                m = _LITERAL_AT_END.search(line)
                if m is None:
                    return pieces
                size = int(m.group(1))
                if size > MAX_LITERAL:
                    raise ConnectionLost(f"server literal of {size} octets is over the limit")
                pieces.append(await self.conn.read_exact(size, self.timeout))
        except (ConnectionClosed, OSError) as e:
            raise ConnectionLost(f"connection lost: {e or type(e).__name__}") from None
        except LineTooLong:
            raise ConnectionLost("server response line over the limit") from None
        except TimeoutError:
            raise ConnectionLost(f"no response within {self.timeout:g}s") from None


def _text(words: Sequence[object]) -> str:
    return " ".join(str(w) for w in words if not isinstance(w, list | bytes))[:300]
