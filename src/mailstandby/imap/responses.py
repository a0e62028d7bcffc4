"""IMAP4rev1 server output: strings, flags, dates, sequence sets, response lines and codes.

Pure functions returning bytes (RFC 3501 §7, §9); nothing here knows a session.

String choice (RFC 3501 §4.3), as Dovecot 2.3 `imap_append_nstring`:
- quoted when the value is 7-bit without CR, LF or NUL and has at most four
  quoted-specials (`"` and `\\` are escaped);
- otherwise a literal; NUL cannot be sent at all and is replaced by 0x80, as
  Dovecot does for message data;
- with `max_quoted` set, longer values become literals too (the default for
  our own replies; the MIME writers pass None to match Dovecot byte for byte).

Mailbox names leave the server in modified UTF-7 (RFC 3501 §5.1.3) as an
astring. Dates use the RFC 3501 date-time form with a two-digit day.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from mailstandby.imap import mutf7
from mailstandby.imap.syntax import ASTRING_CHARS, MONTHS

QUOTED_MAX = 1024  # longer strings in our own replies go out as literals
_MAX_ESCAPES = 4  # Dovecot QUOTED_MAX_ESCAPE_CHARS
SYSTEM_FLAG_ORDER = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")

# -- response codes (RFC 3501 §7.1, RFC 5530, RFC 4315, RFC 7162, RFC 4469/7889) ----
ALERT = "ALERT"
ALREADYEXISTS = "ALREADYEXISTS"
AUTHENTICATIONFAILED = "AUTHENTICATIONFAILED"
AUTHORIZATIONFAILED = "AUTHORIZATIONFAILED"
BADCHARSET = "BADCHARSET (US-ASCII UTF-8)"
CANNOT = "CANNOT"
CLIENTBUG = "CLIENTBUG"
CLOSED = "CLOSED"
CONTACTADMIN = "CONTACTADMIN"
EXPUNGEISSUED = "EXPUNGEISSUED"
INUSE = "INUSE"
LIMIT = "LIMIT"
NONEXISTENT = "NONEXISTENT"
NOPERM = "NOPERM"
OVERQUOTA = "OVERQUOTA"
PRIVACYREQUIRED = "PRIVACYREQUIRED"
READ_ONLY = "READ-ONLY"
READ_WRITE = "READ-WRITE"
SERVERBUG = "SERVERBUG"
TOOBIG = "TOOBIG"
TRYCREATE = "TRYCREATE"
UIDNOTSTICKY = "UIDNOTSTICKY"
UNAVAILABLE = "UNAVAILABLE"
NOMODSEQ = "NOMODSEQ"


def uidvalidity(value: int) -> str:
    return f"UIDVALIDITY {value}"


def uidnext(value: int) -> str:
    return f"UIDNEXT {value}"


def unseen(seq: int) -> str:
    return f"UNSEEN {seq}"


def highestmodseq(value: int) -> str:
    return f"HIGHESTMODSEQ {value}"


def permanentflags(flags: Iterable[str], *, new_keywords: bool = True) -> str:
    """RFC 3501 §7.1: `\\*` says clients may create keywords."""
    items = list(flags) + (["\\*"] if new_keywords else [])
    return "PERMANENTFLAGS " + flag_list(items).decode("ascii")


def appenduid(uidvalidity: int, uid: int) -> str:
    """RFC 4315 §3."""
    return f"APPENDUID {uidvalidity} {uid}"


def copyuid(uidvalidity: int, pairs: Sequence[tuple[int, int]]) -> str:
    """RFC 4315 §3: source and destination sets in corresponding order."""
    source = sequence_set([s for s, _ in pairs], sort=False)
    target = sequence_set([d for _, d in pairs], sort=False)
    return f"COPYUID {uidvalidity} {source} {target}"


def modified(numbers: Iterable[int]) -> str:
    """RFC 7162 §3.1.3: the messages STORE UNCHANGEDSINCE did not change."""
    return "MODIFIED " + sequence_set(numbers)


def capability(capabilities: Iterable[str]) -> str:
    return "CAPABILITY " + " ".join(["IMAP4rev1", *capabilities])


# -- strings ------------------------------------------------------------------------
def _raw(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def literal(value: bytes | str) -> bytes:
    data = _raw(value).replace(b"\x00", b"\x80")
    return b"{%d}\r\n" % len(data) + data


def quoted(value: bytes | str) -> bytes:
    """A quoted string; the caller guarantees 7-bit text without CR, LF or NUL."""
    return b'"' + _raw(value).replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _needs_literal(data: bytes, max_quoted: int | None) -> bool:
    if max_quoted is not None and len(data) > max_quoted:
        return True
    if not data.isascii() or b"\r" in data or b"\n" in data or b"\x00" in data:
        return True
    return data.count(b'"') + data.count(b"\\") > _MAX_ESCAPES


def string(value: bytes | str, *, max_quoted: int | None = QUOTED_MAX) -> bytes:
    """RFC 3501 string: quoted when it can be, else a literal (see the module docstring)."""
    data = _raw(value)
    return literal(data) if _needs_literal(data, max_quoted) else quoted(data)


def nstring(value: bytes | str | None, *, max_quoted: int | None = QUOTED_MAX) -> bytes:
    return b"NIL" if value is None else string(value, max_quoted=max_quoted)


def nstring_nolf(value: bytes | None) -> bytes:
    """Dovecot `imap_append_nstring_nolf`: drop CR/LF, keeping a space where a line break separated words."""
    if value is None or (b"\r" not in value and b"\n" not in value):
        return nstring(value, max_quoted=None)
    out = bytearray()
    for i, b in enumerate(value):
        if b not in (0x0D, 0x0A):
            out.append(b)
        elif i + 1 < len(value) and value[i + 1] not in b" \t\r\n":
            out.append(0x20)
    return nstring(bytes(out), max_quoted=None)


def astring(value: bytes | str, *, max_quoted: int | None = QUOTED_MAX) -> bytes:
    """An atom when possible (never `NIL`, never empty), else a string."""
    data = _raw(value)
    if data and data.upper() != b"NIL" and all(b in ASTRING_CHARS for b in data):
        return data
    return string(data, max_quoted=max_quoted)


def string_for_humans(value: bytes) -> bytes:
    """Dovecot `imap_append_string_for_humans`: runs of whitespace become one space, ends trimmed.

    Used for ENVELOPE subjects and address display names. A value that needed
    changing is sent as a literal (as Dovecot does); NUL becomes 0x80.
    """
    if not _humans_modify(value):
        return b'"' + value + b'"'
    out = bytearray()
    last_lwsp = True
    for b in value:
        if b in b" \t\r\n":
            if not last_lwsp:
                out.append(0x20)
            last_lwsp = True
        else:
            out.append(0x80 if b == 0 else b)
            last_lwsp = False
    if out and out[-1] == 0x20:
        del out[-1]
    if not out:
        return b'""'
    return b"{%d}\r\n" % len(out) + bytes(out)


def _humans_modify(value: bytes) -> bool:
    last_lwsp = True
    for b in value:
        if b in b'\r\n\t\x00"\\' or b >= 0x80 or (b == 0x20 and last_lwsp):
            return True
        last_lwsp = b == 0x20
    return last_lwsp and bool(value)


def mailbox(name: str) -> bytes:
    """A mailbox name on the wire: modified UTF-7 (RFC 3501 §5.1.3) as an astring."""
    return astring(mutf7.encode(name))


def flag_list(flags: Iterable[str]) -> bytes:
    """`(\\Answered \\Seen $Forwarded)`: system flags in Dovecot's order, then keywords as given."""
    given = list(dict.fromkeys(flags))
    system = [f for f in SYSTEM_FLAG_ORDER if f in given]
    rest = [f for f in given if f not in SYSTEM_FLAG_ORDER]
    return ("(" + " ".join(system + rest) + ")").encode("ascii")


def date_time(epoch: float, offset_minutes: int = 0) -> bytes:
    """RFC 3501 date-time, e.g. `"17-Jul-1996 02:44:25 -0700"`, in the given UTC offset."""
    tm = time.gmtime(int(epoch) + offset_minutes * 60)
    sign = "+" if offset_minutes >= 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return (
        f'"{tm.tm_mday:02d}-{MONTHS[tm.tm_mon - 1].title()}-{tm.tm_year:04d} '
        f'{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {sign}{hours:02d}{minutes:02d}"'
    ).encode("ascii")


def sequence_set(numbers: Iterable[int], *, sort: bool = True) -> str:
    """Compress numbers into `1:3,5,7:9`; with `sort=False` only ascending runs merge (COPYUID order)."""
    values = sorted(set(numbers)) if sort else list(numbers)
    out: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        out.append(str(values[i]) if i == j else f"{values[i]}:{values[j]}")
        i = j + 1
    return ",".join(out)


# -- response lines ----------------------------------------------------------------
def _part(item: bytes | str | int) -> bytes:
    if isinstance(item, int):
        return str(item).encode("ascii")
    return _raw(item)


def untagged(*items: bytes | str | int) -> bytes:
    """`* item item ...` CRLF (RFC 3501 §7)."""
    return b"* " + b" ".join(_part(i) for i in items) + b"\r\n"


def tagged(tag: str, status: str, text: str, code: str | None = None) -> bytes:
    """`tag OK|NO|BAD [code] text` CRLF (RFC 3501 §7.1)."""
    prefix = f"[{code}] " if code else ""
    return f"{tag} {status} {prefix}{text}\r\n".encode()


def status_line(status: str, text: str, code: str | None = None) -> bytes:
    """An untagged OK/NO/BAD/BYE/PREAUTH, e.g. `* OK [UIDVALIDITY 3] UIDs valid`."""
    prefix = f"[{code}] " if code else ""
    return f"* {status} {prefix}{text}\r\n".encode()


def continuation(text: str = "Ready for literal data") -> bytes:
    return f"+ {text}\r\n".encode()


def fetch(number: int, items: Iterable[tuple[str, bytes]]) -> bytes:
    """`* n FETCH (NAME value NAME value)` CRLF; values are already serialised."""
    body = b" ".join(name.encode("ascii") + b" " + value for name, value in items)
    return b"* %d FETCH (" % number + body + b")\r\n"


def search(numbers: Iterable[int], *, modseq: int | None = None) -> bytes:
    """`* SEARCH 2 3 5` CRLF, with RFC 7162 §3.1.5 `(MODSEQ n)` when asked."""
    line = " ".join(["* SEARCH", *(str(n) for n in numbers)])
    if modseq is not None:
        line += f" (MODSEQ {modseq})"
    return (line + "\r\n").encode("ascii")


def list_line(attributes: Iterable[str], name: str, *, command: str = "LIST", delimiter: str = "/") -> bytes:
    """`* LIST (\\HasNoChildren \\Sent) "/" Sent` CRLF (RFC 3501 §7.2.2, RFC 6154)."""
    attrs = " ".join(attributes)
    return f"* {command} ({attrs}) ".encode("ascii") + quoted(delimiter) + b" " + mailbox(name) + b"\r\n"
