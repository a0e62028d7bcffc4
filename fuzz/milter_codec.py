"""Fuzz target: the milter codec (`mailstandby.milter.codec`).

The input is what an MTA sends on a milter connection. Properties:
- `PacketReader` raises `ProtocolError` and nothing else, holds at most its
  limit plus one read, and finds the same packets whatever way the stream is
  split into reads (one byte at a time included);
- `decode` raises `ProtocolError` and nothing else, for any command byte and data;
- `encode` inverts `decode`: `decode(*unframe(encode(v))) == v` for every value
  decoded from the input.
"""

from __future__ import annotations

from fuzz.engine import Target
from fuzz.run import module_main
from mailstandby.milter import codec
from mailstandby.milter.codec import PacketReader, ProtocolError

LIMIT = 4096  # small, so that the length checks are reached with small inputs


def _read(data: bytes, sizes: list[int]) -> tuple[list[tuple[int, bytes]], bool, int]:
    """(packets, whether ProtocolError was raised, bytes pending) reading `data` in reads of `sizes`."""
    reader = PacketReader(LIMIT)
    packets: list[tuple[int, bytes]] = []
    pos = i = 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        i += 1
        try:
            packets += reader.feed(data[pos : pos + size])
        except ProtocolError:
            return packets, True, reader.pending
        pos += size
        assert reader.pending <= LIMIT + 4 + size, "the reader holds more than one packet and one read"
    return packets, False, reader.pending


def _value(command: int, data: bytes) -> None:
    try:
        value = codec.decode(command, data)
    except ProtocolError:
        return
    wire = codec.encode(value)
    n = codec.packet_length(wire[:4], limit=len(wire))
    assert n == len(wire) - 4
    assert codec.decode(wire[4], wire[5:]) == value, f"encode does not invert decode for {value!r}"


def check(data: bytes) -> None:
    whole, whole_failed, _ = _read(data, [len(data) or 1])
    small, small_failed, _ = _read(data, [1, 2, 3, 5, 7, 64])
    assert whole_failed == small_failed, "the same stream is bad or good depending on how it was split"
    if not whole_failed:
        assert whole == small, "the packets depend on how the stream was split"
    else:
        assert whole == small[: len(whole)]
    for command, payload in small:
        _value(command, payload)
    if data:
        _value(data[0], data[1:])


def _frames() -> tuple[bytes, ...]:
    """How the seed files were made (with the codec itself): a Postfix-like conversation, odd CONNECT families."""
    a = codec.Actions
    p = codec.Proto
    session = [
        codec.OptNeg(6, a.ADDHDRS | a.CHGBODY | a.QUARANTINE, p.NOUNKNOWN | p.NODATA | p.NR_HDR | p.HDR_LEADSPC),
        codec.Macros(codec.SMFIC_CONNECT, {"j": "mx.example.org", "{daemon_name}": "smtpd", "v": "Postfix 3.7"}),
        codec.Connect("client.example.net", "4", 40123, "192.0.2.7"),
        codec.Helo("client.example.net"),
        codec.Macros(codec.SMFIC_MAIL, {"i": "4Q1x2y3z", "{mail_addr}": "alice@example.net"}),
        codec.Mail(("<alice@example.net>", "SIZE=1234", "BODY=8BITMIME")),
        codec.Rcpt(("<bob@corp.test>", "NOTIFY=NEVER")),
        codec.Header(b"Subject", b" a folded\n\tsubject"),
        codec.EndOfHeaders(),
        codec.Body(b"line one\r\nline two\r\n"),
        codec.EndOfMessage(),
        codec.Abort(),
        codec.Quit(new_connection=True),
    ]
    conversation = b"".join(codec.encode(v) for v in session)
    odd = [
        codec.Connect("[unix]", "L", 0, "/var/run/sock"),
        codec.Connect("unknown", "U"),
        codec.Connect("v6.example", "6", 25, "2001:db8::1"),
        codec.Unknown(b"XCLIENT ADDR=192.0.2.1"),
        codec.Quit(),
    ]
    return (conversation, b"".join(codec.encode(v) for v in odd))


TARGET = Target(
    "milter_codec",
    check,
    __doc__ or "",
    extra_seeds=(b"\x00\x00\x00\x00", b"\xff\xff\xff\xffA"),
    tokens=(b"\x00", b"\x00\x00\x00\x01", b"\x00\x00\x10\x01", b"\x00\x00\x00\x0d", b"O", b"C4", b"D", b"L", b"B"),
)

if __name__ == "__main__":
    module_main(TARGET.name)
