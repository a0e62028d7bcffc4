"""IMAP commands of the authenticated state that work on mailboxes by name (RFC 3501 §6.3).

CREATE, DELETE, RENAME, SUBSCRIBE/UNSUBSCRIBE, LIST/LSUB (RFC 5258 selection and
RETURN options, RFC 6154 SPECIAL-USE, RFC 3348 CHILDREN), STATUS, APPEND
(RFC 4315 APPENDUID, RFC 7889 TOOBIG), NAMESPACE (RFC 2342) and ENABLE (RFC 5161).

Invariants: every name is checked with `check_mailbox_name` before it reaches
the store, and an invalid one is a NO with Dovecot's text (RELIABILITY P14);
every store call names the session's own user, so no command reaches another
user's mailboxes (A7); `MailboxError` reasons map onto response codes in one
place (`mailbox_error`), never `str(exc)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailstandby.imap import responses as r
from mailstandby.imap.parser import Append, Command, Enable, ListMailboxes, Mailbox, Rename, Status
from mailstandby.imap.wildcard import MAX_PATTERN, Wildcard
from mailstandby.store.mailbox import SEPARATOR, MailboxError, MailboxInfo, SpecialUse, check_mailbox_name

if TYPE_CHECKING:
    from mailstandby.config import IMAPSettings
    from mailstandby.store.mailbox import MailboxStore


class Reply(Exception):
    """A tagged NO or BAD for the current command."""

    def __init__(self, status: str, text: str, code: str | None = None, *, counts: bool = True) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.code = code
        self.counts = counts  # a BAD that counts towards max_bad_commands


@dataclass(frozen=True, slots=True)
class Done:
    """A command's tagged OK: text and response code (None: "<NAME> completed.")."""

    text: str | None = None
    code: str | None = None
    answered: bool = False  # the handler wrote its tagged response itself (STARTTLS)


_ERRORS = {
    "nonexistent": ("Mailbox doesn't exist", r.NONEXISTENT),
    "exists": ("Mailbox already exists", r.ALREADYEXISTS),
    "too-big": ("Message too large", r.TOOBIG),
    "over-quota": ("Quota exceeded", r.OVERQUOTA),
    "cannot": ("Operation not permitted", r.CANNOT),
}


def mailbox_error(e: MailboxError, *, trycreate: bool = False) -> Reply:
    """The NO for a store refusal; TRYCREATE instead of NONEXISTENT for APPEND/COPY targets."""
    text, code = _ERRORS.get(e.reason, ("Invalid mailbox name", None))
    if e.reason == "nonexistent" and trycreate:
        code = r.TRYCREATE
    return Reply("NO", text + ".", code)


def valid_name(name: str) -> str:
    """The canonical mailbox name, or a NO with Dovecot's text (RELIABILITY P14)."""
    try:
        return check_mailbox_name(name)
    except MailboxError:
        raise Reply("NO", _invalid_text(name)) from None


def _invalid_text(name: str) -> str:
    parts = name.split(SEPARATOR)
    if any(p == ".." for p in parts):
        return "Invalid mailbox name: Contains '..' part"
    if any(p == "." for p in parts):
        return "Invalid mailbox name: Contains '.' part"
    if any(p == "" for p in parts):
        return "Invalid mailbox name: Contains empty hierarchy level"
    if len(name.encode("utf-8")) > 255 or len(parts) > 16:
        return "Invalid mailbox name: Name is too long"
    return "Invalid mailbox name: Contains reserved characters"


def list_pattern(pattern: str) -> Wildcard:
    """RFC 3501 §6.3.8 wildcards, matched in linear time (`imap.wildcard`); a NO past `MAX_PATTERN`."""
    if len(pattern) > MAX_PATTERN:
        raise Reply("NO", "List pattern too long.")
    return Wildcard.compile(pattern)


def list_attributes(info: MailboxInfo, names: set[str], *, subscribed: bool) -> list[str]:
    prefix = info.name + SEPARATOR
    children = any(n.startswith(prefix) for n in names)
    attrs = ["\\HasChildren" if children else "\\HasNoChildren"]
    if subscribed and info.subscribed:
        attrs.insert(0, "\\Subscribed")
    if info.special_use is not None:
        attrs.append(str(info.special_use))
    return attrs


def lsub_noselect_parents(infos: list[MailboxInfo], matches: Callable[[str], bool]) -> list[str]:
    """RFC 3501 §6.3.9: a subscribed name the pattern does not match, under a parent it does match
    ("foo/bar" subscribed, "foo" not, `LSUB "" %`), shows that parent, flagged \\Noselect unless
    it is subscribed itself (then it is listed anyway). The nearest matching parent, as Dovecot."""
    subscribed = {i.name for i in infos if i.subscribed}
    parents: set[str] = set()
    for name in subscribed:
        if matches(name):
            continue
        parts = name.split(SEPARATOR)
        for depth in range(len(parts) - 1, 0, -1):
            parent = SEPARATOR.join(parts[:depth])
            if matches(parent):
                if parent not in subscribed:
                    parents.add(parent)
                break
    return sorted(parents)


_SPECIAL_USES = {str(u).upper(): u for u in SpecialUse}
_STATUS_ORDER = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN")


class MailboxCommands:
    """Mixed into `Session`: the handlers below use its store, user and writer."""

    store: MailboxStore
    user: str
    settings: IMAPSettings
    condstore: bool  # RFC 7162 §3.1: enabled by ENABLE, SELECT (CONDSTORE), FETCH MODSEQ, ...
    enable_condstore: Callable[[], None]  # provided by SelectedCommands

    def send(self, data: bytes) -> None:  # pragma: no cover - provided by Session
        raise NotImplementedError

    async def info(self, name: str) -> MailboxInfo:
        for info in await self.store.list_mailboxes(self.user):
            if info.name == name:
                return info
        raise Reply("NO", f"Mailbox doesn't exist: {name}"[:300], r.NONEXISTENT)

    async def enable(self, cmd: Command) -> Done | None:
        """RFC 5161: only CONDSTORE (RFC 7162 §3.1) is ours to enable; others are ignored."""
        args = cmd.args
        assert isinstance(args, Enable)
        enabled = ""
        if "CONDSTORE" in args.capabilities and not self.condstore:
            self.enable_condstore()
            enabled = " CONDSTORE"
        self.send(f"* ENABLED{enabled}\r\n".encode("ascii"))
        return None

    async def namespace(self, cmd: Command) -> Done | None:
        self.send(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
        return None

    async def create(self, cmd: Command) -> Done | None:
        args = cmd.args
        assert isinstance(args, Mailbox)
        name = valid_name(args.name.removesuffix(SEPARATOR) or args.name)  # RFC 3501 §6.3.3 trailing "/"
        uses = [_SPECIAL_USES.get(u.upper()) for u in args.special_use]
        if len(uses) > 1 or None in uses:
            raise Reply("NO", "Unsupported SPECIAL-USE attribute.", "USEATTR")
        try:
            await self.store.create_mailbox(self.user, name, uses[0] if uses else None)
        except MailboxError as e:
            raise mailbox_error(e) from None
        return None

    async def delete(self, cmd: Command) -> Done | None:
        args = cmd.args
        assert isinstance(args, Mailbox)
        name = valid_name(args.name)
        if name == "INBOX":
            raise Reply("NO", "INBOX can't be deleted.", r.CANNOT)
        try:
            await self.store.delete_mailbox(self.user, name)
        except MailboxError as e:
            raise mailbox_error(e) from None
        return None

    async def rename(self, cmd: Command) -> Done | None:
        args = cmd.args
        assert isinstance(args, Rename)
        old, new = valid_name(args.old), valid_name(args.new)
        try:
            await self.store.rename_mailbox(self.user, old, new)
        except MailboxError as e:
            raise mailbox_error(e) from None
        return None

    async def subscribe(self, cmd: Command) -> Done | None:
        args = cmd.args
        assert isinstance(args, Mailbox)
        try:
            await self.store.set_subscribed(self.user, valid_name(args.name), cmd.name == "SUBSCRIBE")
        except MailboxError as e:
            raise mailbox_error(e) from None
        return None

    async def list_(self, cmd: Command) -> Done | None:
        """RFC 3501 §6.3.8-9, RFC 5258 (SUBSCRIBED/SPECIAL-USE selection and return), RFC 6154."""
        args = cmd.args
        assert isinstance(args, ListMailboxes)
        verb = "LSUB" if cmd.name == "LSUB" else "LIST"
        if args.patterns == ("",):
            self.send(r.untagged(verb, b'(\\Noselect) "/" ""'))  # the hierarchy delimiter
            return None
        infos = await self.store.list_mailboxes(self.user)
        names = {i.name for i in infos}
        patterns = [list_pattern(args.reference + p) for p in args.patterns]
        subscribed_only = "SUBSCRIBED" in args.selection
        special_only = "SPECIAL-USE" in args.selection
        show_subscribed = subscribed_only or "SUBSCRIBED" in args.returns
        for info in sorted(infos, key=lambda i: (i.name != "INBOX", i.name)):
            if not any(p.matches(info.name) for p in patterns):
                continue
            if (subscribed_only and not info.subscribed) or (special_only and info.special_use is None):
                continue
            attrs = list_attributes(info, names, subscribed=show_subscribed and verb == "LIST")
            self.send(r.list_line(attrs, info.name, command=verb))
        if verb == "LSUB":
            for parent in lsub_noselect_parents(infos, lambda n: any(p.matches(n) for p in patterns)):
                self.send(r.list_line(["\\Noselect"], parent, command=verb))
        return None

    async def status(self, cmd: Command) -> Done | None:
        args = cmd.args
        assert isinstance(args, Status)
        info = await self.info(valid_name(args.mailbox))
        values = {
            "MESSAGES": info.messages,
            "RECENT": info.recent,  # not yet claimed by a session (as Dovecot)
            "UIDNEXT": info.uidnext,
            "UIDVALIDITY": info.uidvalidity,
            "UNSEEN": info.unseen,
            "HIGHESTMODSEQ": info.highestmodseq,
        }
        items = " ".join(f"{k} {values[k]}" for k in args.items if k in values)
        self.send(b"* STATUS " + r.mailbox(info.name) + f" ({items})\r\n".encode("ascii"))
        return None

    async def append(self, cmd: Command) -> Done | None:
        """RFC 3501 §6.3.11; RFC 4315 APPENDUID; RFC 7889 TOOBIG; TRYCREATE for a missing mailbox."""
        args = cmd.args
        assert isinstance(args, Append)
        name = valid_name(args.mailbox)
        if not args.message:
            raise Reply("NO", "Can't save a zero byte message.")
        if len(args.message) > self.settings.max_literal_size:
            raise Reply("NO", "Message too large.", r.TOOBIG)
        try:
            uidvalidity, uid = await self.store.append(
                self.user, name, args.message, frozenset(args.flags), args.internal_date
            )
        except MailboxError as e:
            raise mailbox_error(e, trycreate=True) from None
        return Done("Append completed.", r.appenduid(uidvalidity, uid))
