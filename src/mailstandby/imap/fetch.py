"""FETCH arguments (RFC 3501 §6.4.5 and §9 fetch-att; RFC 7162 CHANGEDSINCE and MODSEQ).

Macros are expanded here (ALL, FAST, FULL, RFC 3501 §6.4.5) so the session sees
only items. A `Section` is the typed form of what is inside `BODY[...]`; its
`str()` is the canonical spelling the server echoes in the response
(`BODY[1.2.HEADER.FIELDS (FROM TO)]`), with header field names upper-cased as
Dovecot does. Partial fetches keep (origin, length); only the origin is echoed
(RFC 3501 §7.4.2 "BODY[<section>]<<origin octet>>"). A header field name that
is not an atom is echoed quoted (as Dovecot does), so the echo parses back to
the same section; one with 8-bit octets, CR or LF cannot name a header field
(RFC 5322 §3.6.8: printable US-ASCII) and is BAD.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailstandby.imap.responses import quoted
from mailstandby.imap.syntax import ASTRING_CHARS, DIGITS, MAX_MODSEQ, BadSyntax, Cursor, SequenceSet

SIMPLE_ITEMS = frozenset(
    {
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "ENVELOPE",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",  # RFC 7162 §3.1.4
    }
)
MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
SECTION_TEXTS = ("HEADER.FIELDS.NOT", "HEADER.FIELDS", "HEADER", "TEXT", "MIME")
_SECTION_TEXT_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.")
_ITEM_NAME_CHARS = _SECTION_TEXT_CHARS | DIGITS


@dataclass(frozen=True, slots=True)
class Section:
    """RFC 3501 section-spec: part numbers, then HEADER/HEADER.FIELDS[.NOT]/TEXT/MIME or nothing."""

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()  # upper-cased header names for HEADER.FIELDS[.NOT]

    def __str__(self) -> str:
        items = [str(n) for n in self.part]
        if self.text is not None:
            items.append(self.text)
        spec = ".".join(items)
        if self.fields:
            spec += " (" + " ".join(map(_field_echo, self.fields)) + ")"
        return spec


def _field_echo(name: str) -> str:
    """A header field name as an astring: the atom itself, else quoted (names are 7-bit, no CR/LF)."""
    if name and all(ord(c) in ASTRING_CHARS for c in name):
        return name
    return quoted(name).decode("ascii")


@dataclass(frozen=True, slots=True)
class FetchItem:
    """One fetch-att. `name` is FLAGS, UID, … or BODY (with a section for BODY[...])."""

    name: str
    section: Section | None = None
    peek: bool = False  # BODY.PEEK[...]: do not set \\Seen
    partial: tuple[int, int] | None = None  # (origin, octets)

    @property
    def sets_seen(self) -> bool:
        """RFC 3501 §6.4.5: BODY[...], RFC822 and RFC822.TEXT set \\Seen."""
        return (self.section is not None and not self.peek) or self.name in ("RFC822", "RFC822.TEXT")

    def response_name(self) -> str:
        """The item's name in the FETCH response, e.g. `BODY[1.MIME]<0>`."""
        if self.section is None:
            return self.name
        origin = f"<{self.partial[0]}>" if self.partial else ""
        return f"BODY[{self.section}]{origin}"


@dataclass(frozen=True, slots=True)
class Fetch:
    sequence: SequenceSet
    items: tuple[FetchItem, ...]
    changed_since: int | None = None  # RFC 7162 §3.1.4.1 CHANGEDSINCE


def parse_fetch(cur: Cursor) -> Fetch:
    """`FETCH sequence-set SP (macro / fetch-att / "(" fetch-att *(SP fetch-att) ")") [modifiers]`."""
    sequence = cur.sequence_set()
    cur.sp()
    items = _items(cur)
    changed_since = None
    if not cur.at_end():
        cur.sp()
        changed_since = _modifiers(cur)
    cur.end()
    return Fetch(sequence, tuple(items), changed_since)


def _items(cur: Cursor) -> list[FetchItem]:
    if cur.peek() == 0x28:
        return cur.paren_list(lambda: _item(cur), allow_empty=False)
    macro = MACROS.get(cur.peek_keyword())
    if macro is not None:
        cur.keyword()
        return [FetchItem(name) for name in macro]
    return [_item(cur)]


def _item(cur: Cursor) -> FetchItem:
    name = _item_name(cur)
    if name in SIMPLE_ITEMS:
        return FetchItem(name)
    if name not in ("BODY", "BODY.PEEK"):
        raise BadSyntax("unknown FETCH item")
    if cur.peek() != 0x5B:  # "["
        if name == "BODY.PEEK":
            raise BadSyntax("BODY.PEEK needs a section")
        return FetchItem("BODY")
    section = _section(cur)
    partial = _partial(cur) if cur.peek() == 0x3C else None
    return FetchItem("BODY", section, peek=name == "BODY.PEEK", partial=partial)


def _item_name(cur: Cursor) -> str:
    """An item name: letters, digits and dots, stopping before "[" (which is an ATOM-CHAR)."""
    raw = cur.take(_ITEM_NAME_CHARS)
    if not raw:
        raise BadSyntax("expected a FETCH item")
    return raw.decode("ascii").upper()


def _section(cur: Cursor) -> Section:
    cur.expect(b"[")
    part: list[int] = []
    text = None
    if cur.peek() in DIGITS:
        part.append(cur.nz_number())
        while cur.accept(b"."):
            if cur.peek() not in DIGITS:
                text = _section_text(cur, after_part=True)
                break
            part.append(cur.nz_number())
    elif cur.peek() != 0x5D:  # "]"
        text = _section_text(cur, after_part=False)
    fields: tuple[str, ...] = ()
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        cur.sp()
        fields = tuple(cur.paren_list(lambda: _field_name(cur), allow_empty=False))
    cur.expect(b"]")
    return Section(tuple(part), text, fields)


def _field_name(cur: Cursor) -> str:
    raw = cur.astring()
    if not raw.isascii() or b"\r" in raw or b"\n" in raw:
        raise BadSyntax("invalid header field name")  # RFC 5322 §3.6.8 field-name: printable US-ASCII
    return raw.decode("ascii").upper()


def _section_text(cur: Cursor, *, after_part: bool) -> str:
    text = cur.take(_SECTION_TEXT_CHARS).decode("ascii").upper()
    if text not in SECTION_TEXTS or (text == "MIME" and not after_part):
        raise BadSyntax("invalid section")
    return text


def _partial(cur: Cursor) -> tuple[int, int]:
    cur.expect(b"<")
    origin = cur.number()
    cur.expect(b".")
    length = cur.nz_number()
    cur.expect(b">")
    return origin, length


def _modifiers(cur: Cursor) -> int | None:
    """RFC 4466 fetch-modifiers; CHANGEDSINCE (RFC 7162) is the only one we know."""
    changed_since = None

    def modifier() -> None:
        nonlocal changed_since
        if cur.keyword() != "CHANGEDSINCE" or changed_since is not None:
            raise BadSyntax("unknown or repeated FETCH modifier")
        cur.sp()
        changed_since = cur.nz_number(MAX_MODSEQ)

    cur.paren_list(modifier, allow_empty=False)
    return changed_since
