"""Direct delivery to another domain's MX hosts (RFC 5321 §5.1), for mail to other domains during an outage.

Without a smarthost, mail for other domains normally leaves through the
primary. While the primary is out, the router sends it here instead (Route
DIRECT), one connection per destination domain.

`plan_mx` is the pure decision: the MX records in preference order (equal
preferences shuffled, RFC 5321 §5.1), the domain itself when it has no MX
(the implicit MX), a permanent failure for a null MX (RFC 7505). `MXResolver`
asks DNS (dnspython, the configured server or the system's), and
`MXConnection` tries each host's addresses in order until one accepts the
connection, then hands the transaction to a `RelayConnection` for it.

Errors say whether they are temporary or permanent, as `Rejected` from
`open()`: the domain does not exist (NXDOMAIN) 550 5.1.2, a null MX 556
5.1.10, no MX and no address 550 5.4.4; any other DNS trouble 451 4.4.3, and
no host accepting a connection 451 4.4.1. Unknown means temporary.

TLS between MX hosts is opportunistic, as MTAs do (RFC 3207 §4; RFC 7435):
STARTTLS when the host offers it, with no certificate verification, since
an MX host's certificate rarely names what we looked up and a failed check
would only push the mail back to plain text. SMTP AUTH credentials of the
`[outbound]` section are never sent to MX hosts.
"""

from __future__ import annotations

import ipaddress
import logging
import random
from dataclasses import dataclass
from enum import StrEnum

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver

from mailstandby.config import OutboundSettings, PrimarySettings
from mailstandby.core.reply import Rejected, Reply
from mailstandby.smtp.relay import DsnRequest, RelayConnection, temporary

log = logging.getLogger(__name__)

MAX_ADDRESSES = 10  # addresses tried per attempt, over all MX hosts (Postfix tries 5 hosts)
DNS_LIFETIME = 20.0  # seconds for one lookup, all retries included

C550_NO_DOMAIN = Reply(550, "5.1.2", "recipient domain does not exist")  # RFC 3463 X.1.2
C556_NULL_MX = Reply(556, "5.1.10", "recipient domain accepts no mail (null MX)")  # RFC 7505 §4.1
C550_NO_ROUTE = Reply(550, "5.4.4", "recipient domain has no MX and no address")  # RFC 5321 §5.1, RFC 3463 X.4.4
C451_DNS_TEMPFAIL = Reply(451, "4.4.3", "cannot look up the recipient domain now")  # RFC 3463 X.4.3


class MXReason(StrEnum):
    MX = "mx"  # the domain's MX records, by preference
    IMPLICIT_MX = "implicit-mx"  # no MX: the domain's own address (RFC 5321 §5.1)
    ADDRESS_LITERAL = "address-literal"  # user@[192.0.2.1]: that address, no lookup
    NULL_MX = "null-mx"  # "MX 0 ." (RFC 7505): the domain takes no mail


@dataclass(frozen=True, slots=True)
class MXPlan:
    hosts: tuple[str, ...]  # names (or addresses) to try, in order
    reason: MXReason
    reply: Reply | None = None  # set when there is nothing to try: the permanent answer


def address_literal(domain: str) -> str | None:
    """The address of a domain literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`, RFC 5321 §4.1.3), else None."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    inner = domain[1:-1]
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return None


def plan_mx(domain: str, records: list[tuple[int, str]] | None, rng: random.Random | None = None) -> MXPlan:
    """Where to deliver for `domain`, from its MX records as (preference, exchange).

    `records` is None (or empty) when the domain exists but has no MX; an
    exchange "." is the root (a null MX). Lower preference first; hosts of
    equal preference in random order, to spread the load (RFC 5321 §5.1).
    """
    if not records:
        return MXPlan((domain,), MXReason.IMPLICIT_MX)
    usable = [(pref, host.rstrip(".")) for pref, host in records if host.rstrip(".")]
    if not usable:  # RFC 7505 §3: the single record "0 ."; no delivery is ever attempted
        return MXPlan((), MXReason.NULL_MX, C556_NULL_MX)
    rng = rng or random.Random()
    keyed = [(pref, rng.random(), host) for pref, host in usable]
    ordered: list[str] = []
    for _, _, host in sorted(keyed):
        if host.lower() not in (h.lower() for h in ordered):
            ordered.append(host)
    return MXPlan(tuple(ordered), MXReason.MX)


class MXResolver:
    """MX and address lookups through dnspython: the `resolver` server when set, else the system's."""

    def __init__(self, settings: OutboundSettings, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.rng = rng
        self._resolver: dns.asyncresolver.Resolver | None = None

    def resolver(self) -> dns.asyncresolver.Resolver:
        """Built on first use, so a machine without /etc/resolv.conf fails a delivery, not the start."""
        if self._resolver is None:
            if self.settings.resolver:
                host, _, port = self.settings.resolver.rpartition(":")
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = [host.strip("[]")]
                resolver.port = int(port)
            else:
                resolver = dns.asyncresolver.Resolver()  # may raise NoResolverConfiguration
            resolver.lifetime = DNS_LIFETIME
            self._resolver = resolver
        return self._resolver

    async def plan(self, domain: str) -> MXPlan:
        """The hosts to try for `domain`; raises Rejected (temporary or permanent) when DNS says no."""
        literal = address_literal(domain)
        if literal is not None:
            return MXPlan((literal,), MXReason.ADDRESS_LITERAL)
        try:
            name = dns.name.from_text(domain)  # IDNA for a non-ASCII domain (RFC 6531)
        except (dns.exception.DNSException, ValueError) as e:
            raise Rejected(C550_NO_DOMAIN, detail=f"bad domain {domain!r}: {e}") from None
        try:
            answer = await self.resolver().resolve(name, "MX", search=False)
            records: list[tuple[int, str]] | None = [
                (rr.preference, rr.exchange.to_text(omit_final_dot=True)) for rr in answer
            ]
        except dns.resolver.NXDOMAIN:
            raise Rejected(C550_NO_DOMAIN, detail=f"{domain}: NXDOMAIN") from None
        except dns.resolver.NoAnswer:
            records = None
        except dns.exception.DNSException as e:
            raise Rejected(C451_DNS_TEMPFAIL, detail=f"{domain} MX: {type(e).__name__}: {e}") from None
        plan = plan_mx(domain, records, self.rng)
        if plan.reply is not None:
            raise Rejected(plan.reply, detail=f"{domain}: {plan.reason}")
        if plan.reason is MXReason.IMPLICIT_MX and not await self.addresses(domain):
            raise Rejected(C550_NO_ROUTE, detail=f"{domain}: no MX, no A/AAAA")
        return plan

    async def addresses(self, host: str) -> list[str]:
        """IPv4 then IPv6 addresses of `host` (an address stays itself); raises Rejected 4.4.3 when
        DNS fails without giving any address."""
        if address_literal(f"[{host}]") is not None:
            return [host]
        found: list[str] = []
        trouble = ""
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self.resolver().resolve(host, rdtype, search=False)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.exception.DNSException as e:
                trouble = f"{host} {rdtype}: {type(e).__name__}: {e}"
                continue
            found.extend(rr.address for rr in answer)
        if not found and trouble:
            raise Rejected(C451_DNS_TEMPFAIL, detail=trouble)
        return found


class MXConnection:
    """A connection to one MX host of `domain`, found at `open()`; the PrimaryConnection protocol."""

    def __init__(self, domain: str, settings: OutboundSettings, hostname: str, resolver: MXResolver) -> None:
        self.domain = domain
        self.settings = settings
        self.hostname = hostname
        self.resolver = resolver
        self.conn: RelayConnection | None = None

    @property
    def usable(self) -> bool:
        return self.conn is not None and self.conn.usable

    @property
    def passed_dsn(self) -> bool:
        return self.conn is not None and self.conn.passed_dsn

    def _host_settings(self, address: str) -> PrimarySettings:
        s = self.settings
        return PrimarySettings(
            host=address,
            port=s.mx_port,
            protocol="smtp",
            tls="starttls",  # opportunistic, unverified: see the module docstring
            tls_verify=False,
            helo_name=s.helo_name,
            connect_timeout=s.connect_timeout,
            command_timeout=s.command_timeout,
            data_timeout=s.data_timeout,
        )

    async def open(self) -> None:
        """Resolve and connect; raises Rejected with the reply every recipient gets when no host will do."""
        try:
            plan = await self.resolver.plan(self.domain)
        except dns.exception.DNSException as e:  # e.g. no resolver configuration on this machine
            raise Rejected(C451_DNS_TEMPFAIL, detail=f"{self.domain}: {type(e).__name__}: {e}") from None
        failed: list[str] = []
        tried = 0
        for host in plan.hosts:
            try:
                addresses = await self.resolver.addresses(host)
            except (Rejected, dns.exception.DNSException) as e:
                failed.append(f"{host}: {e}")
                continue
            if not addresses:
                failed.append(f"{host}: no address")
            for address in addresses:
                if tried >= MAX_ADDRESSES:
                    break
                tried += 1
                conn = RelayConnection(self._host_settings(address), self.hostname)
                try:
                    await conn.open()
                except Exception as e:  # refused, timeout, bad banner, TLS: try the next one
                    await conn.close()
                    failed.append(f"{host}[{address}]: {type(e).__name__}")
                    continue
                log.info("direct delivery for %s via %s[%s] (%s)", self.domain, host, address, plan.reason)
                self.conn = conn
                return
        why = "; ".join(failed) or "nothing to try"
        raise Rejected(Reply(451, "4.4.1", f"no MX host of {self.domain} accepted a connection: {why}"[:300]))

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()

    def abort(self) -> None:
        if self.conn is not None:
            self.conn.abort()

    async def send(
        self,
        sender: str,
        recipients: list[str],
        body: bytes,
        *,
        smtputf8: bool,
        eight_bit: bool,
        dsn: DsnRequest | None = None,
    ) -> dict[str, Reply]:
        if self.conn is None:
            return dict.fromkeys(recipients, temporary("no MX host connected"))
        return await self.conn.send(sender, recipients, body, smtputf8=smtputf8, eight_bit=eight_bit, dsn=dsn)
