"""The MIME structure of a stored message, with exact offsets, and BODY[section] extraction.

`Message(raw)` splits the raw bytes into a tree of `Part`s the way Dovecot 2.3's
message parser does (RFC 2045/2046 as implemented, not as idealised), because
BODYSTRUCTURE sizes and BODY[section] octets must match Dovecot's:

- a header ends at the first empty line, at EOF, or at a line that is an active
  boundary (then the newline before it belongs to the boundary);
- a boundary line is `--` + the boundary of any enclosing multipart as a
  *prefix* (innermost first, longest wins), at the start of a body or after an
  LF; the [CR]LF before it is not part of the preceding body; `--b--` ends that
  multipart and everything inside it;
- a missing final boundary or a truncated message is not an error: open parts
  end at EOF;
- Content-* headers count only in MIME parts (inside a multipart, or with a
  Content-Type or MIME-Version header); parts without Content-Type are
  text/plain, or message/rfc822 directly under multipart/digest;
- limits (RELIABILITY, Dovecot defaults): at most `MAX_NESTED` levels (a deeper
  multipart or message/rfc822 becomes an opaque leaf) and `MAX_PARTS` parts (the
  last one takes everything to EOF). Nothing here raises on malformed input.

Sizes are "virtual" (bare LF counted as CRLF) and extracted sections are sent
CRLF-normalised with NUL replaced by 0x80, as Dovecot sends them. <partial> is
applied by the caller. BODYSTRUCTURE/ENVELOPE writers are in `bodystructure`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailstandby.imap.rfc822 import Tokens, mime_params

MAX_NESTED = 100  # Dovecot MESSAGE_PARSER_DEFAULT_MAX_NESTED_MIME_PARTS
MAX_PARTS = 10_000  # Dovecot MESSAGE_PARSER_DEFAULT_MAX_TOTAL_MIME_PARTS
MAX_BOUNDARY = 80  # Dovecot BOUNDARY_STRING_MAX_LEN (RFC 2046 allows 70)
_BOUNDARY_SCAN = MAX_BOUNDARY + 4


@dataclass(slots=True)
class HeaderField:
    name: bytes  # as written, without trailing whitespace before ":"
    lines: list[bytes]  # the first line's value (leading LWSP skipped), then continuation lines
    start: int  # offsets of the raw lines (for HEADER.FIELDS)
    end: int

    @property
    def value(self) -> bytes:
        """Unfolded the Dovecot way: continuation lines joined by LF, their whitespace kept."""
        return self.lines[0] if len(self.lines) == 1 else b"\n".join(self.lines)


@dataclass(slots=True, eq=False)
class Part:
    start: int
    depth: int
    parent: Part | None = None
    is_mime: bool = False
    body_start: int = 0
    end: int = 0
    eoh: bool = False  # the header ended with an empty line
    multipart: bool = False
    rfc822: bool = False
    text: bool = False
    digest: bool = False
    overflow: bool = False
    boundary: bytes | None = None
    headers: list[HeaderField] = field(default_factory=list)
    children: list[Part] = field(default_factory=list)

    def header(self, name: str) -> HeaderField | None:
        """The first header field with this name (case-insensitive)."""
        key = name.lower().encode("ascii")
        return next((h for h in self.headers if h.name.lower() == key), None)


@dataclass(slots=True, eq=False)
class _Boundary:
    token: bytes
    part: Part


class _Parser:
    def __init__(self, buf: bytes, max_nested: int, max_parts: int) -> None:
        self.buf = buf
        self.n = len(buf)
        self.max_nested = max_nested
        self.max_parts = max_parts
        self.boundaries: list[_Boundary] = []  # innermost last
        self.stack: list[Part] = []
        self.count = 0

    def run(self) -> Part:
        root = self._open(None, 0, is_mime=False)
        part, pos, in_header = root, 0, True
        while True:
            if in_header:
                hit = self._header(part, pos)
                if hit is None:
                    part, pos, in_header = self._after_header(part)
                    continue
                part, pos, in_header = self._on_boundary(*hit, cut_header=part)
                continue
            hit = self._scan_body(pos) if self.boundaries else None
            if hit is None:
                break
            part, pos, in_header = self._on_boundary(*hit)
        for open_part in self.stack:
            open_part.end = self.n
        return root

    # -- parts --------------------------------------------------------------------------
    def _open(self, parent: Part | None, pos: int, *, is_mime: bool) -> Part:
        part = Part(pos, 0 if parent is None else parent.depth + 1, parent, is_mime)
        if parent is not None:
            parent.children.append(part)
        self.stack.append(part)
        self.count += 1
        if self.count >= self.max_parts:
            part.overflow = True
            self.boundaries.clear()  # the last allowed part runs to EOF
        return part

    def _end_header(self, part: Part) -> None:
        """Flags from the header, then the limits; a multipart whose header ended properly opens its boundary."""
        _classify(part)
        if (part.multipart or part.rfc822) and (part.overflow or part.depth + 1 >= self.max_nested):
            part.multipart = part.rfc822 = False  # too deep, or the last part allowed: an opaque leaf
            part.overflow = True
        if part.multipart and part.eoh and part.boundary is not None:
            self.boundaries.append(_Boundary(part.boundary, part))

    def _after_header(self, part: Part) -> tuple[Part, int, bool]:
        if part.rfc822:
            return self._open(part, part.body_start, is_mime=False), part.body_start, True
        return part, part.body_start, False

    def _on_boundary(
        self, boundary: _Boundary, body_end: int, line: int, cut_header: Part | None = None
    ) -> tuple[Part, int, bool]:
        """Close everything inside `boundary.part` at `body_end` and continue after the boundary line.

        When the boundary ended the header of a message/rfc822 part's message, Dovecot has
        already counted the newline before it into that message/rfc822 part: its body runs
        up to the boundary line (the message's own header still ends at `body_end`).
        """
        if boundary not in self.boundaries:  # dropped when the part limit was reached: run to EOF
            return self.stack[-1], self.n, False
        while self.stack[-1] is not boundary.part:
            done = self.stack.pop()
            keeps_newline = cut_header is not None and done.rfc822 and cut_header.parent is done
            done.end = line if keeps_newline else body_end
        index = self.boundaries.index(boundary)
        epilogue = self.buf[line + 2 + len(boundary.token) : line + 4 + len(boundary.token)] == b"--"
        del self.boundaries[index if epilogue else index + 1 :]
        lf = self.buf.find(b"\n", line)
        pos = self.n if lf < 0 else lf + 1
        if epilogue:
            return boundary.part, pos, False
        return self._open(boundary.part, pos, is_mime=True), pos, True

    # -- header -------------------------------------------------------------------------
    def _header(self, part: Part, pos: int) -> tuple[_Boundary, int, int] | None:
        """Read `part`'s header from `pos`; a boundary line ends it early (returned as a hit)."""
        buf = self.buf
        while pos < self.n:
            found = self._foreign_boundary(part, pos)
            if found is not None:
                cut = pos
                if pos > part.start:  # the newline before a boundary belongs to the boundary
                    cut -= 2 if buf[pos - 2 : pos] == b"\r\n" else 1
                self._end_header(part)
                return self._cut(part, cut, pos, found)
            lf = buf.find(b"\n", pos)
            next_pos = self.n if lf < 0 else lf + 1
            line_end = self.n if lf < 0 else (lf - 1 if lf > pos and buf[lf - 1] == 0x0D else lf)
            if lf >= 0 and line_end == pos:
                part.eoh = True
                part.body_start = next_pos
                self._end_header(part)
                found = self._foreign_boundary(part, next_pos)
                # Dovecot checks for a boundary before it ends the header: one right after
                # the empty line takes that line's newline (test-message-parser.c).
                return None if found is None else self._cut(part, pos, next_pos, found)
            _add_header_line(part, buf, pos, line_end, next_pos)
            pos = next_pos
        part.body_start = self.n
        self._end_header(part)
        return None

    def _foreign_boundary(self, part: Part, pos: int) -> _Boundary | None:
        """A boundary line at `pos` that is not `part`'s own (its body may start with that)."""
        if not self.boundaries or not self.buf.startswith(b"--", pos):
            return None
        found = self._boundary_at(pos)
        return None if found is None or found.part is part else found

    def _cut(self, part: Part, cut: int, line: int, found: _Boundary) -> tuple[_Boundary, int, int]:
        part.body_start = cut
        if part.rfc822:  # its message is empty: open (and, at the boundary, close) it here
            child = self._open(part, cut, is_mime=False)
            child.body_start = cut
            self._end_header(child)
        return found, cut, line

    # -- boundaries ---------------------------------------------------------------------
    def _scan_body(self, pos: int) -> tuple[_Boundary, int, int] | None:
        """The first boundary line at `pos` or after an LF: (boundary, body end, line start)."""
        buf = self.buf
        if buf.startswith(b"--", pos):
            found = self._boundary_at(pos)
            if found is not None:
                return found, pos, pos
        i = buf.find(b"\n--", pos)
        while i >= 0:
            found = self._boundary_at(i + 1)
            if found is not None:
                end = i - 1 if i > pos and buf[i - 1] == 0x0D else i
                return found, end, i + 1
            i = buf.find(b"\n--", i + 1)
        return None

    def _boundary_at(self, line: int) -> _Boundary | None:
        """Dovecot boundary_line_find(): the longest active boundary prefixing the line after "--".

        Innermost boundaries are tried first and an exact match stops the search;
        "exact" includes the line being the boundary plus "--" (it may be the
        closing line of that boundary, or a longer boundary that ends in dashes).
        """
        buf = self.buf
        data = line + 2
        lf = buf.find(b"\n", data)
        trailing_dash = False
        if lf < 0:
            size = min(self.n - data, _BOUNDARY_SCAN)
        else:
            size = lf - data
            if size > 0 and buf[lf - 1] == 0x0D:
                size -= 1
            trailing_dash = size > 2 and buf[data + size - 2 : data + size] == b"--"
        best: _Boundary | None = None
        for boundary in reversed(self.boundaries):
            length = len(boundary.token)
            if length <= size and buf.startswith(boundary.token, data) and (best is None or len(best.token) < length):
                best = boundary
                if length == size or (trailing_dash and length == size - 2):
                    break
        return best


def _add_header_line(part: Part, buf: bytes, pos: int, line_end: int, next_pos: int) -> None:
    """One physical header line: a continuation of the previous field, or a new field."""
    line = buf[pos:line_end].replace(b"\x00", "\ufffd".encode())
    if part.headers and line[:1] in (b" ", b"\t"):
        last = part.headers[-1]
        last.lines.append(line)
        last.end = next_pos
        return
    colon = line.find(b":")
    if colon < 0:
        part.headers.append(HeaderField(line, [b""], pos, next_pos))
        return
    value = line[colon + 1 :]
    stripped = value.lstrip(b" \t")
    if not stripped and value:
        stripped = value[1:]  # all LWSP: Dovecot skips only the first
    part.headers.append(HeaderField(line[:colon].rstrip(b" \t"), [stripped], pos, next_pos))


def _classify(part: Part) -> None:
    """Dovecot message-parser flags from the first Content-Type and from MIME-Version."""
    content_type: HeaderField | None = None
    for h in part.headers:
        lname = h.name.lower()
        if lname == b"mime-version":
            part.is_mime = True
        elif lname == b"content-type":
            part.is_mime = True
            content_type = content_type or h
    if content_type is not None and part.is_mime:
        _content_type_flags(part, content_type.value)
    else:
        part.multipart = part.rfc822 = part.text = part.digest = False
        parent = part.parent
        if parent is not None and parent.digest:
            part.rfc822 = True
        else:
            part.text = True


def _content_type_flags(part: Part, value: bytes) -> None:
    tok = Tokens(value)
    out = bytearray()
    ret = tok.content_type(out)
    ctype = bytes(out).lower()
    part.rfc822 = ctype == b"message/rfc822"
    part.text = ctype.startswith(b"text") and (len(ctype) == 4 or ctype[4:5] == b"/")
    part.multipart = ctype.startswith(b"multipart/")
    part.digest = part.multipart and ctype[10:] == b"digest"
    if ret < 0 or not part.multipart:
        return
    for key, param in mime_params(tok):
        if key.lower() == b"boundary":
            part.boundary = param[:MAX_BOUNDARY]
            return


def _crlf(data: bytes) -> bytes:
    """Dovecot's output form: bare LF sent as CRLF, NUL as 0x80."""
    if b"\n" in data and data.count(b"\n") != data.count(b"\r\n"):
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return data.replace(b"\x00", b"\x80") if b"\x00" in data else data


class Message:
    """A parsed message: the part tree plus RFC 3501 §6.4.5 BODY[section] extraction."""

    def __init__(self, raw: bytes, *, max_nested: int = MAX_NESTED, max_parts: int = MAX_PARTS) -> None:
        self.raw = raw
        self._limits = (max_nested, max_parts)
        self._root: Part | None = None

    @property
    def root(self) -> Part:
        """The part tree, parsed on first use (a whole-message BODY[] needs none)."""
        if self._root is None:
            self._root = _Parser(self.raw, *self._limits).run()
        return self._root

    @property
    def virtual_size(self) -> int:
        """RFC822.SIZE as Dovecot reports it: octets as sent, bare LF counted as CRLF."""
        return len(self.raw) + self.raw.count(b"\n") - self.raw.count(b"\r\n")

    def header_bytes(self, part: Part) -> bytes:
        return self.raw[part.start : part.body_start]

    def body_bytes(self, part: Part) -> bytes:
        return self.raw[part.body_start : part.end]

    def find(self, path: tuple[int, ...]) -> Part | None:
        """Dovecot imap_msgpart_find(): numbered parts, descending through message/rfc822."""
        part: Part | None = self.root
        for i, num in enumerate(path):
            assert part is not None
            more = i + 1 < len(path)
            if part.multipart:
                part = part.children[num - 1] if num <= len(part.children) else None
            elif num != 1 or (more and not part.rfc822):
                part = None
            if part is None:
                return None
            if part.rfc822 and more:
                part = part.children[0] if part.children else None
        return part

    def section(self, part: tuple[int, ...] = (), text: str | None = None, fields: tuple[str, ...] = ()) -> bytes:
        """The octets of BODY[part.text (fields)]; b"" when the part does not exist (as Dovecot)."""
        if not part and text is None:
            return _crlf(self.raw)  # the whole message: no parsing needed
        target = self.find(part)
        if target is None:
            return b""
        if text is None:
            return _crlf(self.raw if not part else self.body_bytes(target))
        if text == "MIME":
            return _crlf(self.header_bytes(target)) if part else b""
        if part:
            if not target.rfc822 or not target.children:
                return b""
            target = target.children[0]
        if text == "HEADER":
            return _crlf(self.header_bytes(target))
        if text == "TEXT":
            return _crlf(self.body_bytes(target))
        return self._header_fields(target, fields, exclude=text == "HEADER.FIELDS.NOT")

    def _header_fields(self, part: Part, fields: tuple[str, ...], *, exclude: bool) -> bytes:
        """Dovecot istream-header-filter: whole fields in message order (with their newline even
        when a boundary ended the header), then CRLF for the empty line; HEADER.FIELDS adds it also
        when the header had none (after a last line cut off at EOF it ends that line), while
        HEADER.FIELDS.NOT does not (as Dovecot 2.3 answers)."""
        wanted = {f.lower().encode("utf-8") for f in fields}
        out = [self.raw[h.start : h.end] for h in part.headers if (h.name.lower() in wanted) != exclude]
        if part.eoh or not exclude:
            out.append(b"\r\n")
        return _crlf(b"".join(out))
