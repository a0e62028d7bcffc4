"""The Sendmail milter protocol on the wire (libmilter protocol versions 2 to 6), without I/O.

A packet is a 4-byte big-endian length, then that many bytes: a one-byte
command and its data. Strings are NUL-terminated. The MTA sends commands
(SMFIC_*); the filter answers with replies (SMFIR_*), except for the events
it asked not to answer during option negotiation (SMFIP_NR_*), and except
MACRO, ABORT and QUIT, which are never answered.

Every packet is bounded (`limit`): a length of zero or above the limit is a
protocol error, never a reason to buffer without end. Body chunks are at most
65,535 bytes unless the filter asks for more (SMFIP_MDS_*, which we never do);
a single header may be as long as the MTA's own header limit (Postfix
`header_size_limit`, 100 KiB by default), hence the default of 1 MiB.

`PacketReader.feed()` accepts bytes in any split (one at a time included) and
returns the complete packets; `decode()` turns one packet into a value;
`encode()` is its inverse (used by tests and by anything playing the MTA).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntFlag

MAX_PACKET = 1024 * 1024 + 64  # bytes after the length word
VERSION = 6  # highest protocol version we speak (Sendmail 8.14+, Postfix milter_protocol = 6)


class ProtocolError(Exception):
    """The peer broke the protocol (bad length, unknown command, malformed data); close the connection."""


# -- commands from the MTA (SMFIC_*) ---------------------------------------------------
SMFIC_ABORT = ord("A")
SMFIC_BODY = ord("B")
SMFIC_CONNECT = ord("C")
SMFIC_MACRO = ord("D")
SMFIC_BODYEOB = ord("E")
SMFIC_HELO = ord("H")
SMFIC_QUIT_NC = ord("K")
SMFIC_HEADER = ord("L")
SMFIC_MAIL = ord("M")
SMFIC_EOH = ord("N")
SMFIC_OPTNEG = ord("O")
SMFIC_QUIT = ord("Q")
SMFIC_RCPT = ord("R")
SMFIC_DATA = ord("T")
SMFIC_UNKNOWN = ord("U")

# -- replies from the filter (SMFIR_*) -------------------------------------------------
SMFIR_ADDRCPT = ord("+")
SMFIR_DELRCPT = ord("-")
SMFIR_ACCEPT = ord("a")
SMFIR_CONTINUE = ord("c")
SMFIR_DISCARD = ord("d")
SMFIR_ADDHEADER = ord("h")
SMFIR_PROGRESS = ord("p")
SMFIR_REJECT = ord("r")
SMFIR_TEMPFAIL = ord("t")
SMFIR_REPLYCODE = ord("y")
SMFIR_OPTNEG = ord("O")


class Actions(IntFlag):
    """SMFIF_*: what the filter may do to a message at end of body."""

    NONE = 0
    ADDHDRS = 0x01
    CHGBODY = 0x02
    ADDRCPT = 0x04
    DELRCPT = 0x08
    CHGHDRS = 0x10
    QUARANTINE = 0x20
    CHGFROM = 0x40
    ADDRCPT_PAR = 0x80
    SETSYMLIST = 0x100


class Proto(IntFlag):
    """SMFIP_*: events the filter does not want (NO*), and events it will not answer (NR_*)."""

    NONE = 0
    NOCONNECT = 0x1
    NOHELO = 0x2
    NOMAIL = 0x4
    NORCPT = 0x8
    NOBODY = 0x10
    NOHDRS = 0x20
    NOEOH = 0x40
    NR_HDR = 0x80
    NOUNKNOWN = 0x100
    NODATA = 0x200
    SKIP = 0x400
    RCPT_REJ = 0x800
    NR_CONN = 0x1000
    NR_HELO = 0x2000
    NR_MAIL = 0x4000
    NR_RCPT = 0x8000
    NR_DATA = 0x10000
    NR_UNKN = 0x20000
    NR_EOH = 0x40000
    NR_BODY = 0x80000
    HDR_LEADSPC = 0x100000


# -- MTA commands as values ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OptNeg:
    version: int
    actions: Actions
    protocol: Proto


@dataclass(frozen=True, slots=True)
class Macros:
    stage: int  # the SMFIC_* command these macros come with
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Connect:
    hostname: str
    family: str  # "4", "6", "L" (unix socket) or "U" (unknown: no port or address follow)
    port: int = 0
    address: str = ""


@dataclass(frozen=True, slots=True)
class Helo:
    name: str


@dataclass(frozen=True, slots=True)
class Mail:
    args: tuple[str, ...]  # "<sender>" then ESMTP parameters


@dataclass(frozen=True, slots=True)
class Rcpt:
    args: tuple[str, ...]  # "<recipient>" then ESMTP parameters


@dataclass(frozen=True, slots=True)
class Data:
    pass


@dataclass(frozen=True, slots=True)
class Header:
    name: bytes
    value: bytes  # continuation lines separated by LF; the leading space only with HDR_LEADSPC


@dataclass(frozen=True, slots=True)
class EndOfHeaders:
    pass


@dataclass(frozen=True, slots=True)
class Body:
    chunk: bytes  # CRLF line ends, as in SMTP


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    chunk: bytes = b""  # old MTAs may send the last body chunk with it


@dataclass(frozen=True, slots=True)
class Abort:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    new_connection: bool = False  # QUIT_NC: the MTA will reuse the connection for a new SMTP session


@dataclass(frozen=True, slots=True)
class Unknown:
    command: bytes


Command = (
    OptNeg
    | Macros
    | Connect
    | Helo
    | Mail
    | Rcpt
    | Data
    | Header
    | EndOfHeaders
    | Body
    | EndOfMessage
    | Abort
    | Quit
    | Unknown
)


# -- framing -------------------------------------------------------------------------------
def packet_length(head: bytes, limit: int = MAX_PACKET) -> int:
    """The length announced by a 4-byte packet head; ProtocolError when it is 0 or above `limit`."""
    if len(head) != 4:
        raise ProtocolError("short packet head")
    (n,) = struct.unpack(">I", head)
    if n < 1:
        raise ProtocolError("empty packet")
    if n > limit:
        raise ProtocolError(f"packet of {n} bytes exceeds the limit of {limit}")
    return n


def frame(command: int, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data) + 1) + bytes([command]) + data


class PacketReader:
    """Splits a byte stream into (command, data) packets; memory stays below `limit` plus one read."""

    def __init__(self, limit: int = MAX_PACKET) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._need = 0  # length of the packet being collected, once its head is known

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out: list[tuple[int, bytes]] = []
        while True:
            if not self._need:
                if len(self._buf) < 4:
                    return out
                self._need = packet_length(bytes(self._buf[:4]), self.limit)
                del self._buf[:4]
            if len(self._buf) < self._need:
                return out
            packet = bytes(self._buf[: self._need])
            del self._buf[: self._need]
            self._need = 0
            out.append((packet[0], packet[1:]))

    @property
    def pending(self) -> int:
        """Bytes held that do not form a complete packet yet."""
        return len(self._buf)


# -- decoding ---------------------------------------------------------------------------------
def _strings(data: bytes, what: str) -> list[bytes]:
    if not data.endswith(b"\0"):
        raise ProtocolError(f"{what}: strings must be NUL-terminated")
    return data[:-1].split(b"\0")


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _bytes(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _no_data(cls: type, data: bytes, what: str) -> Command:
    if data:
        raise ProtocolError(f"{what} carries no data")
    return cls()  # type: ignore[no-any-return]


def decode(command: int, data: bytes) -> Command:
    """One MTA command as a value; ProtocolError for anything malformed or unknown."""
    decoder = _DECODERS.get(command)
    if decoder is None:
        raise ProtocolError(f"unknown command {command!r}")
    return decoder(data)


def _optneg(data: bytes) -> OptNeg:
    if len(data) < 12:
        raise ProtocolError("OPTNEG: 12 bytes expected")
    version, actions, protocol = struct.unpack(">III", data[:12])
    return OptNeg(version, Actions(actions), Proto(protocol))


def _macros(data: bytes) -> Macros:
    if not data:
        raise ProtocolError("MACRO: stage missing")
    stage = data[0]  # any stage is taken: a stage we do not know must not make us drop the MTA's mail
    if len(data) == 1:
        return Macros(stage, {})
    parts = _strings(data[1:], "MACRO")
    if len(parts) % 2:
        raise ProtocolError("MACRO: a name without a value")
    return Macros(stage, {_text(parts[i]): _text(parts[i + 1]) for i in range(0, len(parts), 2)})


def _connect(data: bytes) -> Connect:
    end = data.find(b"\0")
    if end < 0 or len(data) < end + 2:
        raise ProtocolError("CONNECT: hostname and family expected")
    hostname, family = _text(data[:end]), chr(data[end + 1])
    rest = data[end + 2 :]
    if family == "U":
        return Connect(hostname, family)
    if family not in "46L" or len(rest) < 3:
        raise ProtocolError("CONNECT: bad family or address")
    (port,) = struct.unpack(">H", rest[:2])
    (address,) = _strings(rest[2:], "CONNECT address")[:1]
    return Connect(hostname, family, port, _text(address))


def _args(data: bytes, what: str) -> tuple[str, ...]:
    parts = _strings(data, what)
    if not parts[0]:
        raise ProtocolError(f"{what}: address missing")
    return tuple(_text(p) for p in parts)


def _header(data: bytes) -> Header:
    parts = _strings(data, "HEADER")
    if len(parts) != 2 or not parts[0]:
        raise ProtocolError("HEADER: name and value expected")
    return Header(parts[0], parts[1])


def _helo(data: bytes) -> Helo:
    parts = _strings(data, "HELO")
    return Helo(_text(parts[0]))


def _unknown(data: bytes) -> Unknown:
    return Unknown(data[:-1] if data.endswith(b"\0") else data)


_DECODERS = {
    SMFIC_OPTNEG: _optneg,
    SMFIC_MACRO: _macros,
    SMFIC_CONNECT: _connect,
    SMFIC_HELO: _helo,
    SMFIC_MAIL: lambda d: Mail(_args(d, "MAIL")),
    SMFIC_RCPT: lambda d: Rcpt(_args(d, "RCPT")),
    SMFIC_DATA: lambda d: _no_data(Data, d, "DATA"),
    SMFIC_HEADER: _header,
    SMFIC_EOH: lambda d: _no_data(EndOfHeaders, d, "EOH"),
    SMFIC_BODY: lambda d: Body(d),
    SMFIC_BODYEOB: lambda d: EndOfMessage(d),
    SMFIC_ABORT: lambda d: _no_data(Abort, d, "ABORT"),
    SMFIC_QUIT: lambda d: _no_data(Quit, d, "QUIT"),
    SMFIC_QUIT_NC: lambda d: Quit(new_connection=True) if not d else _no_data(Quit, d, "QUIT_NC"),
    SMFIC_UNKNOWN: _unknown,
}


# -- encoding ------------------------------------------------------------------------------------
def encode(cmd: Command) -> bytes:
    """The wire form of an MTA command (the inverse of `decode`)."""
    match cmd:
        case OptNeg(version, actions, protocol):
            return frame(SMFIC_OPTNEG, struct.pack(">III", version, int(actions), int(protocol)))
        case Macros(stage, values):
            pairs = b"".join(_bytes(k) + b"\0" + _bytes(v) + b"\0" for k, v in values.items())
            return frame(SMFIC_MACRO, bytes([stage]) + pairs)
        case Connect(hostname, family, port, address):
            data = _bytes(hostname) + b"\0" + family.encode()
            if family != "U":
                data += struct.pack(">H", port) + _bytes(address) + b"\0"
            return frame(SMFIC_CONNECT, data)
        case Helo(name):
            return frame(SMFIC_HELO, _bytes(name) + b"\0")
        case Mail(args):
            return frame(SMFIC_MAIL, b"".join(_bytes(a) + b"\0" for a in args))
        case Rcpt(args):
            return frame(SMFIC_RCPT, b"".join(_bytes(a) + b"\0" for a in args))
        case Data():
            return frame(SMFIC_DATA)
        case Header(name, value):
            return frame(SMFIC_HEADER, name + b"\0" + value + b"\0")
        case EndOfHeaders():
            return frame(SMFIC_EOH)
        case Body(chunk):
            return frame(SMFIC_BODY, chunk)
        case EndOfMessage(chunk):
            return frame(SMFIC_BODYEOB, chunk)
        case Abort():
            return frame(SMFIC_ABORT)
        case Quit(new_connection):
            return frame(SMFIC_QUIT_NC if new_connection else SMFIC_QUIT)
        case Unknown(command):
            return frame(SMFIC_UNKNOWN, command + b"\0")
    raise TypeError(cmd)


# -- replies ---------------------------------------------------------------------------------------
CONTINUE = frame(SMFIR_CONTINUE)
ACCEPT = frame(SMFIR_ACCEPT)
DISCARD = frame(SMFIR_DISCARD)
TEMPFAIL = frame(SMFIR_TEMPFAIL)
REJECT = frame(SMFIR_REJECT)
PROGRESS = frame(SMFIR_PROGRESS)


def optneg_reply(version: int, actions: Actions, protocol: Proto) -> bytes:
    return frame(SMFIR_OPTNEG, struct.pack(">III", version, int(actions), int(protocol)))


def delrcpt(address: str) -> bytes:
    """Remove a recipient, named exactly as the MTA sent it in RCPT (angle brackets included)."""
    return frame(SMFIR_DELRCPT, _bytes(address) + b"\0")


def reply_code(code: int, status: str, text: str) -> bytes:
    """A specific SMTP reply (SMFIR_REPLYCODE); '%' is doubled because Sendmail uses it as a format."""
    if not (400 <= code < 600) or not status.startswith(str(code)[0]):
        raise ValueError(f"bad reply {code} {status}")
    line = f"{code} {status} {text}".replace("%", "%%")
    return frame(SMFIR_REPLYCODE, line.encode("ascii", "replace") + b"\0")
