"""A strict reader of the IMAP values a server sends, and the RFC 3501 §9 grammar of BODY,
BODYSTRUCTURE and ENVELOPE over them; for the fuzz targets, not for the server.

`read(wire)` parses one value (list, NIL, number, quoted string, literal) and
nothing after it; quoted strings are 7-bit without CR, LF or NUL, and list items
are separated by one SP except where the grammar puts nothing between
parenthesised items (`1*body`, `1*address`). Strings come back as `Str`, lists
as `Lst` (which remembers where an SP stood), NIL as None, numbers as int.
`body(value, extended)` and `envelope(value)` raise `GrammarError` naming the
rule that does not hold.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_NUMBER = 2**32 - 1


class GrammarError(AssertionError):
    """Server output that RFC 3501 §9 does not allow."""


@dataclass(frozen=True)
class Str:
    value: bytes


@dataclass
class Lst:
    items: list[object]
    spaced: list[bool]  # spaced[i]: an SP stood before items[i] (i > 0)


Value = object


def read(wire: bytes) -> Value:
    value, pos = _value(wire, 0)
    if pos != len(wire):
        raise GrammarError(f"trailing bytes at {pos}: {wire[pos : pos + 20]!r}")
    return value


def _value(wire: bytes, pos: int) -> tuple[Value, int]:
    if pos >= len(wire):
        raise GrammarError("value expected at end of input")
    c = wire[pos]
    if c == 0x28:
        return _list(wire, pos + 1)
    if c == 0x22:
        return _quoted(wire, pos + 1)
    if c == 0x7B:
        return _literal(wire, pos + 1)
    if wire.startswith(b"NIL", pos):
        return None, pos + 3
    end = pos
    while end < len(wire) and 0x30 <= wire[end] <= 0x39:
        end += 1
    if end == pos:
        raise GrammarError(f"unexpected {wire[pos : pos + 20]!r} at {pos}")
    number = int(wire[pos:end])
    if number > MAX_NUMBER:
        raise GrammarError(f"number {number} out of range")
    return number, end


def _list(wire: bytes, pos: int) -> tuple[Lst, int]:
    out = Lst([], [])
    if wire[pos : pos + 1] == b")":
        return out, pos + 1
    while True:
        spaced = wire[pos : pos + 1] == b" "
        if spaced and not out.items:
            raise GrammarError("SP after (")
        pos += spaced
        item, pos = _value(wire, pos)
        out.items.append(item)
        out.spaced.append(spaced)
        if wire[pos : pos + 1] == b")":
            return out, pos + 1
        if wire[pos : pos + 1] != b" " and wire[pos : pos + 1] != b"(":
            raise GrammarError(f"SP or ) expected at {pos}: {wire[pos : pos + 20]!r}")


def _quoted(wire: bytes, pos: int) -> tuple[Str, int]:
    out = bytearray()
    while True:
        if pos >= len(wire):
            raise GrammarError("unterminated quoted string")
        c = wire[pos]
        if c == 0x22:
            return Str(bytes(out)), pos + 1
        if c == 0x5C:
            if wire[pos + 1 : pos + 2] not in (b'"', b"\\"):
                raise GrammarError("bad escape in quoted string")
            out.append(wire[pos + 1])
            pos += 2
            continue
        if c in (0x00, 0x0D, 0x0A) or c >= 0x80:
            raise GrammarError(f"octet {c:#x} in a quoted string")
        out.append(c)
        pos += 1


def _literal(wire: bytes, pos: int) -> tuple[Str, int]:
    close = wire.find(b"}\r\n", pos)
    digits = wire[pos:close] if close >= 0 else b""
    if not digits.isdigit():
        raise GrammarError("bad literal announcement")
    start = close + 3
    data = wire[start : start + int(digits)]
    if len(data) != int(digits):
        raise GrammarError("literal shorter than announced")
    if b"\x00" in data:
        raise GrammarError("NUL in a literal")
    return Str(data), start + len(data)


# -- RFC 3501 §9 ---------------------------------------------------------------------------
def _need(ok: bool, rule: str, value: Value) -> None:
    if not ok:
        raise GrammarError(f"{rule}: {value!r}"[:400])


def _nstring(v: Value, rule: str) -> None:
    _need(v is None or isinstance(v, Str), rule, v)


def _string(v: Value, rule: str) -> None:
    _need(isinstance(v, Str), rule, v)


def _spaced(v: Lst, rule: str) -> None:
    _need(all(v.spaced[1:]), f"{rule} (items separated by SP)", v)


def _params(v: Value) -> None:
    """body-fld-param = "(" string SP string *(SP string SP string) ")" / nil"""
    if v is None:
        return
    _need(isinstance(v, Lst) and v.items and len(v.items) % 2 == 0, "body-fld-param", v)
    assert isinstance(v, Lst)
    _spaced(v, "body-fld-param")
    for item in v.items:
        _string(item, "body-fld-param string")


def _ext(items: list[Value], rule: str) -> None:
    """[SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc *(SP body-extension)]]] after md5/param."""
    if items:
        dsp = items[0]
        if dsp is not None:
            _need(isinstance(dsp, Lst) and len(dsp.items) == 2, f"{rule} body-fld-dsp", dsp)
            assert isinstance(dsp, Lst)
            _spaced(dsp, "body-fld-dsp")
            _string(dsp.items[0], "body-fld-dsp type")
            _params(dsp.items[1])
    if len(items) > 1:
        lang = items[1]
        if isinstance(lang, Lst):
            _need(bool(lang.items), "body-fld-lang list", lang)
            _spaced(lang, "body-fld-lang")
            for item in lang.items:
                _string(item, "body-fld-lang string")
        else:
            _nstring(lang, "body-fld-lang")
    if len(items) > 2:
        _nstring(items[2], "body-fld-loc")


def body(v: Value, *, extended: bool) -> None:
    """body = "(" (body-type-1part / body-type-mpart) ")"; BODY has no extension data."""
    _need(isinstance(v, Lst) and bool(v.items), "body", v)
    assert isinstance(v, Lst)
    if isinstance(v.items[0], Lst):
        _multipart(v, extended=extended)
    else:
        _single(v, extended=extended)


def _multipart(v: Lst, *, extended: bool) -> None:
    """body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]"""
    n = 0
    while n < len(v.items) and isinstance(v.items[n], Lst):
        _need(n == 0 or not v.spaced[n], "1*body (no SP between bodies)", v)
        body(v.items[n], extended=extended)
        n += 1
    rest = v.items[n:]
    _need(bool(rest) and all(v.spaced[n:]), "body-type-mpart SP media-subtype", v)
    _string(rest[0], "media-subtype")
    if not extended:
        _need(len(rest) == 1, "BODY: no extension data", v)
        return
    if len(rest) > 1:
        _params(rest[1])
        _ext(rest[2:], "body-ext-mpart")


def _single(v: Lst, *, extended: bool) -> None:
    """body-type-basic / body-type-msg / body-type-text, then [SP body-ext-1part]"""
    items = v.items
    _spaced(v, "body-type-1part")
    _need(len(items) >= 7, "body-type-1part: media type and body-fields", v)
    _string(items[0], "media type")
    _string(items[1], "media subtype")
    _params(items[2])
    _nstring(items[3], "body-fld-id")
    _nstring(items[4], "body-fld-desc")
    _string(items[5], "body-fld-enc")
    _need(isinstance(items[6], int), "body-fld-octets", items[6])
    kind = (items[0].value.upper(), items[1].value.upper())  # type: ignore[union-attr]
    n = 7
    if kind == (b"MESSAGE", b"RFC822"):
        _need(len(items) >= 10, "body-type-msg: envelope SP body SP body-fld-lines", v)
        envelope(items[7])
        body(items[8], extended=extended)
        _need(isinstance(items[9], int), "body-fld-lines", items[9])
        n = 10
    elif kind[0] == b"TEXT":
        _need(len(items) >= 8 and isinstance(items[7], int), "body-type-text: body-fld-lines", v)
        n = 8
    rest = items[n:]
    if not extended:
        _need(not rest, "BODY: no extension data", v)
        return
    if rest:
        _nstring(rest[0], "body-fld-md5")
        _ext(rest[1:], "body-ext-1part")


def envelope(v: Value) -> None:
    """envelope = "(" env-date SP env-subject SP env-from SP ... SP env-message-id ")" """
    _need(isinstance(v, Lst) and len(v.items) == 10, "envelope: ten fields", v)
    assert isinstance(v, Lst)
    _spaced(v, "envelope")
    for i in (0, 1, 8, 9):
        _nstring(v.items[i], "env-date / env-subject / env-in-reply-to / env-message-id")
    for addresses in v.items[2:8]:
        if addresses is None:
            continue
        _need(isinstance(addresses, Lst) and bool(addresses.items), "env address list: 1*address / nil", addresses)
        assert isinstance(addresses, Lst)
        _need(not any(addresses.spaced[1:]), "1*address (no SP between addresses)", addresses)
        for address in addresses.items:
            _need(isinstance(address, Lst) and len(address.items) == 4, "address: four fields", address)
            assert isinstance(address, Lst)
            _spaced(address, "address")
            for item in address.items:
                _nstring(item, "addr-name / addr-adl / addr-mailbox / addr-host")


def strip_extensions(v: Value) -> Value:
    """A BODYSTRUCTURE value without its extension data: what BODY must be."""
    assert isinstance(v, Lst)
    if isinstance(v.items[0], Lst):
        n = 0
        while isinstance(v.items[n], Lst):
            n += 1
        items = [strip_extensions(x) for x in v.items[:n]] + [v.items[n]]
        return Lst(items, v.spaced[: n + 1])
    kind = (v.items[0].value.upper(), v.items[1].value.upper())  # type: ignore[union-attr]
    if kind == (b"MESSAGE", b"RFC822"):
        items = [*v.items[:8], strip_extensions(v.items[8]), v.items[9]]
    else:
        items = v.items[: 8 if kind[0] == b"TEXT" else 7]
    return Lst(items, v.spaced[: len(items)])
