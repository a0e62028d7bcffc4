"""Fuzz target: the IMAP command parser (`imap.parser`, `imap.syntax`, `imap.arguments`, `imap.fetch`, `imap.search`).

The input is a client's byte stream: lines, and after a line ending in
`{n}` / `{n+}` the next n bytes as the literal, driven through a
`CommandReader` exactly as the server's loop drives it. Properties:
- `parse_command` and the reader raise `ParseError` and nothing else
  (`NeedMore` only in partial mode); the reader never asks for a literal in
  a way the loop cannot follow (a discarded literal is never synchronizing);
- an error's status is BAD or NO, with a tag the client sent (or "*");
- what the server sends back of a parsed command reads back the same way:
  sequence sets (`SequenceSet.__str__`, as in COPYUID and MODIFIED),
  `BODY[section]` names (`Section.__str__`, echoed in FETCH responses),
  mailbox names (`responses.mailbox`), flag lists and strings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from fuzz.engine import Target
from fuzz.run import module_main
from mailstandby.imap import responses
from mailstandby.imap.arguments import Login, mailbox_name
from mailstandby.imap.fetch import Fetch, Section, parse_fetch
from mailstandby.imap.parser import COMMANDS, Command, CommandReader, LiteralRequest, ParseError, parse_command
from mailstandby.imap.syntax import TAG_CHARS, BadSyntax, Cursor, NeedMore, SequenceSet

_MAILBOX_FIELDS = {"mailbox", "name", "old", "new"}


def _error(e: ParseError) -> None:
    assert e.status in ("BAD", "NO"), e
    assert e.tag == "*" or (e.tag and all(b in TAG_CHARS for b in e.tag.encode())), e


def _walk(value: object) -> Iterator[tuple[str, object]]:
    """Every (field name, value) inside a parsed command's arguments."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            yield f.name, item
            yield from _walk(item)
    elif isinstance(value, tuple):
        for item in value:
            yield from _walk(item)


def _reparse(wire: bytes, parse: object) -> object:
    cur = Cursor(wire)
    try:
        value = parse(cur)  # type: ignore[operator]
        cur.end()
    except BadSyntax as e:
        raise AssertionError(f"{wire!r} does not parse back: {e.message}") from None
    return value


def _command(cmd: Command) -> None:
    assert cmd.name in COMMANDS, cmd
    for name, value in _walk(cmd.args):
        if isinstance(value, SequenceSet) and not value.saved:
            assert _reparse(str(value).encode(), Cursor.sequence_set) == value, value
        elif isinstance(value, Section):
            fetch = _reparse(b"1 BODY[" + str(value).encode() + b"]", parse_fetch)
            assert isinstance(fetch, Fetch) and fetch.items[0].section == value, f"{value} echoes as {fetch}"
        elif name in _MAILBOX_FIELDS and isinstance(value, str):
            assert _reparse(responses.mailbox(value), mailbox_name) == value, value
        elif name == "flags" and isinstance(value, tuple):
            back = _reparse(responses.flag_list(value), Cursor.flag_list)  # system flags first, as Dovecot
            assert isinstance(back, list) and sorted(back) == sorted(value), value
    if isinstance(cmd.args, Login):
        for text in (cmd.args.user, cmd.args.password):
            assert _reparse(responses.string(text), Cursor.astring) == text.encode(), text


def _whole(data: bytes) -> None:
    buf = data.removesuffix(b"\r\n")
    for partial in (False, True):
        try:
            cmd = parse_command(buf, partial=partial)
        except ParseError as e:
            _error(e)
        except NeedMore:
            assert partial, "NeedMore outside partial mode"
        else:
            _command(cmd)


class _Stream:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def line(self) -> bytes | None:
        if self.pos >= len(self.data):
            return None
        lf = self.data.find(b"\n", self.pos)
        end = len(self.data) if lf < 0 else lf + 1
        line, self.pos = self.data[self.pos : end], end
        return line

    def octets(self, size: int) -> bytes | None:
        if self.pos + size > len(self.data):
            return None
        chunk, self.pos = self.data[self.pos : self.pos + size], self.pos + size
        return chunk


def _step(reader: CommandReader, stream: _Stream, line: bytes) -> Command | None:
    """One command from its first line on; None when the input runs out inside it."""
    step = reader.feed_line(line)
    while isinstance(step, LiteralRequest):
        assert not (step.discard and step.synchronizing), "a failed command's literal was invited"
        chunk = stream.octets(step.size)
        if chunk is None:
            return None
        if step.discard:
            reader.literal_discarded()
        else:
            reader.feed_literal(chunk)
        next_line = stream.line()
        if next_line is None:
            return None
        step = reader.feed_line(next_line)
    return step


def _session(data: bytes) -> None:
    reader = CommandReader(max_literal=64 * 1024, max_argument=16 * 1024)
    stream = _Stream(data)
    while (line := stream.line()) is not None:
        try:
            cmd = _step(reader, stream, line)
        except ParseError as e:
            _error(e)
            if e.close:
                return
            continue
        if cmd is None:
            return
        _command(cmd)


def check(data: bytes) -> None:
    _whole(data)
    _session(data)


TOKENS = tuple(
    w.encode()
    for w in (
        *COMMANDS,
        "UID ", "BODY[", "BODY.PEEK[", "HEADER.FIELDS (", "HEADER.FIELDS.NOT (", "MIME", "TEXT", "]<0.10>",
        "{5}\r\n", "{0+}\r\n", "{4096+}\r\n", "\r\n", " NIL", "(", ")", '"', "\\Seen", "$", "*", "1:*",
        "&AOQ-", "&-", "CHANGEDSINCE", "UNCHANGEDSINCE", "RETURN (", "CHARSET ", "OR ", "NOT ", "HEADER ", "MODSEQ",
        "1-Feb-2024", '"05-Mar-2024 12:00:00 +0000"', "+FLAGS.SILENT", "(USE (\\Sent))",
    )
)  # fmt: skip

TARGET = Target("imap_parser", check, __doc__ or "", tokens=TOKENS)

if __name__ == "__main__":
    module_main(TARGET.name)
