"""Deciding and acting on an outage: the leader among nodes (`[cluster]`), the monitor, the failover
policy and the DNS switch."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from mailstandby.config.base import Section


class ClusterSettings(Section):
    """Several nodes on one PostgreSQL store: one leader (advisory lock and fencing term), see docs/cluster.md;
    each node is named by `node.id`."""

    lease: float = Field(
        10.0, gt=0, description="Seconds a leader's lease lasts; a leader that cannot renew it steps down before."
    )
    renew_interval: float = Field(
        2.0, gt=0, description="Seconds between lease renewals (and a follower's tries to take the lead)."
    )
    follow_interval: float = Field(
        1.0, gt=0, description="Seconds between a follower's reads of the failover state the leader recorded."
    )

    @model_validator(mode="after")
    def _lease_outlasts_renewals(self) -> ClusterSettings:
        if self.lease <= 3 * self.renew_interval:
            raise ValueError("lease must be longer than 3 x renew_interval")
        return self


class MonitorSettings(Section):
    """How the primary is watched (docs/failover.md). A round every `interval` seconds, the next one after
    `fast_interval` when a round failed; down when consecutive failures weigh `down_after`, up again after
    `up_after` good rounds that also lasted `min_dwell` plus the flap penalty. Every directory address is
    probed with `RCPT TO` in rotation besides."""

    interval: float = Field(10.0, gt=0, description="Seconds between probe rounds while the primary is healthy.")
    fast_interval: float = Field(
        1.0, gt=0, description="Seconds to the next round after a failed one (a failure is confirmed or cleared fast)."
    )
    timeout: float = Field(5.0, gt=0, description="Seconds each probe may take before it counts as failed.")
    down_after: int = Field(
        2, ge=1, description="Weight of consecutive failures (1 per failed round by default) that declares it down."
    )
    up_after: int = Field(3, ge=1, description="Good rounds in a row before a down primary is declared up.")
    hard_weight: int = Field(
        1,
        ge=1,
        description="Weight of a hard failure: connection refused (at each retry), 5xx to RCPT of a known mailbox.",
    )
    soft_weight: int = Field(1, ge=1, description="Weight of a soft failure: a timeout, a 4xx reply.")
    min_dwell: float = Field(
        30.0, ge=0, description="Seconds a status holds at least; a down target must answer this long to be up."
    )
    flap_penalty: float = Field(
        30.0, ge=0, description="Seconds added to `min_dwell` before recovery for each flap (each time it went down)."
    )
    flap_half_life: float = Field(900.0, gt=0, description="Seconds for the flap count behind the penalty to halve.")
    probe: Literal["tcp", "smtp"] = Field(
        "smtp", description="System probe: `tcp` connect, or `smtp` banner + EHLO + QUIT on the primary's port."
    )
    watch: list[str] = Field(
        [], description="Addresses probed with `RCPT TO` every round (mailbox unavailable vs user unknown)."
    )
    rotation: bool = Field(True, description="Probe every directory user's address with `RCPT TO`, in rotation.")
    rotation_period: float = Field(
        300.0, gt=0, description="Seconds within which every directory address is probed once (unless the rate binds)."
    )
    rotation_rate: float = Field(50.0, gt=0, description="At most this many `RCPT TO` a second from all the probes.")
    rotation_batch: int = Field(50, ge=1, description="Recipients per transaction of a rotation session (then RSET).")
    rotation_session: int = Field(500, ge=1, description="Recipients per rotation session (then QUIT).")
    rcpt_host: str = Field("", description="Host for the RCPT probes; empty: the primary's host.")
    rcpt_port: int = Field(0, ge=0, le=65535, description="Port for the RCPT probes; 0: the primary's port.")
    rcpt_protocol: Literal["", "smtp", "lmtp"] = Field(
        "", description="Protocol for the RCPT probes (LMTP asks the mailbox server itself); empty: the primary's."
    )
    end_to_end: bool = Field(
        False, description="Also send a probe message through the primary and read it back over IMAP each round."
    )
    probe_address: str = Field("", description="Mailbox that receives the end-to-end probe messages.")
    probe_password_file: Path | None = Field(None, description="File holding that mailbox's IMAP password.")
    imap_host: str = Field("", description="The primary's IMAP host for the end-to-end probe; empty: primary host.")
    imap_port: int = Field(993, ge=1, le=65535, description="Its IMAP port (993: implicit TLS; else STARTTLS).")
    imap_tls_verify: bool = Field(True, description="Verify the primary IMAP server's certificate.")
    end_to_end_deadline: float = Field(
        60.0, gt=0, description="Seconds for the probe message to appear in the mailbox before the round fails."
    )
    queue_evidence: bool = Field(
        True, description="Count the queue's delivery results (refused, timeouts, 4.3.x/4.4.x) as evidence too."
    )

    @model_validator(mode="after")
    def _end_to_end_needs_a_mailbox(self) -> MonitorSettings:
        if self.end_to_end and not (self.probe_address and self.probe_password_file):
            raise ValueError("end_to_end needs probe_address and probe_password_file")
        return self


class FailoverSettings(Section):
    control: Literal["automatic", "manual"] = Field(
        "automatic", description="`automatic`: the monitor fails over and back; `manual`: only administrators do."
    )
    scope: Literal["all-on-any", "all-on-fraction", "per-address"] = Field(
        "all-on-any",
        description="Who fails over: everyone when any watched address is down, when more than `fraction` is, "
        "or only the users whose addresses are down.",
    )
    fraction: float = Field(0.5, ge=0, lt=1, description="For `all-on-fraction`: share of watched addresses down.")


class DNSSettings(Section):
    """The MX switch: on failover the domain's MX (and optional A/AAAA) point at the standby by RFC 2136
    dynamic update signed with TSIG; on failback exactly the previous records are put back."""

    enabled: bool = Field(False, description="Switch DNS on failover and restore it on failback.")
    server: str = Field("127.0.0.1", description="The zone's primary authoritative server (it takes the updates).")
    port: int = Field(53, ge=1, le=65535, description="Its DNS port (updates and checks go over TCP).")
    zone: str = Field("", description="The zone to update, e.g. example.com.")
    mx_name: str = Field("", description="Owner name of the MX records to switch; empty: the zone apex.")
    standby_mx: str = Field("", description="Host name of mailstandby's MX target, e.g. standby.example.com.")
    standby_preference: int = Field(10, ge=0, le=65535, description="Preference of the standby MX record.")
    addresses: dict[str, list[str]] = Field(
        {}, description="Host names whose A/AAAA records are replaced too, with the standby's addresses."
    )
    ttl: int = Field(300, ge=0, description="TTL of the standby's records (the saved ones keep their own).")
    tsig_key_name: str = Field("", description="TSIG key name, as in the server's `key` statement.")
    tsig_algorithm: Literal["hmac-sha256", "hmac-sha512", "hmac-sha384", "hmac-sha224", "hmac-sha1", "hmac-md5"] = (
        Field("hmac-sha256", description="TSIG algorithm.")
    )
    tsig_secret_file: Path | None = Field(None, description="File holding the base64 TSIG secret.")
    timeout: float = Field(10.0, gt=0, description="Seconds for each DNS exchange.")

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> DNSSettings:
        missing = [
            k
            for k in ("zone", "standby_mx", "tsig_key_name", "tsig_secret_file")
            if self.enabled and not getattr(self, k)
        ]
        if missing:
            raise ValueError(f"enabled needs {', '.join(missing)}")
        return self
