"""RFC 5322 / RFC 2045 header-value tokens and address lists, as Dovecot reads them.

A byte-level port of the behaviour of Dovecot 2.3 `rfc822-parser.c`,
`rfc2231-parser.c` and `message-address.c` (flag FILL_MISSING), because ENVELOPE
and BODYSTRUCTURE must come out as Dovecot's do. Everything is bytes: header
values may be 8-bit, and nothing is decoded (encoded-words stay as they are,
RFC 3501 §7.4.2).

Return convention of the tokenizer methods, as in Dovecot: 1 = more input
follows, 0 = end of input, -1 = malformed. No method raises; every loop
consumes input, so each parse is linear in the value's length.
"""

from __future__ import annotations

from dataclasses import dataclass

# Dovecot rfc822_atext_chars: 1 = atext, 2 = alnum (and any 8-bit), 4 = atext but MIME tspecial
_ATEXT = bytearray(256)
for _c in b"!#$%&'*+-^_`{|}~":
    _ATEXT[_c] = 1
for _c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789":
    _ATEXT[_c] = 2
for _c in range(0x80, 0x100):
    _ATEXT[_c] = 2
for _c in b"/=?":
    _ATEXT[_c] = 4
_LWSP = b" \t\r\n"


class Tokens:
    """A cursor over one header value (Dovecot `struct rfc822_parser_context`)."""

    def __init__(self, data: bytes, *, keep_comments: bool = False) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.last_comment: bytearray | None = bytearray() if keep_comments else None

    def cur(self) -> int:
        """The byte at the cursor, or -1 at the end."""
        return self.data[self.pos] if self.pos < self.end else -1

    def skip_comment(self) -> int:
        data = self.data
        if self.last_comment is not None:
            self.last_comment.clear()
        self.pos += 1
        start = self.pos
        level = 1
        while self.pos < self.end:
            c = data[self.pos]
            if c == 0x28:
                level += 1
            elif c == 0x29:
                level -= 1
                if level == 0:
                    if self.last_comment is not None:
                        self.last_comment += data[start : self.pos]
                    self.pos += 1
                    return 1 if self.pos < self.end else 0
            elif c == 0x5C:
                if self.last_comment is not None:
                    self.last_comment += data[start : self.pos]
                start = self.pos + 1
                self.pos += 1
                if self.pos >= self.end:
                    return -1
            self.pos += 1
        return -1

    def skip_lwsp(self) -> int:
        data = self.data
        while self.pos < self.end:
            c = data[self.pos]
            if c in _LWSP:
                self.pos += 1
                continue
            if c != 0x28:
                break
            if self.skip_comment() < 0:
                return -1
        return 1 if self.pos < self.end else 0

    def _run(self, out: bytearray, accept: bytes | bytearray, extra: int = -2) -> int:
        """Append the run of bytes whose table entry is set (or == extra), then skip LWSP."""
        start = self.pos
        data = self.data
        while self.pos < self.end and (accept[data[self.pos]] or data[self.pos] == extra):
            self.pos += 1
        out += data[start : self.pos]
        return self.skip_lwsp() if self.pos < self.end else 0

    def atom(self, out: bytearray) -> int:
        if self.pos >= self.end or not _ATEXT[self.data[self.pos]]:
            return -1
        return self._run(out, _ATEXT)

    def dot_atom(self, out: bytearray) -> int:
        """dot-atom, allowing CFWS around the dots (RFC 822 compatibility)."""
        if self.pos >= self.end or not _ATEXT[self.data[self.pos]]:
            return -1
        while True:
            ret = self._run(out, _ATEXT)
            if ret <= 0:
                return ret
            if self.data[self.pos] != 0x2E:
                return 1
            self.pos += 1
            out.append(0x2E)
            ret = self.skip_lwsp()
            if ret <= 0:
                return ret

    def mime_token(self, out: bytearray) -> int:
        """RFC 2045 token (may be empty): atext except tspecials, plus "."."""
        return self._run(out, _TOKEN, 0x2E)

    def atom_or_dot(self, out: bytearray) -> int:
        return self._run(out, _ATEXT, 0x2E)

    def quoted_string(self, out: bytearray) -> int:
        data = self.data
        self.pos += 1
        start = self.pos
        while self.pos < self.end:
            c = data[self.pos]
            if c == 0x22:
                out += data[start : self.pos]
                self.pos += 1
                return self.skip_lwsp()
            if c == 0x0A:  # folding: drop the (CR)LF, keep the whitespace after it
                stop = self.pos - 1 if self.pos > start and data[self.pos - 1] == 0x0D else self.pos
                out += data[start:stop]
                start = self.pos + 1
            elif c == 0x5C:
                self.pos += 1
                if self.pos >= self.end:
                    return -1
                out += data[start : self.pos - 1]
                start = self.pos
            self.pos += 1
        return -1

    def phrase(self, out: bytearray) -> int:
        """phrase / obs-phrase: words joined by one space; may be empty when "<" follows."""
        if self.pos >= self.end:
            return 0
        if self.data[self.pos] == 0x2E:
            return -1
        while True:
            ret = self.quoted_string(out) if self.data[self.pos] == 0x22 else self.atom_or_dot(out)
            if ret <= 0:
                return ret
            c = self.data[self.pos]
            if not _ATEXT[c] and c not in (0x22, 0x2E):
                break
            out.append(0x20)
        return self.skip_lwsp()

    def domain(self, out: bytearray) -> int:
        """After "@": dot-atom or domain-literal (kept with its brackets)."""
        self.pos += 1
        if self.skip_lwsp() <= 0:
            return -1
        if self.data[self.pos] != 0x5B:
            return self.dot_atom(out)
        start = self.pos
        while self.pos < self.end:
            c = self.data[self.pos]
            if c == 0x5C:
                self.pos += 1
                if self.pos >= self.end:
                    break
            elif c == 0x5D:
                self.pos += 1
                out += self.data[start : self.pos]
                return self.skip_lwsp()
            self.pos += 1
        return -1

    def content_type(self, out: bytearray) -> int:
        """`type "/" subtype` into `out` (partial on failure, as Dovecot keeps it)."""
        if self.skip_lwsp() <= 0 or self.mime_token(out) <= 0 or self.data[self.pos] != 0x2F:
            return -1
        self.pos += 1
        if self.skip_lwsp() <= 0:
            return -1
        out.append(0x2F)
        return self.mime_token(out)

    def content_param(self) -> tuple[int, bytes, bytes]:
        """`; attribute = value`; (0, ...) at the end, (-1, ...) when malformed."""
        if self.pos >= self.end:
            return 0, b"", b""
        if self.data[self.pos] != 0x3B or self._skip_one() <= 0:
            return -1, b"", b""
        key = bytearray()
        if self.mime_token(key) <= 0 or self.data[self.pos] != 0x3D:
            return -1, b"", b""
        self.pos += 1
        value = bytearray()
        ret = self.skip_lwsp()
        if ret > 0:
            c = self.data[self.pos]
            if c == 0x22:
                ret = self.quoted_string(value)
            elif c == 0x3D:  # broken input: name==?utf-8?b?...?=
                while self.pos < self.end and self.data[self.pos] not in b"; \t\r\n":
                    value.append(self.data[self.pos])
                    self.pos += 1
            else:
                ret = self.mime_token(value)
        return (-1 if ret < 0 else 1), bytes(key), bytes(value)

    def _skip_one(self) -> int:
        self.pos += 1
        return self.skip_lwsp()


_TOKEN = bytearray(1 if v & 3 else 0 for v in _ATEXT)


def mime_params(tok: Tokens) -> list[tuple[bytes, bytes]]:
    """RFC 2045 parameters with RFC 2231 continuations merged (Dovecot `rfc2231_parse`).

    Plain parameters come first in their order; merged ones follow, sorted by
    name. A complete `name*0*`/`name*1` set becomes `name*` (charset'lang'value
    kept encoded); a set with a missing index is passed through unmerged.
    """
    plain: list[tuple[bytes, bytes]] = []
    split: list[tuple[bytes, int, bool, bytes]] = []
    idx = 0  # Dovecot keeps the previous index for a bare "name*"
    while True:
        ret, key, value = tok.content_param()
        if ret == 0:
            break
        if ret < 0:
            if tok.pos >= tok.end:
                break
            tok.pos += 1
            continue
        star = key.find(b"*")
        if star < 0:
            plain.append((key, value))
            continue
        p = star
        if p + 1 < len(key):
            p += 1
            idx = 0
            while p < len(key) and 0x30 <= key[p] <= 0x39:
                idx = idx * 10 + key[p] - 0x30
                p += 1
        extended = p < len(key) and key[p] == 0x2A
        if extended:
            p += 1
        if p == len(key):
            split.append((key[:star], idx, extended, value))
        else:
            plain.append((key, value))
    return plain + _merge_2231(split)


def _merge_2231(split: list[tuple[bytes, int, bool, bytes]]) -> list[tuple[bytes, bytes]]:
    split.sort(key=lambda s: (s[0], s[1]))
    out: list[tuple[bytes, bytes]] = []
    i = 0
    while i < len(split):
        j = i
        ok = True
        extended = False
        while j < len(split) and split[j][0].lower() == split[i][0].lower():
            ok = ok and split[j][1] == j - i
            extended = extended or split[j][2]
            j += 1
        group = split[i:j]
        if not ok:
            out.extend((k + b"*%d" % n + (b"*" if e else b""), v) for k, n, e, v in group)
        else:
            value = b"''" if extended and not group[0][2] else b""
            for _, _, e, v in group:
                value += v.replace(b"%", b"%25") if extended and not e else v
            out.append((group[0][0] + (b"*" if extended else b""), value))
        i = j
    return out


@dataclass(slots=True)
class Address:
    """One ENVELOPE address; a group is opened by (None, None, name, None) and closed by all None."""

    name: bytes | None = None
    route: bytes | None = None
    mailbox: bytes | None = None
    domain: bytes | None = None
    invalid: bool = False


MAX_ADDRESSES = 10_000


class _AddressParser:
    """Dovecot `message_address_parse(..., FILL_MISSING)`, step for step."""

    def __init__(self, value: bytes) -> None:
        self.tok = Tokens(value, keep_comments=True)
        self.out: list[Address] = []
        self.addr = Address()
        self.str = bytearray()

    def add(self) -> None:
        self.out.append(self.addr)
        self.addr = Address()

    def add_fixed(self) -> None:
        if self.addr.mailbox is None:
            self.addr.mailbox = b"MISSING_MAILBOX"
        if not self.addr.domain:
            self.addr.domain = b"MISSING_DOMAIN"
        self.add()

    def local_part(self) -> int:
        self.str = bytearray()
        tok = self.tok
        ret = tok.quoted_string(self.str) if tok.cur() == 0x22 else tok.dot_atom(self.str)
        if ret < 0:
            return -1
        self.addr.mailbox = bytes(self.str)
        return ret

    def domain(self) -> int:
        out = bytearray()
        ret = self.tok.domain(out)
        if ret < 0:
            return -1
        self.addr.domain = bytes(out)
        return ret

    def domain_list(self) -> int:
        tok = self.tok
        out = bytearray()
        while True:
            if tok.pos >= tok.end:
                return 0
            if tok.cur() != 0x40:
                break
            if out:
                out.append(0x2C)
            out.append(0x40)
            ret = tok.domain(out)
            if ret <= 0:
                return ret
            while tok.skip_lwsp() > 0 and tok.cur() == 0x2C:
                tok.pos += 1
        self.addr.route = bytes(out)
        return 1

    def angle_addr(self) -> int:
        tok = self.tok
        tok.pos += 1
        if tok.skip_lwsp() <= 0:
            return -1
        if tok.cur() == 0x40:
            if self.domain_list() > 0 and tok.cur() == 0x3A:
                tok.pos += 1
            else:
                self.addr.route = b"INVALID_ROUTE"
                if tok.pos >= tok.end:
                    return -1
            if tok.skip_lwsp() <= 0:
                return -1
        if tok.cur() != 0x3E:
            if self.local_part() <= 0:
                return -1
            if tok.cur() == 0x40 and self.domain() <= 0:
                return -1
        if tok.cur() != 0x3E:
            return -1
        tok.pos += 1
        return tok.skip_lwsp()

    def name_addr(self) -> int:
        tok = self.tok
        name = bytearray()
        if tok.phrase(name) <= 0 or tok.cur() != 0x3C:
            return -1
        self.addr.name = bytes(name) or None
        if self.angle_addr() < 0:
            self.addr.domain = b"SYNTAX_ERROR"
            self.addr.invalid = True
        return 1 if tok.pos < tok.end else 0

    def addr_spec(self) -> int:
        tok = self.tok
        assert tok.last_comment is not None
        tok.last_comment.clear()
        quoted = tok.cur() == 0x22
        ret = self.local_part()
        if ret <= 0:
            self.addr.invalid = True
        ret2 = -2
        if ret != 0 and tok.cur() == 0x40:
            ret2 = self.domain()
            if ret2 <= 0:
                ret = ret2
        if tok.last_comment:
            self.addr.name = bytes(tok.last_comment)
        elif ret2 == -2:
            self.str.append(0x20)
            before = len(self.str)
            tok.phrase(self.str)
            if len(self.str) != before:
                self.addr.mailbox = None
                self.addr.name = bytes(self.str)
            elif not quoted:
                self.addr.domain = b""
            self.addr.invalid = True
            ret = -1
        return ret

    def mailbox(self) -> int:
        start = self.tok.pos
        ret = self.name_addr()
        if ret < 0:
            self.tok.pos = start
            ret = self.addr_spec()
            a = self.addr
            if a.invalid and a.name is None and a.mailbox is not None and a.domain is None:
                a.name, a.mailbox = a.mailbox, None
        if ret < 0:
            self.addr.invalid = True
        self.add_fixed()
        return ret

    def group(self) -> int:
        tok = self.tok
        name = bytearray()
        if tok.phrase(name) <= 0 or tok.cur() != 0x3A:
            return -1
        tok.pos += 1
        ret = tok.skip_lwsp()
        self.addr.mailbox = bytes(name)
        self.add()
        if ret > 0 and tok.cur() != 0x3B:
            while len(self.out) < MAX_ADDRESSES:
                self.mailbox()
                if tok.cur() != 0x2C:
                    break
                tok.pos += 1
                if tok.skip_lwsp() <= 0:
                    ret = -1
                    break
        if ret >= 0:
            if tok.cur() != 0x3B:
                ret = -1
            else:
                tok.pos += 1
                ret = tok.skip_lwsp()
        self.add()
        return 0 if ret == 0 else 1

    def address(self) -> int:
        start = self.tok.pos
        ret = self.group()
        if ret < 0:
            self.tok.pos = start
            ret = self.mailbox()
        return ret

    def address_list(self) -> list[Address]:
        tok = self.tok
        if tok.skip_lwsp() <= 0:
            return self.out
        while len(self.out) < MAX_ADDRESSES:
            if self.address() == 0:
                break
            if tok.cur() != 0x2C:
                break
            tok.pos += 1
            ret = tok.skip_lwsp()
            if ret <= 0:
                if ret < 0:
                    self.add_fixed()
                break
        return self.out


def parse_addresses(value: bytes) -> list[Address]:
    """An address-list header value (unfolded) as ENVELOPE addresses; [] if it holds none."""
    return _AddressParser(value).address_list()
