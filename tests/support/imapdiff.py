"""Helpers for the differential IMAP wire test: run one scripted session against a server
and return what a client sees as parsed Python structures (literal vs quoted erased).

`imapclient.response_parser.parse_response` turns a FETCH response into nested tuples:
strings (quoted or literal) and atoms become bytes, numbers int, NIL None.  Item names
are normalised (upper case, quotes inside HEADER.FIELDS dropped) so `BODY[HEADER.FIELDS
("SUBJECT" "FROM")]` and `BODY[HEADER.FIELDS (SUBJECT FROM)]` compare equal.
"""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imapclient.response_parser import parse_response

Parsed = Any


@dataclass
class Corpus:
    name: str
    data: bytes
    flags: str  # e.g. "(\\Seen \\Flagged)"
    internaldate: str  # e.g. '"05-Mar-2024 12:00:00 +0000"'


@dataclass
class Observed:
    """Everything one server showed for one message: item name -> parsed value."""

    items: dict[str, Parsed] = field(default_factory=dict)
    search: dict[str, bool] = field(default_factory=dict)


def corpus(directory: Path) -> list[Corpus]:
    out = []
    for i, path in enumerate(sorted(directory.glob("*.eml"))):
        flags = [f for f, on in (("\\Seen", i % 2 == 0), ("\\Flagged", i % 3 == 0), ("$Label", i % 4 == 1)) if on]
        out.append(
            Corpus(
                name=path.stem,
                data=path.read_bytes(),
                flags="(" + " ".join(flags) + ")",
                internaldate=f'"{i + 1:02d}-Mar-2024 12:00:00 +0000"',
            )
        )
    return out


def normalise_key(key: bytes) -> str:
    text = key.decode("ascii", "replace").upper()
    return text.replace('"', "")


def parse_fetch(data: list[Any]) -> dict[int, dict[str, Parsed]]:
    """imaplib FETCH data (possibly several messages) -> {seq: {ITEM: value}}."""
    out: dict[int, dict[str, Parsed]] = {}
    chunk: list[Any] = []
    for piece in data:
        if piece is None:
            continue
        chunk.append(piece)
        tail = piece if isinstance(piece, bytes) else None
        if tail is not None and tail.endswith(b")"):
            seq, values = _parse_one(chunk)
            out.setdefault(seq, {}).update(values)
            chunk = []
    if chunk:
        seq, values = _parse_one(chunk)
        out.setdefault(seq, {}).update(values)
    return out


def _parse_one(chunk: list[Any]) -> tuple[int, dict[str, Parsed]]:
    parsed = parse_response(chunk)
    seq, items = parsed[0], parsed[1]
    return seq, {normalise_key(items[i]): items[i + 1] for i in range(0, len(items), 2)}


def part_numbers(body: Parsed, prefix: str = "") -> Iterator[tuple[str, bool]]:
    """(part number, is message/rfc822) for every part of a parsed BODYSTRUCTURE."""
    if isinstance(body[0], tuple):  # multipart: children then subtype
        children = [child for child in body if isinstance(child, tuple)]
        for n, child in enumerate(children, 1):
            yield from _part(child, f"{prefix}{n}")
        return
    if not prefix:  # a single-part message: part 1 is its body
        yield from _part(body, "1")


def _part(body: Parsed, number: str) -> Iterator[tuple[str, bool]]:
    if isinstance(body[0], tuple):
        yield number, False
        yield from part_numbers(body, number + ".")
        return
    is_message = _lower(body[0]) == "message" and _lower(body[1]) == "rfc822" and len(body) > 8
    yield number, is_message
    if is_message and isinstance(body[8], tuple):
        inner = body[8]
        if isinstance(inner[0], tuple):
            yield from part_numbers(inner, number + ".")
        else:
            yield from _part(inner, number + ".1")


def _lower(value: Any) -> str:
    return value.decode("utf-8", "replace").lower() if isinstance(value, bytes) else str(value).lower()


def check(typ: str, data: Any, what: str) -> Any:
    if typ != "OK":
        raise AssertionError(f"{what}: {typ} {data!r}")
    return data


def login(host: str, port: int, user: str, password: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4(host, port, timeout=30)
    check(*client.login(user, password), "LOGIN")
    return client


def append_all(client: imaplib.IMAP4, messages: list[Corpus]) -> None:
    for m in messages:
        check(*client.append("INBOX", m.flags, m.internaldate, m.data), f"APPEND {m.name}")


def fetch(client: imaplib.IMAP4, seq: int, items: str) -> dict[str, Parsed]:
    typ, data = client.fetch(str(seq), items)
    if typ != "OK":
        return {"<error>": f"{typ} {data!r}"}
    return parse_fetch(data).get(seq, {})


def search(client: imaplib.IMAP4, criteria: tuple[str, ...], charset_literal: bytes | None = None) -> set[int] | str:
    try:
        if charset_literal is not None:
            client.literal = charset_literal  # type: ignore[attr-defined]
            typ, data = client.search("UTF-8", *criteria)
        else:
            typ, data = client.search(None, *criteria)
    except imaplib.IMAP4.error as e:
        return f"error: {e}"
    if typ != "OK":
        return f"{typ} {data!r}"
    return {int(n) for n in b" ".join(d for d in data if d).split()}
