"""ENVELOPE, BODY and BODYSTRUCTURE of a parsed message (RFC 3501 §7.4.2), as Dovecot writes them.

Follows Dovecot 2.3 `imap-bodystructure.c`, `imap-envelope.c` and
`message-part-data.c` so that a differential test against Dovecot agrees:

- type, subtype, parameter names and values keep the case they have in the
  message; defaults are lower case: `"text" "plain"`, `("charset" "us-ascii")`
  (added to text/* parts without a charset), `"7bit"`;
- body sizes are octets of the encoded body (bare LF counted as CRLF); text/*
  and message/rfc822 parts carry their line count;
- RFC 2231 continuations are merged; `name*=` values stay percent-encoded;
- only the first Content-Type/-ID/-Description/-MD5/-Language/-Location counts,
  and Content-* headers of non-MIME messages are ignored;
- ENVELOPE's Date, Subject, In-Reply-To and Message-ID come from the last
  occurrence of each header, CR and LF removed (Dovecot `imap_append_nstring_nolf`);
  the address fields of every occurrence are joined into one list; values are not
  decoded (encoded-words stay), Subject and display names have whitespace runs
  folded (Dovecot `imap_append_string_for_humans`), groups appear as
  `(NIL NIL "name" NIL) ... (NIL NIL NIL NIL)`, and unparsable addresses get
  Dovecot's `MISSING_MAILBOX` / `MISSING_DOMAIN` / `SYNTAX_ERROR` fillers;
- a message that is one text/plain part whose only parameter is charset=us-ascii,
  in 7bit, without other Content-* data, is written in the default form
  whatever the case of what it says (Dovecot `imap_bodystructure_is_plain_7bit()`:
  its index keeps a flag for such messages, not their words);
- a multipart without parts is written with one empty text/plain part;
- a multipart/* or message/rfc822 part not parsed as one (a limit was
  reached), and a digest's part without Content-Type past the limits, is
  written as `"application" "octet-stream"`, its parameters kept (Dovecot
  `part_is_truncated()`): as "message" "rfc822" it would need an envelope and
  a body it does not have.

All functions return the parenthesised value ready for a FETCH response.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailstandby.imap.mime import Message, Part
from mailstandby.imap.responses import nstring, nstring_nolf, string, string_for_humans
from mailstandby.imap.rfc822 import Address, Tokens, mime_params, parse_addresses

_EMPTY_BODY = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0'
_ENVELOPE_FIELDS = (
    b"date",
    b"subject",
    b"from",
    b"sender",
    b"reply-to",
    b"to",
    b"cc",
    b"bcc",
    b"in-reply-to",
    b"message-id",
)


@dataclass(slots=True)
class ContentData:
    """What a part's Content-* headers say (Dovecot `struct message_part_data`)."""

    type: bytes | None = None
    subtype: bytes = b""
    params: list[tuple[bytes, bytes]] = field(default_factory=list)
    id: bytes | None = None
    description: bytes | None = None
    encoding: bytes | None = None
    disposition: bytes | None = None
    disposition_params: list[tuple[bytes, bytes]] | None = None
    language: list[bytes] | None = None
    location: bytes | None = None
    md5: bytes | None = None


def content_data(part: Part) -> ContentData:
    data = ContentData()
    if not part.is_mime:
        return data
    for h in part.headers:
        name = h.name.lower()
        if name.startswith(b"content-"):
            _content_header(data, name[8:], h.value)
    return data


def _content_header(data: ContentData, name: bytes, value: bytes) -> None:
    if name == b"type" and data.type is None:
        _content_type(data, value)
    elif name == b"transfer-encoding" and data.encoding is None:
        tok = Tokens(value)
        tok.skip_lwsp()
        out = bytearray()
        if tok.mime_token(out) >= 0 and tok.skip_lwsp() == 0 and out:
            data.encoding = bytes(out)
    elif name == b"disposition" and data.disposition_params is None:
        tok = Tokens(value)
        tok.skip_lwsp()
        out = bytearray()
        if tok.mime_token(out) >= 0:
            data.disposition = bytes(out)
            data.disposition_params = mime_params(tok) or None
    elif name == b"language" and data.language is None:
        data.language = _languages(value) or None
    elif name in (b"id", b"description", b"location", b"md5"):
        attr = "md5" if name == b"md5" else name.decode("ascii")
        if getattr(data, attr) is None:
            setattr(data, attr, value)


def _content_type(data: ContentData, value: bytes) -> None:
    tok = Tokens(value)
    tok.skip_lwsp()
    out = bytearray()
    ret = tok.content_type(out)
    ctype, slash, subtype = bytes(out).partition(b"/")
    data.type, data.subtype = ctype, subtype if slash else b""
    if ret >= 0:
        data.params = mime_params(tok)


def _languages(value: bytes) -> list[bytes]:
    tok = Tokens(value)
    tok.skip_lwsp()
    langs: list[bytes] = []
    while True:
        out = bytearray()
        if tok.atom(out) < 0:
            break
        langs.append(bytes(out))
        if tok.cur() != 0x2C:
            break
        tok.pos += 1
        tok.skip_lwsp()
    return langs


# -- ENVELOPE -------------------------------------------------------------------------
def envelope(msg: Message, part: Part | None = None) -> bytes:
    """ENVELOPE of the message (or of the message inside a message/rfc822 `part`)."""
    target = msg.root if part is None else part
    if target.rfc822 and part is not None and target.children:
        target = target.children[0]
    return b"(" + _envelope_fields(target) + b")"


def _envelope_fields(part: Part) -> bytes:
    found: dict[bytes, bytes] = {}
    addrs: dict[bytes, list[Address]] = {k: [] for k in _ENVELOPE_FIELDS[2:8]}
    for h in part.headers:
        name = h.name.lower()
        if name in addrs:
            addrs[name] += parse_addresses(h.value)  # every occurrence's addresses, as in Dovecot
        elif name in _ENVELOPE_FIELDS:
            found[name] = h.value  # the last occurrence wins, as in Dovecot
    items = [
        nstring_nolf(found.get(b"date")),
        b"NIL" if b"subject" not in found else string_for_humans(found[b"subject"]),
        _address_list(addrs[b"from"]),
        _address_list(addrs[b"sender"] or addrs[b"from"]),
        _address_list(addrs[b"reply-to"] or addrs[b"from"]),
        _address_list(addrs[b"to"]),
        _address_list(addrs[b"cc"]),
        _address_list(addrs[b"bcc"]),
        nstring_nolf(found.get(b"in-reply-to")),
        nstring_nolf(found.get(b"message-id")),
    ]
    return b" ".join(items)


def _address_list(addresses: list[Address]) -> bytes:
    if not addresses:
        return b"NIL"
    return b"(" + b"".join(_address(a) for a in addresses) + b")"


def _address(a: Address) -> bytes:
    name = b"NIL" if a.name is None else string_for_humans(a.name)
    parts = [name] + [nstring(v, max_quoted=None) for v in (a.route, a.mailbox, a.domain)]
    return b"(" + b" ".join(parts) + b")"


# -- BODY / BODYSTRUCTURE -------------------------------------------------------------
def bodystructure(msg: Message, part: Part | None = None) -> bytes:
    """BODYSTRUCTURE (extension data included) of the message or of one part."""
    return b"(" + _write(msg, msg.root if part is None else part, extended=True) + b")"


def body(msg: Message, part: Part | None = None) -> bytes:
    """BODY: the non-extensible form of BODYSTRUCTURE."""
    return b"(" + _write(msg, msg.root if part is None else part, extended=False) + b")"


def _write(msg: Message, part: Part, *, extended: bool) -> bytes:
    data = content_data(part)
    if part.parent is None and _plain_7bit(part, data):
        size, lines = body_size(msg, part), body_lines(msg, part)
        return _PLAIN_7BIT + b" %d %d" % (size, lines) + (b" NIL NIL NIL NIL" if extended else b"")
    if part.multipart:
        return _write_multipart(msg, part, data, extended=extended)
    return _write_single(msg, part, data, extended=extended)


def _write_multipart(msg: Message, part: Part, data: ContentData, *, extended: bool) -> bytes:
    if part.children:
        children = b"".join(b"(" + _write(msg, child, extended=extended) + b")" for child in part.children)
    else:
        children = _EMPTY_BODY + (b" NIL NIL NIL NIL)" if extended else b")")
    out = children + b" " + _str(data.subtype)
    if extended:
        out += b" " + _params(data.params, default_charset=False) + _common(data)
    return out


def _write_single(msg: Message, part: Part, data: ContentData, *, extended: bool) -> bytes:
    if part.rfc822:
        head, text = b'"message" "rfc822"', False
    elif _truncated(part, data):
        head, text = b'"application" "octet-stream"', False
    elif data.type is None:
        head, text = b'"text" "plain"', True
    else:
        head, text = _str(data.type) + b" " + _str(data.subtype), data.type.lower() == b"text"
    items = [
        head,
        _params(data.params, default_charset=text),
        nstring_nolf(data.id),
        nstring_nolf(data.description),
        b'"7bit"' if data.encoding is None else _str(data.encoding),
        b"%d" % body_size(msg, part),
    ]
    if text:
        items.append(b"%d" % body_lines(msg, part))
    elif part.rfc822:
        child = part.children[0]
        items.append(b"(" + _envelope_fields(child) + b")")
        items.append(b"(" + _write(msg, child, extended=extended) + b")")
        items.append(b"%d" % body_lines(msg, part))
    out = b" ".join(items)
    if extended:
        out += b" " + nstring_nolf(data.md5) + _common(data)
    return out


_PLAIN_7BIT = b'"text" "plain" ("charset" "us-ascii") NIL NIL "7bit"'


def _plain_7bit(part: Part, data: ContentData) -> bool:
    """Dovecot imap_bodystructure_is_plain_7bit(): the root is text/plain, us-ascii, 7bit, nothing else."""
    if part.multipart or part.rfc822 or part.children or (data.type is not None and data.type.lower() != b"text"):
        return False
    if data.type is not None and data.subtype.lower() != b"plain":
        return False
    if data.params and (len(data.params) != 1 or [p.lower() for p in data.params[0]] != [b"charset", b"us-ascii"]):
        return False
    if data.encoding is not None and data.encoding.lower() != b"7bit":
        return False
    extra = (data.id, data.description, data.md5, data.disposition, data.language, data.location)
    return all(x is None for x in extra)


def _truncated(part: Part, data: ContentData) -> bool:
    """Dovecot part_is_truncated(): a container the parser left opaque (nesting or part limit)."""
    if data.type is None:
        return part.parent is not None and part.parent.digest  # would have been message/rfc822
    kind = data.type.lower()
    return kind == b"multipart" or (kind == b"message" and data.subtype.lower() == b"rfc822")


def _common(data: ContentData) -> bytes:
    """Extension data shared by all parts: disposition, language, location."""
    if data.disposition is None:
        disposition = b"NIL"
    else:
        params = _params(data.disposition_params or [], default_charset=False)
        disposition = b"(" + _str(data.disposition) + b" " + params + b")"
    language = b"NIL" if data.language is None else b"(" + b" ".join(_str(x) for x in data.language) + b")"
    return b" " + disposition + b" " + language + b" " + nstring_nolf(data.location)


def _params(params: list[tuple[bytes, bytes]], *, default_charset: bool) -> bytes:
    if not params and not default_charset:
        return b"NIL"
    items = [_str(k) + b" " + _str(v) for k, v in params]
    if default_charset and not any(k.lower() == b"charset" for k, _ in params):
        items.append(b'"charset" "us-ascii"')
    return b"(" + b" ".join(items) + b")"


def _str(value: bytes) -> bytes:
    return string(value, max_quoted=None)


def body_size(msg: Message, part: Part) -> int:
    """Octets of the encoded body, bare LF counted as CRLF (Dovecot virtual size)."""
    raw = msg.raw
    size = part.end - part.body_start
    return size + raw.count(b"\n", part.body_start, part.end) - raw.count(b"\r\n", part.body_start, part.end)


def body_lines(msg: Message, part: Part) -> int:
    return msg.raw.count(b"\n", part.body_start, part.end)
