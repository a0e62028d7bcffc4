"""FETCH data items for one message (RFC 3501 §6.4.5 and §7.4.2).

`needs_body` says whether the stored message must be read at all (FLAGS, UID,
INTERNALDATE and RFC822.SIZE come from metadata alone). `fetch_items` renders
the items in the order asked, with UID first for UID FETCH (RFC 3501 §6.4.8).
Body data always goes out as a literal. RFC822.SIZE is the stored size.
"""

from __future__ import annotations

from collections import OrderedDict

from mailstandby.imap import bodystructure as bs
from mailstandby.imap import responses as r
from mailstandby.imap.fetch import FetchItem
from mailstandby.imap.mime import Message
from mailstandby.store.mailbox import MessageMeta

META_ITEMS = frozenset({"FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "MODSEQ"})
STRUCTURE_ITEMS = frozenset({"ENVELOPE", "BODYSTRUCTURE", "BODY"})  # BODY without a section


def _is_structure(item: FetchItem) -> bool:
    return item.name in STRUCTURE_ITEMS and item.section is None


class StructureCache:
    """ENVELOPE, BODYSTRUCTURE and BODY by message body, least recently used dropped first.

    A stored message never changes and a body id is never reused by a store,
    so these, computed once, stay right; a client listing a mailbox then costs
    no parsing (as with Dovecot's cache). One cache per store.
    """

    def __init__(self, max_bodies: int = 50_000) -> None:
        self.max_bodies = max_bodies
        self._data: OrderedDict[int, dict[str, bytes]] = OrderedDict()

    def covers(self, body_id: int, items: tuple[FetchItem, ...]) -> bool:
        """True when every item is metadata or already cached for this body."""
        cached = self._data.get(body_id)
        return all(
            item.name in META_ITEMS or (cached is not None and _is_structure(item) and item.name in cached)
            for item in items
        )

    def get(self, body_id: int, name: str, msg: Message | None) -> bytes:
        entry = self._data.get(body_id)
        if entry is not None:
            self._data.move_to_end(body_id)
            value = entry.get(name)
            if value is not None:
                return value
        assert msg is not None, "not cached: the message must be read"
        value = {"ENVELOPE": bs.envelope, "BODYSTRUCTURE": bs.bodystructure, "BODY": bs.body}[name](msg)
        if entry is None:
            entry = self._data[body_id] = {}
            if len(self._data) > self.max_bodies:
                self._data.popitem(last=False)
        entry[name] = value
        return value


def needs_body(items: tuple[FetchItem, ...]) -> bool:
    return any(item.name not in META_ITEMS for item in items)


def _section_data(msg: Message, item: FetchItem) -> bytes:
    if item.name == "RFC822":
        return msg.section()
    if item.name == "RFC822.HEADER":
        return msg.section(text="HEADER")
    if item.name == "RFC822.TEXT":
        return msg.section(text="TEXT")
    assert item.section is not None
    data = msg.section(item.section.part, item.section.text, item.section.fields)
    if item.partial is not None:
        origin, length = item.partial
        data = data[origin : origin + length]
    return data


def _item(
    item: FetchItem, meta: MessageMeta, msg: Message | None, structures: StructureCache | None
) -> tuple[str, bytes]:
    name = item.name
    if name == "FLAGS":
        return name, r.flag_list(meta.flags)
    if name == "UID":
        return name, str(meta.uid).encode("ascii")
    if name == "INTERNALDATE":
        return name, r.date_time(meta.internal_date)
    if name == "RFC822.SIZE":
        return name, str(meta.size).encode("ascii")
    if name == "MODSEQ":
        return name, b"(%d)" % meta.modseq
    if _is_structure(item):
        if structures is not None:
            return name, structures.get(meta.body_id, name, msg)
        assert msg is not None
        return name, {"ENVELOPE": bs.envelope, "BODYSTRUCTURE": bs.bodystructure, "BODY": bs.body}[name](msg)
    assert msg is not None
    return item.response_name(), r.literal(_section_data(msg, item))


def fetch_items(
    items: tuple[FetchItem, ...],
    meta: MessageMeta,
    msg: Message | None,
    *,
    uid: bool,
    flags_changed: bool,
    structures: StructureCache | None = None,
) -> list[tuple[str, bytes]]:
    """The (name, value) pairs of one `* n FETCH (...)` response."""
    wanted = list(items)
    if uid and not any(i.name == "UID" for i in wanted):
        wanted.insert(0, FetchItem("UID"))
    if flags_changed and not any(i.name == "FLAGS" for i in wanted):
        wanted.append(FetchItem("FLAGS"))  # RFC 3501 §6.4.5: \\Seen was set, say so
    return [_item(i, meta, msg, structures) for i in wanted]
