"""Evaluate a SEARCH key AST (`imap.search`) against one message (RFC 3501 §6.4.4).

Simplifications (documented, Dovecot is stricter):
- Header fields are read by `imap.mime` (the parser FETCH uses), so the obsolete
  syntax of RFC 5322 §4.5 counts as Dovecot counts it: whitespace before the
  colon, folded and repeated fields (HEADER and FROM/TO/… match any occurrence,
  SENTON and friends the first Date:).
- HEADER/SUBJECT/…: case-insensitive substring of the RFC 2047-decoded
  field value (raw 8-bit read as UTF-8, folds and whitespace runs squeezed to one
  space, as Dovecot); an empty string matches any message that has the field.
- FROM/TO/CC/BCC (RFC 3501 §6.4.4 "the address structure"): the field is parsed
  as an RFC 5322 address list (display names, angle addresses, comments, groups,
  routes and the obsolete forms of RFC 5322 §4.4, by `rfc822.parse_addresses`,
  Dovecot's parser) and written back as Dovecot's `message_address_write` does
  (`name <local@domain>`, `local@domain`, `group: a, b;`, comments dropped), then
  decoded and matched as above; `FROM user@domain` finds every spelling of it.
- BODY/TEXT: case-insensitive substring of the decoded text of text/* parts
  (transfer encoding and charset undone by the stdlib parser); TEXT also
  searches the decoded header and the headers of attached message/rfc822 parts.
- Dates: INTERNALDATE's calendar day in UTC and the Date: field's day as written;
  a missing or broken Date: counts as 1 Jan 1970 (Dovecot's sent date 0), so it
  matches every SENTBEFORE and no SENTSINCE.
- \\Recent is the session's (`MailboxView.shown` adds it to the candidate's flags).
The message is read only when a key needs it (`needs_message`).
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

from mailstandby.imap.mime import Message
from mailstandby.imap.rfc822 import Address, parse_addresses
from mailstandby.imap.search import (
    All,
    And,
    Body,
    DateKey,
    HasFlag,
    Header,
    ModSeq,
    Not,
    Or,
    SearchKey,
    Seq,
    Size,
)
from mailstandby.store.mailbox import MessageMeta


def needs_message(key: SearchKey) -> bool:
    if isinstance(key, Header | Body):
        return True
    if isinstance(key, DateKey):
        return key.field == "sent"
    if isinstance(key, Not):
        return needs_message(key.key)
    if isinstance(key, Or):
        return needs_message(key.left) or needs_message(key.right)
    if isinstance(key, And):
        return any(needs_message(k) for k in key.keys)
    return False


@dataclass
class Candidate:
    """One message under test: its metadata, numbers, and (lazily) its parsed content."""

    meta: MessageMeta
    seq: int
    raw: bytes | None = None
    _parsed: EmailMessage | None = field(default=None, repr=False)
    _fields: list[tuple[str, bytes]] | None = field(default=None, repr=False)

    @property
    def fields(self) -> list[tuple[str, bytes]]:
        """(lower-case name, unfolded value) of every header field of the message, in order."""
        if self._fields is None:
            root = Message(self.raw or b"").root
            self._fields = [(h.name.decode("latin-1").lower(), h.value) for h in root.headers]
        return self._fields

    @property
    def parsed(self) -> EmailMessage:
        if self._parsed is None:
            msg = email.message_from_bytes(self.raw or b"", policy=email.policy.compat32)
            self._parsed = msg  # type: ignore[assignment]
        assert self._parsed is not None
        return self._parsed


def _decode(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # malformed encoded words: search the raw text
        return value


def _fields(c: Candidate) -> list[tuple[str, str]]:
    """(name, value) of every header field, raw 8-bit octets read as UTF-8."""
    return [(k, v.decode("utf-8", "replace")) for k, v in c.fields]


def _utf8(value: str) -> str:
    return value.encode("ascii", "surrogateescape").decode("utf-8", "replace")


def _header_values(c: Candidate, name: str) -> list[str]:
    key = name.lower()
    return [_squeeze(_decode(v)) for k, v in _fields(c) if k == key]


_MISSING = (b"MISSING_MAILBOX", b"MISSING_DOMAIN")


def _address_values(c: Candidate, name: str) -> list[str]:
    """Each `name` field's address list, as Dovecot writes it for SEARCH FROM/TO/CC/BCC."""
    key = name.lower()
    out = []
    for k, v in c.fields:
        if k == key:
            raw = v.replace(b"\n", b"")  # unfolded: the continuation lines' whitespace stays
            written = _write_addresses(parse_addresses(raw)) if raw.strip() else b""
            out.append(_squeeze(_decode(_utf8(written.decode("ascii", "surrogateescape")))))
    return out


def _write_addresses(addresses: list[Address]) -> bytes:
    """Dovecot `message_address_write` (parsed without FILL_MISSING: a missing part is empty)."""
    out: list[bytes] = []
    group: list[bytes] | None = None
    head = b""
    for a in addresses:
        if a.domain is None:  # a group opens (name in `mailbox`) or closes (all None)
            if group is None:
                group, head = [], a.mailbox or b'""'
            else:
                out.append(head + b": " + b", ".join(group) + b";")
                group = None
            continue
        mailbox = b"" if a.invalid and a.mailbox == _MISSING[0] else a.mailbox or b""
        domain = b"" if a.invalid and a.domain == _MISSING[1] else a.domain
        spec = mailbox + b"@" + domain
        if a.name or a.route:
            route = a.route + b":" if a.route else b""
            spec = (a.name or b"") + b" <" + route + spec + b">"
        (out if group is None else group).append(spec)
    if group is not None:
        out.append(head + b": " + b", ".join(group) + b";")
    return b", ".join(out)


def _squeeze(value: str) -> str:
    """Folding and whitespace runs become one space, as Dovecot searches header values."""
    return _WSP_RUN.sub(" ", value).strip(" ")


def _text_parts(c: Candidate) -> str:
    out = []
    for part in c.parsed.walk():
        if part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            charset = part.get_content_charset() or "utf-8"
            try:
                out.append(payload.decode(charset, "replace"))
            except LookupError:
                out.append(payload.decode("utf-8", "replace"))
    return "\n".join(out)


def _inner_headers(c: Candidate) -> str:
    out = []
    for part in c.parsed.walk():
        if part.get_content_type() == "message/rfc822" and isinstance(part.get_payload(), list):
            for inner in part.get_payload():
                out += [f"{k}: {_squeeze(_decode(_utf8(v)))}" for k, v in inner.raw_items()]
    return "\n".join(out)


_EPOCH_DAY = date(1970, 1, 1)
_WSP_RUN = re.compile(r"[ \t\r\n]+")


def _day(c: Candidate, which: str) -> date:
    if which == "sent":
        value = next((v for k, v in c.fields if k == "date"), None)  # the first, as Dovecot
        if value is not None:
            try:
                return parsedate_to_datetime(value.decode("utf-8", "replace")).date()
            except (TypeError, ValueError, IndexError):
                pass
        return _EPOCH_DAY
    return datetime.fromtimestamp(c.meta.internal_date, UTC).date()


def _compare(day: date, op: str, target: date) -> bool:
    return day < target if op == "before" else day == target if op == "on" else day >= target


class Matcher:
    """`matches(key, candidate)` with the session's sequence numbers and UIDs bound in."""

    def __init__(self, in_set: Callable[[Seq, Candidate], bool]) -> None:
        self.in_set = in_set

    def matches(self, key: SearchKey, c: Candidate) -> bool:
        if isinstance(key, All):
            return True
        if isinstance(key, HasFlag):  # keywords without case, as Dovecot (system flags are parsed canonical)
            return key.flag in c.meta.flags or any(f.casefold() == key.flag.casefold() for f in c.meta.flags)
        if isinstance(key, Header):
            return self._header(key, c)
        if isinstance(key, Body):
            return self._body(key, c)
        if isinstance(key, DateKey):
            return _compare(_day(c, key.field), key.op, key.day)
        if isinstance(key, Size):
            return c.meta.size > key.octets if key.op == "larger" else c.meta.size < key.octets
        if isinstance(key, Seq):
            return self.in_set(key, c)
        if isinstance(key, ModSeq):
            return c.meta.modseq >= key.modseq
        if isinstance(key, Not):
            return not self.matches(key.key, c)
        if isinstance(key, Or):
            return self.matches(key.left, c) or self.matches(key.right, c)
        return all(self.matches(k, c) for k in key.keys)

    def _header(self, key: Header, c: Candidate) -> bool:
        values = _address_values(c, key.field) if key.address else _header_values(c, key.field)
        needle = key.value.casefold()
        return any(needle in v.casefold() for v in values)

    def _body(self, key: Body, c: Candidate) -> bool:
        needle = key.value.casefold()
        text = _text_parts(c)
        if key.whole:  # TEXT: also the header, and the headers of attached messages
            header = "\n".join(f"{k}: {_squeeze(_decode(v))}" for k, v in _fields(c))
            text = header + "\n" + text + "\n" + _inner_headers(c)
        return needle in text.casefold()
