"""The milter codec: every command round-trips, bad packets are refused cleanly, any byte split works."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailstandby.milter import codec
from mailstandby.milter.codec import Actions, Proto, ProtocolError

COMMANDS: list[codec.Command] = [
    codec.OptNeg(6, Actions.ADDHDRS | Actions.DELRCPT, Proto.NR_HDR | Proto.HDR_LEADSPC),
    codec.Macros(codec.SMFIC_CONNECT, {"j": "mx.corp.test", "{daemon_name}": "smtpd", "_": "client [192.0.2.1]"}),
    codec.Macros(codec.SMFIC_BODYEOB, {"i": "4Xy7Zq2"}),
    codec.Macros(codec.SMFIC_MAIL, {}),
    codec.Macros(ord("Z"), {"k": "a stage from a future MTA"}),
    codec.Connect("client.ext.test", "4", 40123, "192.0.2.1"),
    codec.Connect("[2001:db8::1]", "6", 25, "2001:db8::1"),
    codec.Connect("localhost", "L", 0, "/run/socket"),
    codec.Connect("unknown", "U"),
    codec.Helo("client.ext.test"),
    codec.Mail(("<sender@ext.test>", "BODY=8BITMIME", "SIZE=1234")),
    codec.Mail(("<>",)),
    codec.Rcpt(("<alice@corp.test>",)),
    codec.Data(),
    codec.Header(b"Subject", b" hello"),
    codec.Header(b"X-Folded", b" first\n\tsecond"),
    codec.Header(b"X-Empty", b""),
    codec.EndOfHeaders(),
    codec.Body(b"line one\r\nline two\r\n"),
    codec.Body(b""),
    codec.EndOfMessage(),
    codec.EndOfMessage(b"last chunk\r\n"),
    codec.Abort(),
    codec.Quit(),
    codec.Quit(new_connection=True),
    codec.Unknown(b"XYZZY plugh"),
]


def decode_all(wire: bytes, reader: codec.PacketReader | None = None) -> list[codec.Command]:
    reader = reader or codec.PacketReader()
    return [codec.decode(c, d) for c, d in reader.feed(wire)]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: type(c).__name__)
def test_round_trip(cmd: codec.Command) -> None:
    assert decode_all(codec.encode(cmd)) == [cmd]


def test_a_stream_fed_byte_by_byte_gives_the_same_packets() -> None:
    wire = b"".join(codec.encode(c) for c in COMMANDS)
    reader = codec.PacketReader()
    got = [codec.decode(c, d) for b in wire for c, d in reader.feed(bytes([b]))]
    assert got == COMMANDS
    assert reader.pending == 0


@given(st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=40))
def test_any_split_of_the_stream_gives_the_same_packets(cuts: list[int]) -> None:
    wire = b"".join(codec.encode(c) for c in COMMANDS)
    reader, got, pos, i = codec.PacketReader(), [], 0, 0
    while pos < len(wire):
        step = cuts[i % len(cuts)]
        got += [codec.decode(c, d) for c, d in reader.feed(wire[pos : pos + step])]
        pos, i = pos + step, i + 1
    assert got == COMMANDS


def test_a_body_chunk_of_the_largest_size_postfix_sends() -> None:
    chunk = b"x" * 65533 + b"\r\n"
    assert decode_all(codec.encode(codec.Body(chunk))) == [codec.Body(chunk)]


@pytest.mark.parametrize("length", [0, codec.MAX_PACKET + 1, 0xFFFFFFFF])
def test_a_zero_or_oversized_length_is_refused_as_soon_as_the_head_is_read(length: int) -> None:
    reader = codec.PacketReader()
    assert reader.feed(struct.pack(">I", length)[:3]) == []
    with pytest.raises(ProtocolError):
        reader.feed(struct.pack(">I", length)[3:])  # nothing of the announced packet is waited for


def test_the_limit_is_configurable() -> None:
    reader = codec.PacketReader(limit=100)
    assert decode_all(codec.encode(codec.Body(b"x" * 99)), reader) == [codec.Body(b"x" * 99)]
    with pytest.raises(ProtocolError, match="exceeds the limit of 100"):
        reader.feed(codec.encode(codec.Body(b"x" * 100)))


@pytest.mark.parametrize(
    "command,data",
    [
        (ord("Z"), b""),  # unknown command
        (codec.SMFIC_OPTNEG, b"\0\0\0\6"),  # short
        (codec.SMFIC_MACRO, b""),  # no stage
        (codec.SMFIC_MACRO, b"Cj\0"),  # name without value
        (codec.SMFIC_CONNECT, b"host"),  # no NUL, no family
        (codec.SMFIC_CONNECT, b"host\0" + b"9" + b"\0\x19addr\0"),  # bad family
        (codec.SMFIC_CONNECT, b"host\0" + b"4" + b"\0"),  # truncated port
        (codec.SMFIC_HELO, b"no-nul"),
        (codec.SMFIC_MAIL, b"<a@b>"),  # not NUL-terminated
        (codec.SMFIC_MAIL, b"\0"),  # empty address
        (codec.SMFIC_RCPT, b""),
        (codec.SMFIC_HEADER, b"Subject\0"),  # no value
        (codec.SMFIC_HEADER, b"\0value\0"),  # no name
        (codec.SMFIC_HEADER, b"a\0b\0c\0"),  # too many strings
        (codec.SMFIC_DATA, b"x"),  # data where none belongs
        (codec.SMFIC_EOH, b"x"),
        (codec.SMFIC_ABORT, b"x"),
        (codec.SMFIC_QUIT, b"x"),
    ],
)
def test_malformed_commands_are_refused(command: int, data: bytes) -> None:
    with pytest.raises(ProtocolError):
        codec.decode(command, data)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_packets_or_a_protocol_error_never_anything_else(wire: bytes) -> None:
    reader = codec.PacketReader(limit=200)
    try:
        for c, d in reader.feed(wire):
            codec.decode(c, d)
    except ProtocolError:
        pass


def test_replies() -> None:
    assert codec.CONTINUE == b"\0\0\0\1c"
    assert codec.DISCARD == b"\0\0\0\1d"
    assert codec.TEMPFAIL == b"\0\0\0\1t"
    assert codec.ACCEPT == b"\0\0\0\1a"
    assert codec.delrcpt("<bob@corp.test>") == struct.pack(">I", 17) + b"-<bob@corp.test>\0"
    neg = codec.optneg_reply(6, Actions.DELRCPT, Proto.NR_HDR | Proto.NODATA)
    assert neg == struct.pack(">IcIII", 13, b"O", 6, 0x08, 0x80 | 0x200)
    assert codec.reply_code(451, "4.3.0", "100% busy") == struct.pack(">I", 22) + b"y451 4.3.0 100%% busy\0"
    with pytest.raises(ValueError):
        codec.reply_code(250, "2.0.0", "not an error")
