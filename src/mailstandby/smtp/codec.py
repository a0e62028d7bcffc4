"""SMTP wire format, without I/O: command lines, paths, parameters, message data.

Pure functions over bytes and str; every malformed input raises `Rejected`
with the RFC 5321 reply for it, so this module can be fuzzed alone.

Message data (RFC 5321 §4.1.1.4, §4.5.2): only <CRLF>.<CRLF> ends it. A bare
CR or LF anywhere in the data rejects the whole message after end-of-data
(SMTP smuggling, CVE-2023-51764), so the session never loses sync.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailstandby.core.model import BodyType
from mailstandby.core.reply import CloseSession, Rejected
from mailstandby.smtp import codes


@dataclass(frozen=True, slots=True)
class Command:
    verb: str  # upper-cased
    arg: str  # raw argument text after the verb, stripped


def parse_command(line: bytes) -> Command:
    """Decode one command line (with or without its CRLF)."""
    if line.endswith(b"\r\n"):
        line = line[:-2]
    elif line.endswith(b"\n"):
        line = line[:-1]
    if b"\x00" in line:
        raise Rejected(codes.C500_NUL)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(codes.C500_BAD_UTF8) from None
    if "\r" in text or "\n" in text:
        raise Rejected(codes.C500_UNKNOWN, detail="bare CR/LF in command line")
    verb, _, arg = text.strip(" ").partition(" ")
    if not verb.isascii() or not verb.isalpha():
        raise Rejected(codes.C500_UNKNOWN)
    return Command(verb.upper(), arg.strip(" "))


# RFC 5321 §4.1.2 (with RFC 6531 UTF-8 allowed in atoms and domains)
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_DOT_STRING = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QUOTED = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"'
_LABEL = r"[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\-\u0080-\U0010ffff]*[A-Za-z0-9\u0080-\U0010ffff])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_ADDR_LITERAL = r"\[(?:[0-9.]{7,15}|IPv6:[0-9A-Fa-f:.]{2,45})\]"
_MAILBOX = re.compile(rf"^(?:{_DOT_STRING}|{_QUOTED})@(?:{_DOMAIN}|{_ADDR_LITERAL})$")
_SOURCE_ROUTE = re.compile(rf"^@{_DOMAIN}(?:,@{_DOMAIN})*:")
_PARAM = re.compile(r"^([A-Za-z0-9][A-Za-z0-9\-]*)(?:=([\x21-\x3c\x3e-\x7e]+))?$")

MAX_LOCAL_PART = 64  # RFC 5321 §4.5.3.1.1
MAX_DOMAIN = 255  # RFC 5321 §4.5.3.1.2
MAX_PATH = 256  # RFC 5321 §4.5.3.1.3


@dataclass(slots=True)
class PathArg:
    """A reverse- or forward-path with its ESMTP parameters."""

    address: str  # "" for the null reverse-path <>
    params: dict[str, str | None] = field(default_factory=dict)


def parse_path(arg: str, keyword: str, *, allow_null: bool) -> PathArg:
    """Parse `FROM:<a@b> PARAMS` / `TO:<a@b> PARAMS` (RFC 5321 §4.1.1.2-3)."""
    bad = codes.C501_BAD_ADDRESS if keyword == "FROM" else codes.C501_BAD_RCPT_ADDRESS
    head, colon, rest = arg.partition(":")
    if not colon or head.strip().upper() != keyword:
        raise Rejected(codes.C501_SYNTAX)
    rest = rest.lstrip(" ")
    if not rest.startswith("<"):
        raise Rejected(bad)
    end = _path_end(rest)
    if end < 0:
        raise Rejected(bad)
    path, params_text = rest[1:end], rest[end + 1 :]
    if params_text and not params_text.startswith(" "):
        raise Rejected(codes.C501_SYNTAX)
    if path == "":
        if not allow_null:
            raise Rejected(bad)
    else:
        path = _SOURCE_ROUTE.sub("", path, count=1)  # RFC 5321 §4.1.1.3: MUST accept, SHOULD ignore
        if not valid_mailbox(path):  # a route to nothing (`<@a:>`) is not the null path
            raise Rejected(bad)
    return PathArg(path, parse_params(params_text))


def _path_end(text: str) -> int:
    """Index of the '>' closing the path, skipping quoted local parts."""
    quoted = escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ">" and not quoted:
            return i
    return -1


def valid_mailbox(address: str) -> bool:
    local, _, domain = address.rpartition("@")
    if len(address) > MAX_PATH or len(local.encode()) > MAX_LOCAL_PART or len(domain) > MAX_DOMAIN:
        return False
    return _MAILBOX.match(address) is not None


def parse_params(text: str) -> dict[str, str | None]:
    """ESMTP parameters `KEY[=VALUE]` separated by spaces; keys upper-cased."""
    params: dict[str, str | None] = {}
    for word in text.split():
        m = _PARAM.match(word)
        if m is None:
            raise Rejected(codes.C501_SYNTAX, detail=f"bad parameter {word!r}")
        key = m.group(1).upper()
        if key in params:
            raise Rejected(codes.C501_SYNTAX, detail=f"duplicate parameter {key}")
        params[key] = m.group(2)
    return params


def parse_size(value: str | None) -> int:
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 20:
        raise Rejected(codes.C501_BAD_SIZE)
    return int(value)


def parse_body(value: str | None) -> BodyType:
    try:
        return BodyType((value or "").upper())
    except ValueError:
        raise Rejected(codes.C501_SYNTAX, detail="bad BODY") from None


def unstuff(data: bytes) -> bytes:
    """Turn received DATA (without its final `.CRLF`) into the message, checking line endings.

    `data` is everything after the 354 up to and including the CRLF before the
    terminating dot. Raises Rejected(550 5.5.2) on a bare CR or LF.
    """
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        raise Rejected(codes.C550_BARE_NEWLINE)
    if data.startswith(b"."):
        data = data[1:]
    # RFC 5321 §4.5.2: the first dot of every line that starts with one is removed
    return data.replace(b"\r\n.", b"\r\n") if b"\r\n." in data else data


def count_received(message: bytes, limit: int) -> int:
    """`Received:` fields in the header section of `message`, counted up to `limit` (RFC 5321 §6.3).

    Like Postfix's cleanup, a field name is matched case-insensitively at the start of a header
    line (continuation lines and the body are not looked at).
    """
    end = message.find(b"\r\n\r\n")
    head = message if end < 0 else message[: end + 2]
    if head.startswith(b"\r\n"):
        return 0
    count = 0
    for line in (b"\r\n" + head).split(b"\r\n"):
        name, colon, _ = line.partition(b":")
        if colon and name.rstrip(b" \t").lower() == b"received":  # RFC 5322 §4.5.8: WSP before the colon
            count += 1
            if count >= limit:
                break
    return count


def ehlo_keywords(*, max_size: int, starttls: bool) -> list[str]:
    words = [f"SIZE {max_size}", "8BITMIME", "PIPELINING", "SMTPUTF8", "ENHANCEDSTATUSCODES", "DSN", "CHUNKING"]
    if starttls:
        words.append("STARTTLS")
    return words


# -- HELO/EHLO (RFC 5321 §4.1.1.1) ------------------------------------------------------

_HELO_LITERAL = re.compile(rf"^{_ADDR_LITERAL}$")


def _helo_label(label: str) -> bool:
    """Letters, digits, '_', '-' (not at either end) and non-ASCII (IDN), 1 to 63 characters."""
    if not 0 < len(label) <= 63 or label[0] == "-" or label[-1] == "-":
        return False
    return all(not c.isascii() or c.isalnum() or c in "_-" for c in label)


def helo_argument(arg: str) -> str:
    """The one argument of HELO/EHLO: `Domain / address-literal`; anything else is 501.

    Missing, or more than one word: `501 Syntax: EHLO hostname` (RFC 5321 §4.1.1.1).
    """
    if not arg or " " in arg:
        raise Rejected(codes.C501_NEED_HELO_ARG)
    return arg


def valid_helo_name(name: str) -> bool:
    """Postfix `reject_invalid_helo_hostname`: a host name (letters, digits, '-', '_'; labels
    of at most 63, at most 255 in all) or an address literal."""
    if not name or len(name) > MAX_DOMAIN:
        return False
    if name.startswith("["):
        return _HELO_LITERAL.match(name) is not None
    return all(_helo_label(label) for label in name.removesuffix(".").split("."))


def no_argument(cmd: Command) -> None:
    """RSET, DATA, STARTTLS take no argument (RFC 5321 §4.1.1.5, §4.1.1.4; RFC 3207 §4)."""
    if cmd.arg:
        raise Rejected(codes.C501_SYNTAX, detail=f"{cmd.verb} takes no argument")


# -- CHUNKING (RFC 3030 §2) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bdat:
    size: int
    last: bool


MAX_CHUNK_DIGITS = 20


def parse_bdat(arg: str) -> Bdat:
    """`BDAT chunk-size [SP end-marker]` (RFC 3030 §2); a bad one cannot be resynchronized."""
    words = arg.split(" ")
    size = words[0] if words else ""
    if (
        not size.isascii()
        or not size.isdigit()
        or len(size) > MAX_CHUNK_DIGITS
        or len(words) > 2
        or (len(words) == 2 and words[1].upper() != "LAST")
    ):
        raise CloseSession(codes.C521_BDAT_SYNTAX, detail=f"BDAT {arg[:40]!r}")
    return Bdat(int(size), len(words) == 2)


def check_bare_newlines(data: bytes) -> None:
    """BDAT data has no dot-stuffing, but a bare CR or LF is refused as in DATA (RFC 5321 §2.3.8)."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        raise Rejected(codes.C550_BARE_NEWLINE)


# -- DSN parameters (RFC 3461 §4) -------------------------------------------------------

NOTIFY_WORDS = frozenset({"SUCCESS", "FAILURE", "DELAY"})
MAX_ENVID = 100  # RFC 3461 §4.4
MAX_ORCPT = 500  # RFC 3461 §4.2: the decoded address, with generous room
_XTEXT_HEX = re.compile(r"\+([0-9A-F]{2})")
_ADDR_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-]*$")


def xtext_decode(value: str) -> str:
    """RFC 3461 §4: `+XX` hex escapes; only `!`..`~` except `+` and `=` may appear bare."""
    if any(not ("!" <= c <= "~") or c == "=" for c in value) or "+" in _XTEXT_HEX.sub("", value):
        raise ValueError("bad xtext")
    return _XTEXT_HEX.sub(lambda m: chr(int(m.group(1), 16)), value)


def xtext_encode(value: str) -> str:
    """The inverse of `xtext_decode`: a character it decoded from `+XX` (code point below 256) is one
    escape again, so a stored ORCPT or ENVID goes on to the next hop as the sender wrote it."""
    return "".join(c if "!" <= c <= "~" and c not in "+=" else _xtext_escape(c) for c in value)


def _xtext_escape(c: str) -> str:
    octets = bytes([ord(c)]) if ord(c) < 256 else c.encode()
    return "".join(f"+{b:02X}" for b in octets)


def dsn_mail_params(ret: str, envid: str) -> list[str]:
    """RET and ENVID for MAIL FROM to a next hop that advertises DSN (RFC 3461 §4.3-4.4, §5.2.1)."""
    params = [f"RET={ret}"] if ret else []
    if envid:
        params.append(f"ENVID={xtext_encode(envid)}")
    return params


def dsn_rcpt_params(notify: str, orcpt: str) -> list[str]:
    """NOTIFY and ORCPT for RCPT TO (RFC 3461 §4.1-4.2), from what was stored: NOTIFY as a comma list
    ("" when the sender gave none: the next hop applies the same default), ORCPT as `type;address`."""
    params = [f"NOTIFY={notify}"] if notify else []
    if orcpt:
        addr_type, _, address = orcpt.partition(";")
        params.append(f"ORCPT={addr_type};{xtext_encode(address)}")
    return params


def parse_notify(value: str | None) -> frozenset[str]:
    """`NEVER`, or a comma list of SUCCESS, FAILURE, DELAY (RFC 3461 §4.1); case-insensitive."""
    words = (value or "").upper().split(",")
    if words == ["NEVER"]:
        return frozenset({"NEVER"})
    if not words or any(w not in NOTIFY_WORDS for w in words) or len(set(words)) != len(words):
        raise Rejected(codes.C501_BAD_NOTIFY)
    return frozenset(words)


def parse_orcpt(value: str | None) -> str:
    """`addr-type ";" xtext` (RFC 3461 §4.2), kept as `type;decoded-address`."""
    addr_type, semi, encoded = (value or "").partition(";")
    try:
        address = xtext_decode(encoded)
    except ValueError:
        raise Rejected(codes.C501_BAD_ORCPT) from None
    if not semi or not _ADDR_TYPE.match(addr_type) or not address or len(address) > MAX_ORCPT:
        raise Rejected(codes.C501_BAD_ORCPT)
    return f"{addr_type.lower()};{address}"


def parse_ret(value: str | None) -> str:
    """`FULL` or `HDRS` (RFC 3461 §4.3)."""
    ret = (value or "").upper()
    if ret not in ("FULL", "HDRS"):
        raise Rejected(codes.C501_BAD_RET)
    return ret


def parse_envid(value: str | None) -> str:
    """The sender's envelope id, xtext, at most 100 characters (RFC 3461 §4.4)."""
    try:
        envid = xtext_decode(value or "")
    except ValueError:
        raise Rejected(codes.C501_BAD_ENVID) from None
    if not envid or len(value or "") > MAX_ENVID or not all(" " <= c <= "~" for c in envid):
        raise Rejected(codes.C501_BAD_ENVID)
    return envid
