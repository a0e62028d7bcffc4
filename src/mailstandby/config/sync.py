"""The failback sync into the primary mailboxes: `[sync]`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from mailstandby.config.base import KiB, MiB, Section


class SyncSettings(Section):
    """Failback sync: standby-only mail (and the phones' flags) into the primary mailboxes (docs/sync.md)."""

    automatic: bool = Field(
        True, description="Run when failback starts (FAILING_BACK); the failover waits for it before NORMAL."
    )
    imap_host: str = Field("", description="The primary's IMAP host; empty: no IMAP (see `smtp_fallback`).")
    imap_port: int = Field(993, ge=1, le=65535, description="The primary's IMAP port.")
    imap_tls: Literal["none", "starttls", "implicit"] = Field(
        "implicit", description="`implicit` (IMAPS), `starttls` (required: no STARTTLS offered is an error) or `none`."
    )
    tls_verify: bool = Field(True, description="Verify the primary's IMAP certificate (name and chain).")
    tls_ca_file: Path | None = Field(
        None, description="PEM file of the CA(s) to trust for the primary's IMAP certificate; unset: the system's."
    )
    login: Literal["master-user", "sasl-authzid"] = Field(
        "master-user",
        description="`master-user`: LOGIN as `login_format` (Dovecot `user*master`); `sasl-authzid`: AUTHENTICATE "
        "PLAIN as the master user with the user as authorization identity.",
    )
    master_user: str = Field("", description="The primary's master (administrator) login name.")
    login_format: str = Field(
        "{user}*{master}", description="LOGIN name for `master-user`: `{user}` and `{master}` are replaced."
    )
    password_file: Path | None = Field(
        None, description="File holding the master user's password (never in this file)."
    )
    concurrency: int = Field(4, ge=1, le=64, description="Users synchronized in parallel, one IMAP connection each.")
    batch_messages: int = Field(
        64, ge=1, le=1000, description="Messages per MULTIAPPEND command (two in flight), or APPENDs in flight without."
    )
    batch_bytes: int = Field(
        8 * MiB, ge=64 * KiB, description="Largest MULTIAPPEND command in bytes (a bigger message goes alone)."
    )
    multiappend: bool = Field(
        True, description="Use MULTIAPPEND (RFC 3502) when offered; off: one APPEND per message, pipelined (LITERAL+)."
    )
    max_attempts: int = Field(5, ge=1, description="Refusals (NO) of one message before it is given up and reported.")
    timeout: float = Field(120.0, gt=0, description="Seconds to wait for the primary to connect or answer a command.")
    folder_map: dict[str, str] = Field(
        default_factory=dict,
        description='Standby folder -> primary folder, e.g. `{ Sent = "Sent Items" }`; `""` leaves a folder out.',
    )
    restore_deleted: bool = Field(
        False, description="Also copy messages flagged \\Deleted on the standby (expunged ones are gone for good)."
    )
    smtp_fallback: bool = Field(
        False,
        description="Without `imap_host`, re-inject standby-only INBOX mail through `[primary]` over SMTP "
        "(at least once, see docs/sync.md).",
    )
