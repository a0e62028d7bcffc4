"""The DNS switch: on failover, point the domain's MX (and optionally A/AAAA) at the standby by
RFC 2136 dynamic update signed with TSIG; on failback, put back exactly what was there.

Order of work, so that a crash or an error never leaves the domain pointing nowhere:
1. read the records as the authoritative server has them (over TCP, no cache in between);
2. save them in the store (what `restore` will put back, surviving a restart);
3. send one update replacing them (atomic on the server: all changes or none);
4. read back from the server and compare (verification).
A refused update (wrong TSIG key, NOTAUTH, REFUSED) forgets the saved copy: nothing changed.
`restore` replaces the records with the saved ones (deleting those that did not exist), verifies,
then forgets the saved copy. Both are idempotent.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

from mailstandby.config import DNSSettings
from mailstandby.core.leadership import Leadership, NotLeading

log = logging.getLogger(__name__)


class DNSError(Exception):
    """The switch could not be made or verified; the message says what the server said."""


@dataclass(frozen=True, slots=True)
class RRset:
    name: str  # absolute, with the trailing dot
    rdtype: str  # "MX", "A", "AAAA"
    ttl: int
    rdatas: tuple[str, ...]  # presentation form, sorted; empty: the record set did not exist


class SavedRecords(Protocol):
    async def save_dns(self, rrsets: Sequence[RRset]) -> None: ...

    async def saved_dns(self) -> list[RRset]: ...

    async def forget_dns(self) -> None: ...

    async def leader_action(self, term: int, node: str, action: str, detail: str = "") -> None:
        """Record the switch or restore the leader in `term` is about to make; NotLeading when the term is over."""
        ...


def _absolute(name: str) -> str:
    return name if name.endswith(".") else name + "."


class DNSSwitch:
    def __init__(self, settings: DNSSettings, saved: SavedRecords, leadership: Leadership) -> None:
        self.settings = settings
        self.saved = saved
        self.leadership = leadership
        self.zone = dns.name.from_text(settings.zone)
        self.mx_owner = _absolute(settings.mx_name or settings.zone)
        secret = ""
        if settings.tsig_secret_file is not None:
            secret = settings.tsig_secret_file.read_text(encoding="utf-8").strip()
        try:
            base64.b64decode(secret, validate=True)
        except binascii.Error:
            raise DNSError(f"{settings.tsig_secret_file}: not a base64 TSIG secret") from None
        self.keyring = dns.tsigkeyring.from_text({settings.tsig_key_name: secret})
        self.keyname = dns.name.from_text(settings.tsig_key_name)
        self.algorithm = dns.name.from_text(settings.tsig_algorithm)

    # -- the standby's records ----------------------------------------------------------------
    def wanted(self) -> list[RRset]:
        s = self.settings
        out = [RRset(self.mx_owner, "MX", s.ttl, (f"{s.standby_preference} {_absolute(s.standby_mx)}",))]
        for host, ips in sorted(s.addresses.items()):
            v4 = tuple(sorted(ip for ip in ips if ":" not in ip))
            v6 = tuple(sorted(ip for ip in ips if ":" in ip))
            out.append(RRset(_absolute(host), "A", s.ttl, v4))
            out.append(RRset(_absolute(host), "AAAA", s.ttl, v6))
        return out

    # -- public -------------------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        saved = await self.saved.saved_dns()
        current = [await self._read(r.name, r.rdtype) for r in self.wanted()]
        return {
            "switched": bool(saved),
            "current": [_plain(r) for r in current],
            "saved": [_plain(r) for r in saved],
            "standby": [_plain(r) for r in self.wanted()],
        }

    async def switch(self) -> list[RRset]:
        """Point the records at the standby; returns what the server now has. Only the leader does
        (NotLeading elsewhere), and only after a record fenced by its term."""
        await self._fence("switch")
        wanted = self.wanted()
        if not await self.saved.saved_dns():
            before = [await self._read(r.name, r.rdtype) for r in wanted]
            await self.saved.save_dns(before)
        try:
            await self._update(wanted)
        except DNSError:
            if await self._matches(await self.saved.saved_dns()):
                await self.saved.forget_dns()  # refused: nothing changed, nothing to restore
            raise
        now = await self._verify(wanted)
        log.warning("dns: %s MX now %s (switched to the standby)", self.mx_owner, now[0].rdatas)
        return now

    async def restore(self) -> list[RRset]:
        """Put back the records saved by `switch`; returns what the server now has ([] if none saved)."""
        saved = await self.saved.saved_dns()
        if not saved:
            return []
        await self._fence("restore")
        await self._update(saved)
        now = await self._verify(saved)
        await self.saved.forget_dns()
        log.warning("dns: %s MX restored to %s", self.mx_owner, now[0].rdatas if now else "?")
        return now

    async def _fence(self, action: str) -> None:
        term = self.leadership.term
        if not term:
            raise NotLeading(f"{self.leadership.node} does not lead: the DNS {action} is the leader's")
        await self.saved.leader_action(term, self.leadership.node, f"dns-{action}", self.mx_owner)
        if self.leadership.term != term:  # paused while recording: the next leader decides
            raise NotLeading(f"{self.leadership.node} no longer leads in term {term}")

    # -- DNS ----------------------------------------------------------------------------------
    async def _read(self, name: str, rdtype: str) -> RRset:
        query = dns.message.make_query(name, rdtype)
        query.flags &= ~dns.flags.RD
        response = await self._send(query)
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise DNSError(f"query {name} {rdtype}: {dns.rcode.to_text(response.rcode())}")
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.from_text(rdtype) and rrset.name == dns.name.from_text(name):
                return RRset(name, rdtype, rrset.ttl, tuple(sorted(r.to_text() for r in rrset)))
        return RRset(name, rdtype, 0, ())

    async def _update(self, rrsets: Sequence[RRset]) -> None:
        update = dns.update.UpdateMessage(
            self.zone, keyring=self.keyring, keyname=self.keyname, keyalgorithm=self.algorithm
        )
        for r in rrsets:
            if r.rdatas:
                update.replace(r.name, r.ttl, r.rdtype, *r.rdatas)
            else:
                update.delete(r.name, r.rdtype)
        response = await self._send(update)
        if response.rcode() != dns.rcode.NOERROR:
            raise DNSError(f"update refused by {self.settings.server}: {dns.rcode.to_text(response.rcode())}")

    async def _verify(self, wanted: Sequence[RRset]) -> list[RRset]:
        now = [await self._read(r.name, r.rdtype) for r in wanted]
        for want, got in zip(wanted, now, strict=True):
            if want.rdatas != got.rdatas:
                raise DNSError(f"verification failed: {got.name} {got.rdtype} is {got.rdatas}, not {want.rdatas}")
        return now

    async def _matches(self, rrsets: Sequence[RRset]) -> bool:
        try:
            for r in rrsets:
                if (await self._read(r.name, r.rdtype)).rdatas != r.rdatas:
                    return False
        except DNSError:
            return False
        return True

    async def _send(self, message: dns.message.Message) -> dns.message.Message:
        s = self.settings
        try:
            return await dns.asyncquery.tcp(message, s.server, port=s.port, timeout=s.timeout)
        except dns.tsig.PeerError as e:  # the server rejected our signature (BADSIG, BADKEY, BADTIME)
            raise DNSError(f"{s.server} rejected the TSIG signature ({type(e).__name__}): check the key") from None
        except (dns.exception.DNSException, OSError) as e:
            raise DNSError(f"{s.server}:{s.port}: {type(e).__name__}: {e}") from None


def _plain(r: RRset) -> dict[str, Any]:
    return {"name": r.name, "type": r.rdtype, "ttl": r.ttl, "records": list(r.rdatas)}
