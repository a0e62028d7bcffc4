"""Modified UTF-7 for IMAP mailbox names (RFC 3501 §5.1.3), both directions.

Pure functions over str; no I/O. Invariants:
- `encode()` emits printable US-ASCII only: 0x20-0x7E stand for themselves except
  "&", which becomes "&-"; every other run of characters is UTF-16BE in modified
  BASE64 ("," instead of "/", no "=" padding) between "&" and "-".
- `decode()` is strict and raises `MUTF7Error` on anything `encode()` would not
  produce: 8-bit bytes, unterminated or empty shifts, bad BASE64, non-zero pad
  bits, unpaired surrogates, printable ASCII smuggled inside a shift, and two
  shifts back to back ("&AOQ-&AOQ-", which must be one run). So
  `decode(encode(s)) == s` for every str, and `encode(decode(b)) == b` whenever
  decode succeeds (one spelling per name: no aliasing of mailbox names).
"""

from __future__ import annotations

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"
_B64_VALUE = {ch: i for i, ch in enumerate(_B64)}


class MUTF7Error(ValueError):
    """The input is not valid modified UTF-7."""


def _is_direct(ch: str) -> bool:
    return "\x20" <= ch <= "\x7e"


def _b64_encode(data: bytes) -> str:
    out = []
    bits = 0
    nbits = 0
    for byte in data:
        bits = (bits << 8) | byte
        nbits += 8
        while nbits >= 6:
            nbits -= 6
            out.append(_B64[(bits >> nbits) & 0x3F])
    if nbits:
        out.append(_B64[(bits << (6 - nbits)) & 0x3F])
    return "".join(out)


def encode(name: str) -> str:
    """The modified UTF-7 spelling of `name` (RFC 3501 §5.1.3)."""
    if name.isascii() and "&" not in name and all(_is_direct(c) for c in name):
        return name
    out: list[str] = []
    run: list[str] = []
    for ch in name:
        if _is_direct(ch):
            if run:
                out.append(_shift(run))
                run = []
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    if run:
        out.append(_shift(run))
    return "".join(out)


def _shift(run: list[str]) -> str:
    try:
        raw = "".join(run).encode("utf-16-be")
    except UnicodeEncodeError:
        raise MUTF7Error("lone surrogate in a mailbox name") from None
    return "&" + _b64_encode(raw) + "-"


def _b64_decode(chunk: str) -> bytes:
    bits = 0
    nbits = 0
    out = bytearray()
    for ch in chunk:
        value = _B64_VALUE.get(ch)
        if value is None:
            raise MUTF7Error("invalid character in modified BASE64")
        bits = (bits << 6) | value
        nbits += 6
        if nbits >= 8:
            nbits -= 8
            out.append((bits >> nbits) & 0xFF)
    if nbits >= 6 or bits & ((1 << nbits) - 1):
        raise MUTF7Error("non-zero or excess padding bits")
    return bytes(out)


def _decode_shift(chunk: str) -> str:
    raw = _b64_decode(chunk)
    if not raw or len(raw) % 2:
        raise MUTF7Error("odd or empty UTF-16 sequence")
    try:
        text = raw.decode("utf-16-be")
    except UnicodeDecodeError:
        raise MUTF7Error("unpaired surrogate") from None
    if any(_is_direct(c) for c in text):
        raise MUTF7Error("printable ASCII must not be encoded")
    return text


def decode(data: str | bytes) -> str:
    """Decode a modified UTF-7 mailbox name; raise `MUTF7Error` if it is not canonical."""
    if isinstance(data, bytes):
        if not data.isascii():
            raise MUTF7Error("8-bit characters in a modified UTF-7 name")
        data = data.decode("ascii")
    elif not data.isascii():
        raise MUTF7Error("non-ASCII characters in a modified UTF-7 name")
    if "&" not in data:
        return data
    out: list[str] = []
    i = 0
    after_shift = False
    while i < len(data):
        ch = data[i]
        if ch != "&":
            out.append(ch)
            i += 1
            after_shift = False
            continue
        end = data.find("-", i + 1)
        if end < 0:
            raise MUTF7Error("unterminated shift")
        if end == i + 1:
            out.append("&")
            after_shift = False
        else:
            if after_shift:
                raise MUTF7Error("adjacent shifts must be one run")
            out.append(_decode_shift(data[i + 1 : end]))
            after_shift = True
        i = end + 1
    return "".join(out)
