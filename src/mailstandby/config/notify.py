"""Notifications to users, forwarding during an outage, and phone setup links: `[notify]`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from mailstandby.config.base import Section


class NotifySettings(Section):
    """Notifications to users on their alternate addresses and modes, forwarding, and phone setup links."""

    templates: Path | None = Field(
        None, description="Directory of template overrides (same file names as the shipped ones); unset: shipped."
    )
    sender: str = Field("", description="From address of notifications; empty: mailstandby@ the first domain.")
    bounce_address: str = Field(
        "", description="Envelope sender of notifications and forwards (bounces come here); empty: `sender`."
    )
    organization: str = Field("", description="Organization name shown in notifications and setup profiles.")
    public_host: str = Field("", description="Host name users' phones connect to; empty: node.hostname.")
    imap_port: int = Field(993, ge=1, le=65535, description="IMAP port users should use.")
    imap_security: Literal["ssl", "starttls"] = Field("ssl", description="TLS on that port: implicit or STARTTLS.")
    pop3_port: int = Field(995, ge=1, le=65535, description="POP3 port users should use.")
    pop3_security: Literal["ssl", "starttls"] = Field("ssl", description="TLS on that port.")
    submission_port: int = Field(587, ge=1, le=65535, description="SMTP submission port users should use.")
    submission_security: Literal["ssl", "starttls"] = Field("starttls", description="TLS on that port.")
    setup_url: str = Field(
        "", description="Public HTTPS base URL of the setup pages (e.g. https://standby.example.com); empty: no links."
    )
    link_lifetime: float = Field(7 * 86400.0, gt=0, description="Seconds a personal setup link stays valid.")
    code_lifetime: float = Field(900.0, gt=0, description="Seconds a one-time code for setting a password is valid.")
    retry_initial: float = Field(30.0, gt=0, description="Seconds before retrying a failed notification.")
    retry_max: float = Field(1800.0, gt=0, description="Longest wait between retries (exponential backoff).")
    max_attempts: int = Field(12, ge=1, description="Attempts before a notification is marked failed.")
    forward_lists: bool = Field(False, description="Also forward mailing-list traffic (List-Id and friends).")
    forward_summaries_per_hour: int = Field(
        30, ge=1, description="Forwarded summaries per user and hour (SMS and push cost money); more are dropped."
    )
    forward_hop_limit: int = Field(
        3, ge=1, description="A message already forwarded this many times by a standby is not forwarded again."
    )

    @field_validator("sender", "bounce_address")
    @classmethod
    def _address(cls, value: str) -> str:
        local, at, domain = value.rpartition("@")
        if value and (not at or not local or not domain or any(c.isspace() or c in '<>",' for c in value)):
            raise ValueError(f"{value!r} is not an address (local@domain)")
        return value

    @field_validator("setup_url")
    @classmethod
    def _https(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ValueError("must be an https:// URL (plain http only for 127.0.0.1/localhost tests)")
        return value.rstrip("/")
