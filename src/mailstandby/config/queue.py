"""Where accepted mail goes and how: the primary (`[primary]`), other domains (`[outbound]`), the
queue's retries and claims (`[queue]`), and the journal copies of relayed mail (`[journal]`)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mailstandby.config.base import Section, _digits


class PrimarySettings(Section):
    host: str = Field("127.0.0.1", description="The primary mail system's SMTP/LMTP host.")
    port: int = Field(25, ge=1, le=65535, description="Its port.")
    protocol: Literal["smtp", "lmtp"] = Field("smtp", description="Deliver with SMTP or LMTP (per-recipient results).")
    tls: Literal["none", "starttls", "required"] = Field(
        "none", description="`starttls` when offered, `required` to keep mail queued rather than send in clear."
    )
    tls_verify: bool = Field(True, description="Verify the primary's certificate.")
    helo_name: str | None = Field(None, description="Name for EHLO/LHLO; defaults to node.hostname.")
    connect_timeout: float = Field(30.0, gt=0, description="Seconds to connect and read the banner.")
    command_timeout: float = Field(
        300.0, gt=0, description="Seconds to wait for each reply (the reply to end-of-data gets data_timeout)."
    )
    data_timeout: float = Field(
        600.0, gt=0, description="Seconds to wait for the reply to end-of-data (RFC 5321 §4.5.3.2.6: 10 minutes)."
    )


class OutboundSettings(PrimarySettings):
    """Where mail for other domains goes (users' replies, DSNs to outside senders)."""

    host: str = Field("", description="Smarthost for outside domains; empty: hand such mail to the primary.")
    port: int = Field(587, ge=1, le=65535, description="Smarthost port.")
    tls: Literal["none", "starttls", "required"] = Field("required", description="TLS towards the smarthost.")
    username: str | None = Field(None, description="SMTP AUTH user at the smarthost, if it needs one.")
    password_file: Path | None = Field(None, description="File holding that user's password (never in this file).")
    direct_mx: bool = Field(
        True, description="Without a smarthost, deliver to other domains by their MX while failed over."
    )
    mx_port: int = Field(
        25, ge=1, le=65535, description="Port used on MX hosts; other values only for tests or special networks."
    )
    resolver: str = Field("", description="HOST:PORT of a DNS server to ask for MX records; empty: the system's.")

    @field_validator("resolver")
    @classmethod
    def _resolver(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if value and (not sep or not _digits(port) or not 1 <= int(port) <= 65535):
            raise ValueError("must be HOST:PORT of a DNS server, e.g. 127.0.0.1:53, or empty for the system's")
        if value:
            try:
                ipaddress.ip_address(host.strip("[]"))
            except ValueError:
                raise ValueError("HOST must be an IP address (a resolver cannot be found by name)") from None
        return value


class QueueSettings(Section):
    concurrency: int = Field(8, ge=1, le=256, description="Parallel connections to the primary.")
    retry_initial: float = Field(60.0, gt=0, description="Seconds before the first retry after a temporary failure.")
    retry_max: float = Field(3600.0, gt=0, description="Longest wait between retries (exponential backoff, factor 2).")
    max_lifetime: float = Field(
        5 * 86400.0,
        gt=0,
        description="Seconds a message may stay queued before it bounces (RFC 5321 §4.5.4.1: 4-5 days).",
    )
    bounce_from: str = Field(
        "MAILER-DAEMON", description="Display local part for DSNs (the envelope sender is always <>)."
    )
    delay_warning_time: float = Field(
        4 * 3600.0,
        ge=0,
        description="Seconds a recipient may stay deferred before its sender gets one delay notice (RFC 3461 "
        "NOTIFY=DELAY, or no NOTIFY); 0: never. Postfix's delay_warning_time, which defaults to off.",
    )
    lookup_in_doubt: bool = Field(
        True,
        description="With [sync] IMAP access: mark relays in flight and, before sending one whose outcome is "
        "unknown (crash, lost reply) again, search the primary INBOX for it (docs/mail-path.md).",
    )
    lease: float = Field(
        60.0,
        gt=0,
        description="PostgreSQL: seconds a node's claim on a delivery lasts unless renewed; a dead node's "
        "claims are taken over after it (docs/postgresql.md).",
    )
    claim_interval: float = Field(
        5.0,
        gt=0,
        description="PostgreSQL: seconds between a node's looks for due retries and expired claims (its "
        "claims are renewed at the same pace); at most a third of `lease`.",
    )

    @model_validator(mode="after")
    def _lease_outlasts_renewals(self) -> QueueSettings:
        if self.claim_interval * 3 > self.lease:
            raise ValueError("claim_interval must be at most a third of lease (a claim is renewed every interval)")
        return self


class JournalSettings(Section):
    enabled: bool = Field(
        True, description="File a copy of every message relayed to the primary in the user's standby INBOX."
    )
    retention_days: float = Field(30.0, gt=0, description="Days a journal copy is kept before it is pruned.")
    prune_interval: float = Field(3600.0, gt=0, description="Seconds between prunings of old journal copies.")
