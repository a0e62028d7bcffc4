"""Mailbox changes across the nodes sharing one PostgreSQL store (LISTEN/NOTIFY).

A node that committed a change to a mailbox (new mail, flags, expunge) announces it on the
database's channel `CHANNEL` with a small payload: node id, user, mailbox, kind. Every node keeps
one connection of its own LISTENing there (`ChangeListener`), and turns another node's notice into
the same `Change` objects its IMAP sessions already consume, by reading the mailbox anew
(`MailboxMirror`): the notice is a hint, never the data. When the listening connection is lost,
notices may have been missed: after reconnecting, every watched mailbox is read anew.

The channel is per database, and the database is the cluster. Sessions take a change they already
know about (their own node's, or read twice) as a no-op (imap/view.py), so duplicates are harmless.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from mailstandby.store.mailbox import Change, MessageMeta

log = logging.getLogger(__name__)

CHANNEL = "mailstandby_mailbox"
RECONNECT = 1.0  # seconds between attempts to get the listening connection back


def payload(node: str, change: Change) -> str:
    """The notice for one change (PostgreSQL takes up to 8000 bytes; names are far shorter)."""
    kind = "added" if change.added else "expunged" if change.expunged else "flags"
    return json.dumps({"n": node, "u": change.user, "m": change.mailbox, "k": kind}, ensure_ascii=False)


class ChangeListener:
    """LISTEN on `CHANNEL`; calls `hint(user, mailbox)` for another node's change and `resync()` after
    the connection was (re)made, when notices may have been missed."""

    def __init__(self, url: str, node: str, hint: Callable[[str, str], Any], resync: Callable[[], Any]) -> None:
        self.url = url
        self.node = node
        self.hint = hint
        self.resync = resync
        self.listening = asyncio.Event()  # set while a LISTEN connection is up

    async def run(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=10, application_name="mailstandby-listen"
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    await _call(self.resync)
                    async for notice in conn.notifies():
                        await self._take(notice.payload)
            except psycopg.Error as e:
                log.warning("mailbox change listener lost its connection (%s); reconnecting", e)
            self.listening.clear()
            await asyncio.sleep(RECONNECT)

    async def _take(self, text: str) -> None:
        try:
            notice = json.loads(text)
            node, user, mailbox = notice["n"], notice["u"], notice["m"]
        except (ValueError, KeyError, TypeError):
            log.warning("malformed mailbox change notice ignored")
            return
        if node != self.node:
            await _call(lambda: self.hint(user, mailbox))


async def _call(fn: Callable[[], Any]) -> None:
    try:
        result = fn()
        if asyncio.iscoroutine(result):
            await result
    except Exception:
        log.exception("mailbox change handling failed")


@dataclass(slots=True)
class _Seen:
    uids: set[int] = field(default_factory=set)
    modseq: int = 0


class MailboxMirror:
    """What this node last told its sessions about each watched mailbox, to turn a hint into a Change."""

    def __init__(self) -> None:
        self._seen: dict[int, _Seen] = {}

    def forget(self, box_id: int) -> None:
        self._seen.pop(box_id, None)

    def tracked(self) -> list[int]:
        return list(self._seen)

    def changes(self, db: Any, user: str, name: str, box_id: int) -> Change | None:
        """The mailbox as stored now against what was seen: added, flag-changed and expunged messages."""
        rows = db.execute(
            "SELECT uid, flags, internal_date, size, modseq, body_id, journaled FROM mail WHERE mailbox_id = ?",
            (box_id,),
        ).fetchall()
        metas = [
            MessageMeta(uid, frozenset(flags.split()), date, size, modseq, body_id, bool(journaled))
            for uid, flags, date, size, modseq, body_id, journaled in rows
        ]
        seen = self._seen.get(box_id)
        now = _Seen({m.uid for m in metas}, max((m.modseq for m in metas), default=0))
        self._seen[box_id] = now
        if seen is None:  # first look: the baseline
            return None
        added = tuple(sorted((m for m in metas if m.uid not in seen.uids), key=lambda m: m.uid))
        flags = tuple(m for m in metas if m.uid in seen.uids and m.modseq > seen.modseq)
        expunged = tuple(sorted(seen.uids - now.uids))
        if not (added or flags or expunged):
            return None
        return Change(user, name, added=added, flags=flags, expunged=expunged)
