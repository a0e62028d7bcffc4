"""FETCH data items for one message (RFC 3501 §6.4.5 and §7.4.2).

`needs_body` says whether the stored message must be read at all (FLAGS, UID,
INTERNALDATE and RFC822.SIZE come from metadata alone). `fetch_items` renders
the items in the order asked, with UID first for UID FETCH (RFC 3501 §6.4.8).
Body data always goes out as a literal. RFC822.SIZE is the stored size.
"""

from __future__ import annotations

from mailstandby.imap import bodystructure as bs
from mailstandby.imap import responses as r
from mailstandby.imap.fetch import FetchItem
from mailstandby.imap.mime import Message
from mailstandby.store.mailbox import MessageMeta

META_ITEMS = frozenset({"FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "MODSEQ"})


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


def _item(item: FetchItem, meta: MessageMeta, msg: Message | None) -> tuple[str, bytes]:
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
    assert msg is not None
    if name == "ENVELOPE":
        return name, bs.envelope(msg)
    if name == "BODYSTRUCTURE":
        return name, bs.bodystructure(msg)
    if name == "BODY" and item.section is None:
        return name, bs.body(msg)
    return item.response_name(), r.literal(_section_data(msg, item))


def fetch_items(
    items: tuple[FetchItem, ...], meta: MessageMeta, msg: Message | None, *, uid: bool, flags_changed: bool
) -> list[tuple[str, bytes]]:
    """The (name, value) pairs of one `* n FETCH (...)` response."""
    wanted = list(items)
    if uid and not any(i.name == "UID" for i in wanted):
        wanted.insert(0, FetchItem("UID"))
    if flags_changed and not any(i.name == "FLAGS" for i in wanted):
        wanted.append(FetchItem("FLAGS"))  # RFC 3501 §6.4.5: \\Seen was set, say so
    return [_item(i, meta, msg) for i in wanted]
