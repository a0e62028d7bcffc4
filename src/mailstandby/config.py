"""The TOML configuration, validated into frozen pydantic models.

Each component takes its own section (`SMTPSettings`, `QueueSettings`, ...),
never the whole `Config`. `load()` reports every problem in one run, each as
`file: section.key: problem`, and nothing listens before it succeeded.
Secrets come from files or the environment, never from the log.
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

KiB = 1024
MiB = 1024 * KiB


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes "²" (int() refuses it) and "٣" (int() reads 3)."""
    return text.isascii() and text.isdigit()


def _check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not _digits(port) or not 0 <= int(port) <= 65535:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:2525 (port 0 picks a free port)")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if host != "localhost":
            raise ValueError("HOST must be an IP address or localhost") from None
    return value


Listen = Annotated[str, AfterValidator(_check_listen)]


def _networks(values: list[str]) -> list[str]:
    for v in values:
        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError:
            raise ValueError(f"{v!r} is not an address or network (e.g. 10.0.0.5, 10.0.0.0/24, ::1)") from None
    return values


def split_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


class NodeSettings(Section):
    hostname: str = Field("localhost", description="Name used in the SMTP banner, EHLO and Received headers.")
    data_dir: Path = Field(
        Path("data"), description="Directory holding the store; relative paths are relative to the config file."
    )
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto", description="Event loop: uvloop where available with `auto`."
    )
    log_level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level; TRACE adds protocol transcripts (passwords always masked)."
    )
    shutdown_grace: float = Field(
        10.0, ge=0, description="Seconds given to sessions and deliveries in flight at shutdown."
    )
    loop_lag_warning: float = Field(
        0.25, gt=0, description="Event-loop scheduling delay in seconds past which a warning is logged."
    )


class TLSSettings(Section):
    """The certificate every listener (SMTP, IMAP, POP3) presents."""

    cert: Path | None = Field(
        None, description="PEM certificate chain; with `key` unset a self-signed pair is generated under the data dir."
    )
    key: Path | None = Field(None, description="PEM private key for `cert`.")


class SMTPSettings(Section):
    listen: list[Listen] = Field(["127.0.0.1:2525"], description="Addresses of the inbound MX listener (HOST:PORT).")
    max_message_size: int = Field(
        35 * MiB,
        ge=1 * KiB,
        description="Largest accepted message in bytes, advertised as SIZE; larger gets 552 5.3.4.",
    )
    max_data_memory: int = Field(
        128 * MiB,
        ge=1 * MiB,
        description="Message data (as received) all sessions of this listener hold at once; a message that would "
        "pass it gets 452 4.3.1 (retried later). One message is always let through.",
    )
    max_recipients: int = Field(
        100, ge=1, description="RCPT commands per transaction, accepted or not; more get 452 4.5.3."
    )
    max_line_length: int = Field(
        2048, ge=512, description="Longest command line in bytes (RFC 5321 requires 512); longer gets 500 5.5.6."
    )
    max_errors: int = Field(20, ge=1, description="Errors per session before 421 4.7.0 and disconnect.")
    max_junk_commands: int = Field(100, ge=1, description="NOOP/RSET/VRFY/HELP per session before 421 4.7.0.")
    max_connections: int = Field(500, ge=1, description="Concurrent sessions; more get 421 4.3.2 at connect.")
    max_connections_per_client: int = Field(
        50, ge=1, description="Concurrent sessions per client address (IPv6: per /64); more get 421 4.7.0."
    )
    command_timeout: float = Field(
        300.0, gt=0, description="Seconds to wait for a command (RFC 5321 §4.5.3.2.7: 5 minutes)."
    )
    data_timeout: float = Field(600.0, gt=0, description="Seconds to wait for each block of message data.")
    max_session_time: float = Field(
        3600.0, gt=0, description="Longest session in seconds, however busy; then 421 4.4.2 and close (slowloris)."
    )
    min_free_space: int = Field(
        64 * MiB, ge=0, description="Free bytes the data volume must keep; below it MAIL gets 452 4.3.1."
    )
    verify_recipients: bool = Field(
        False,
        description="Backup-MX mode: also ask the primary at RCPT time (while in service); refuse what it refuses.",
    )
    verify_timeout: float = Field(10.0, gt=0, description="Seconds a recipient verification may take.")
    verify_ttl: float = Field(600.0, ge=0, description="Seconds an accepted verification is cached.")
    verify_negative_ttl: float = Field(3600.0, ge=0, description="Seconds a refusal by the primary is cached.")
    hopcount_limit: int = Field(
        50,
        ge=1,
        description="Received: headers (ours included) at which a message is a loop: 554 5.4.0 (RFC 5321 §6.3).",
    )
    greet_wait: float = Field(
        0.0,
        ge=0,
        le=30,
        description="Seconds to hold the 220 banner back; a client talking first gets 521 5.5.1 (postscreen pregreet).",
    )
    reject_invalid_helo_hostname: bool = Field(
        False, description="Refuse a HELO/EHLO name that is no host name or address literal (501 5.5.2), as Postfix's."
    )
    client_connection_rate_limit: int = Field(
        0, ge=0, description="Connections per client per rate_time_unit; more get 421 4.7.0. 0: no limit (Postfix)."
    )
    client_message_rate_limit: int = Field(
        0, ge=0, description="MAIL commands per client per rate_time_unit; more get 450 4.7.1. 0: no limit."
    )
    client_recipient_rate_limit: int = Field(
        0,
        ge=0,
        description="RCPT commands (accepted or not) per client per rate_time_unit; more get 450 4.7.1. 0: none.",
    )
    rate_time_unit: float = Field(60.0, gt=0, description="Seconds over which the client rates are counted (anvil).")
    rate_limit_exceptions: list[str] = Field(
        [], description="Client networks the rate limits do not apply to (CIDR; a bare address is one host)."
    )

    @field_validator("rate_limit_exceptions")
    @classmethod
    def _exceptions(cls, value: list[str]) -> list[str]:
        return _networks(value)


def disk_reserve(settings: SMTPSettings) -> int:
    """Free bytes to keep for accepting mail: Postfix's rule, queue_minfree and 1.5 x the largest message."""
    return max(settings.min_free_space, int(1.5 * settings.max_message_size))


class DeviceEntry(Section):
    """A phone or pager of a user defined inline (`[[directory.users.devices]]`)."""

    id: str = Field(description="The device's id (as the device-management gateway knows it).")
    platform: Literal["ios", "android", "blackberry", "windows", "pager", "other"] = Field(
        "other", description="The device's platform."
    )
    phone: str = Field("", description="Phone number (E.164) where known.")
    sms_gateway: str = Field("", description="Carrier email-to-SMS address, e.g. 15551234567@txt.example.")
    push_url: str = Field("", description="An Apprise URL reaching this device (ntfy, Gotify, ...).")


class UserEntry(Section):
    address: str = Field(description="The user's primary address.")
    aliases: list[str] = Field([], description="Other addresses delivered to the same user.")
    # Notification profile (see docs/notifications.md).
    display_name: str = Field("", description="The user's name, for notifications.")
    alternates: list[str] = Field([], description="Other email addresses (personal, pager) for notifications.")
    notify_urls: list[str] = Field([], description="Apprise URLs (SMS providers, push, chat, webhooks).")
    devices: list[DeviceEntry] = Field([], description="Phones and pagers (`[[directory.users.devices]]`).")
    notify: list[Literal["failover", "failback", "sync-finished", "setup"]] | None = Field(
        None, description="Notices the user wants; unset: all of them."
    )
    forward: Literal["off", "full", "summary"] = Field(
        "off", description="During an outage, forward each message: whole to alternates, or a summary everywhere."
    )
    summary_length: int = Field(160, ge=20, le=2000, description="Characters of an SMS-sized summary.")
    quiet_hours: tuple[int, int] | None = Field(
        None, description="[start hour, end hour] (standby local time) without SMS/push notifications."
    )

    @field_validator("quiet_hours")
    @classmethod
    def _hours(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not all(0 <= h <= 23 for h in value):
            raise ValueError("hours must be 0..23")
        return value

    @field_validator("address", "aliases", "alternates")
    @classmethod
    def _addresses(cls, value: str | list[str]) -> str | list[str]:
        for a in [value] if isinstance(value, str) else value:
            local, at, domain = a.rpartition("@")
            if not at or not local or not domain or any(c.isspace() for c in a):
                raise ValueError(f"{a!r} is not an address (local@domain)")
        return value


class LDAPSettings(Section):
    """Users imported from the primary's LDAP / Active Directory (`mailstandby directory import`)."""

    url: str = Field("", description="`ldap://HOST[:PORT]` or `ldaps://HOST[:PORT]`; empty: no LDAP import.")
    start_tls: bool = Field(False, description="Upgrade an `ldap://` connection with StartTLS before binding.")
    tls_verify: bool = Field(True, description="Verify the server's certificate (ldaps and StartTLS).")
    ca_file: Path | None = Field(None, description="PEM CA bundle for the server's certificate; unset: system CAs.")
    bind_dn: str = Field("", description="DN (or AD `user@domain`) to bind as; empty: anonymous bind.")
    password_file: Path | None = Field(None, description="File holding the bind password (never in this file).")
    password_env: str = Field("", description="Environment variable holding the bind password (if no file).")
    base_dn: str = Field("", description="Subtree searched for users, e.g. `ou=people,dc=corp,dc=example`.")
    filter: str = Field("", description="LDAP filter selecting users; empty: the preset's filter.")
    preset: Literal["openldap", "active-directory"] = Field(
        "openldap", description="Attribute mapping preset (docs/directory.md); `attributes` overrides single entries."
    )
    attributes: dict[str, str] = Field(
        {},
        description='Per-field attribute overrides, e.g. `{ address = "mail", mobile = "telephoneNumber" }`;'
        " list fields take comma-separated names.",
    )
    page_size: int = Field(500, ge=1, le=10000, description="Simple paged results (RFC 2696) page size.")
    timeout: float = Field(30.0, gt=0, description="Seconds to connect and for each response.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if value and (not sep or scheme.lower() not in ("ldap", "ldaps") or not rest.strip("/")):
            raise ValueError("must be ldap://HOST[:PORT] or ldaps://HOST[:PORT]")
        return value

    @model_validator(mode="after")
    def _password_source(self) -> LDAPSettings:
        if self.url and self.bind_dn and self.password_file is None and not self.password_env:
            raise ValueError("bind_dn needs password_file or password_env (the password never goes in this file)")
        if self.url and not self.base_dn:
            raise ValueError("base_dn is required with url")
        return self


class DeviceImportSettings(Section):
    """Device-gateway exports (CSV or JSON) joined to users by address (`mailstandby directory import`)."""

    files: list[Path] = Field([], description="CSV (`.csv`) or JSON (`.json`) exports; columns in docs/directory.md.")
    columns: dict[str, str] = Field(
        {}, description='Our column name to the export\'s, e.g. `{ user = "UPN", device_id = "DeviceID" }`.'
    )
    unknown_users: Literal["skip", "error"] = Field(
        "skip", description="Rows naming no known user: `skip` (listed in the import report) or `error`."
    )


class DirectoryMergeSettings(Section):
    """Which source wins per field when LDAP and the device gateway both have one (empty values never win)."""

    display_name: Literal["ldap", "devices"] = Field("ldap", description="Source of the display name.")
    alternates: Literal["ldap", "devices", "union"] = Field("union", description="Alternate addresses.")
    notify_urls: Literal["ldap", "devices", "union"] = Field("union", description="Apprise notification URLs.")
    devices: Literal["ldap", "devices", "union"] = Field(
        "devices", description="Devices (LDAP knows only a `mobile` number)."
    )
    keys: Literal["ldap", "devices", "union"] = Field("union", description="S/MIME certificates and PGP keys.")


class DirectorySettings(Section):
    domains: list[str] = Field([], description="Domains served: recipients there are checked against the directory.")
    users: list[UserEntry] = Field([], description="Users defined inline (`[[directory.users]]`).")
    csv: Path | None = Field(
        None, description="CSV file of users: columns `address` and `aliases` (aliases separated by spaces or `;`)."
    )
    refresh_interval: float = Field(
        0.0, ge=0, description="Seconds between imports from LDAP and device exports by the server; 0: only by hand."
    )
    reload_interval: float = Field(
        5.0, gt=0, description="Seconds between checks for a directory imported by `mailstandby directory import`."
    )
    max_disable_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Refuse an import that would disable more than this fraction of the imported users.",
    )
    ldap: LDAPSettings = Field(default_factory=LDAPSettings)
    devices: DeviceImportSettings = Field(default_factory=DeviceImportSettings)
    merge: DirectoryMergeSettings = Field(default_factory=DirectoryMergeSettings)


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


class SubmissionSettings(SMTPSettings):
    """Mail from users' phones (RFC 6409): AUTH required, sender must be the user's own address."""

    listen: list[Listen] = Field([], description="Submission listeners with STARTTLS (usually port 587); empty: off.")
    listen_tls: list[Listen] = Field([], description="Implicit-TLS submission listeners (usually port 465).")
    allow_plaintext_auth_on_loopback: bool = Field(
        False, description="Allow AUTH without TLS from 127.0.0.0/8 and ::1 (never from elsewhere)."
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


# values never repeated in an error message: a libpq URL may carry a password
_UNECHOED = {("store", "url")}


class StoreSettings(Section):
    url: str = Field(
        "",
        description="Empty: the embedded SQLite database under node.data_dir; postgresql://…: a PostgreSQL server"
        " (libpq URL, multi-host with target_session_attrs=read-write), see docs/postgresql.md.",
    )
    segment_size: int = Field(64 * MiB, ge=1 * MiB, description="Spool segment size before a new one is started.")
    connect_timeout: int = Field(
        10, ge=2, le=300, description="PostgreSQL: seconds each host of `url` may take to accept a connection."
    )

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if not value:
            return value
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in ("postgresql", "postgres") or not rest or any(c.isspace() for c in value):
            raise ValueError("must be empty (SQLite) or a postgresql:// URL")
        return value


class IMAPSettings(Section):
    listen: list[Listen] = Field([], description="Plain IMAP listeners with STARTTLS (usually port 143); empty: off.")
    listen_tls: list[Listen] = Field([], description="Implicit-TLS IMAP listeners (usually port 993); empty: off.")
    allow_plaintext_auth_on_loopback: bool = Field(
        False, description="Allow LOGIN/AUTHENTICATE without TLS from 127.0.0.0/8 and ::1 (never from elsewhere)."
    )
    max_line_length: int = Field(64 * KiB, ge=8 * KiB, description="Longest command line (RFC 7162 §4 asks for 8192).")
    max_literal_size: int = Field(
        36 * MiB, ge=64 * KiB, description="Largest literal (APPEND); larger gets NO [TOOBIG] (RFC 7889 APPENDLIMIT)."
    )
    max_connections_per_user: int = Field(20, ge=1, description="Concurrent sessions per user and address.")
    idle_timeout: float = Field(1800.0, ge=60, description="Seconds an authenticated session may stay silent.")
    login_timeout: float = Field(
        60.0, gt=0, description="Seconds from connecting a client has to log in, however active; then BYE."
    )
    max_connections: int = Field(
        2000, ge=1, description="Concurrent connections; more get `* BYE [UNAVAILABLE]` at connect."
    )
    max_connections_per_client: int = Field(
        100, ge=1, description="Concurrent connections per client address (IPv6: per /64), logged in or not."
    )
    max_bad_commands: int = Field(
        20, ge=1, description="Invalid commands in a row after login (any other reply resets the count); then BYE."
    )
    max_bad_commands_before_login: int = Field(
        3, ge=1, description="Invalid commands in all before login; the last is answered with BYE only."
    )
    max_session_time: float = Field(
        86400.0, gt=0, description="Longest session in seconds (IDLE included); then BYE: the phone reconnects."
    )


class POP3Settings(Section):
    listen: list[Listen] = Field([], description="Plain POP3 listeners with STLS (usually port 110); empty: off.")
    listen_tls: list[Listen] = Field([], description="Implicit-TLS POP3 listeners (usually port 995); empty: off.")
    allow_plaintext_auth_on_loopback: bool = Field(
        False, description="Allow USER/PASS and AUTH without TLS from 127.0.0.0/8 and ::1 (never from elsewhere)."
    )
    timeout: float = Field(
        600.0, ge=10, description="Seconds without a command before the session is closed (RFC 1939: 10 minutes)."
    )
    max_bad_commands: int = Field(10, ge=1, description="Invalid commands per session before -ERR and close.")
    max_session_time: float = Field(3600.0, gt=0, description="Longest session in seconds; then -ERR and close.")
    max_connections_per_user: int = Field(
        10, ge=1, description="Logged-in sessions per user and client address; more get -ERR [IN-USE]."
    )
    login_timeout: float = Field(
        60.0, gt=0, description="Seconds from connecting a client has to log in, however active; then -ERR."
    )
    max_connections: int = Field(500, ge=1, description="Concurrent connections; more get -ERR [SYS/TEMP] at connect.")
    max_connections_per_client: int = Field(
        50, ge=1, description="Concurrent connections per client address (IPv6: per /64), logged in or not."
    )


class JournalSettings(Section):
    enabled: bool = Field(
        True, description="File a copy of every message relayed to the primary in the user's standby INBOX."
    )
    retention_days: float = Field(30.0, gt=0, description="Days a journal copy is kept before it is pruned.")
    prune_interval: float = Field(3600.0, gt=0, description="Seconds between prunings of old journal copies.")


class AuthSettings(Section):
    """Standby logins (IMAP, POP3, submission) and the passwords users choose (docs/security.md)."""

    failure_delay: float = Field(
        2.0, ge=0, description="Seconds before answering a failed login (Dovecot auth_failure_delay)."
    )
    max_failures: int = Field(
        10,
        ge=1,
        description="Login attempts per client address (IPv6: per /64) in `failure_window` before it is throttled; "
        "counted when each starts, forgiven when it succeeds.",
    )
    max_account_failures: int = Field(
        20,
        ge=1,
        description="Failed logins per account from all addresses in `failure_window` before only networks that "
        "logged in to it in the last day may still try.",
    )
    failure_window: float = Field(300.0, gt=0, description="Seconds over which failed logins are counted.")
    max_verifications: int = Field(
        4,
        ge=1,
        le=256,
        description="argon2 password checks run at once, admin logins and the setup page included (each takes "
        "a core and 64 MiB); more wait their turn.",
    )
    min_password_length: int = Field(
        12, ge=8, le=128, description="Fewest characters in a new password (users and administrators)."
    )


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


class AdminSettings(Section):
    """The administrators' HTTP API (status, failover, failback, audit, metrics)."""

    listen: list[Listen] = Field(["127.0.0.1:8440"], description="Admin API listeners (HTTPS); empty: off.")
    tls: bool = Field(True, description="Serve HTTPS with the [tls] certificate; `false` is refused off loopback.")
    metrics_public: bool = Field(
        False, description="Serve /metrics without credentials (for a Prometheus scraper on a trusted network)."
    )
    max_failures: int = Field(
        5, ge=1, description="Admin login attempts per client address (IPv6: per /64) in `failure_window` before 429."
    )
    max_account_failures: int = Field(
        10,
        ge=1,
        description="Failed logins per administrator from all addresses in `failure_window` before 429 "
        "(except from networks that administrator logged in from in the last day).",
    )
    failure_window: float = Field(300.0, gt=0, description="Seconds over which failed admin logins are counted.")
    trusted_proxies: list[str] = Field(
        [], description="Reverse proxies (addresses or networks) whose X-Forwarded-For is believed; empty: nobody's."
    )
    max_connections: int = Field(200, ge=1, description="Concurrent HTTP connections; more get 503 at connect.")
    max_connections_per_client: int = Field(
        20, ge=1, description="Concurrent HTTP connections per client address (IPv6: per /64); trusted proxies: no cap."
    )
    header_timeout: float = Field(
        10.0, gt=0, description="Seconds a client has to send a request's headers (from connecting or its first byte)."
    )
    body_timeout: float = Field(30.0, gt=0, description="Seconds a client has to send a request's body after them.")

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        return _networks(value)

    @model_validator(mode="after")
    def _plain_http_only_on_loopback(self) -> AdminSettings:
        if not self.tls:
            for value in self.listen:
                host = split_listen(value)[0]
                if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
                    raise ValueError(f"tls = false is allowed only on loopback listeners, not {value}")
        return self


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


class AntispamSettings(Section):
    """Content check of inbound mail by rspamd (its HTTP protocol) before mailstandby answers the final dot."""

    rspamd_url: str = Field("", description="rspamd's normal worker, e.g. http://127.0.0.1:11333; empty: no check.")
    password_file: Path | None = Field(None, description="File holding rspamd's worker password, if it has one.")
    timeout: float = Field(20.0, gt=0, description="Seconds rspamd may take per message.")
    on_error: Literal["tempfail", "accept"] = Field(
        "tempfail",
        description="When rspamd cannot be asked: `tempfail` (451 4.7.1, the sender retries) or `accept` unchecked.",
    )
    max_size: int = Field(
        20 * MiB, ge=0, description="Larger messages are not sent to rspamd (accepted with a header saying so)."
    )


class MilterSettings(Section):
    """The milter event sink for the primary's own MTA (Postfix `smtpd_milters`, Sendmail `INPUT_MAIL_FILTER`)."""

    listen: list[Listen] = Field([], description="Milter listeners (HOST:PORT, Postfix `inet:HOST:PORT`); empty: off.")
    mode: Literal["journal", "redirect", "both"] = Field(
        "journal",
        description="`journal`: copy every message for our users into their standby INBOX; `redirect`: during an "
        "outage take over mail for failed-over users; `both`.",
    )
    timeout: float = Field(
        3600.0,
        gt=0,
        description="Seconds to wait for the MTA's next packet (it stays connected for a whole SMTP session).",
    )
    max_message_size: int = Field(
        0, ge=0, description="Largest message copied or taken over; larger passes through untouched. 0: smtp's limit."
    )
    max_connections: int = Field(
        200, ge=1, description="Concurrent MTA connections (one per SMTP session); more are closed at once."
    )
    allowed_peers: list[str] = Field(
        ["127.0.0.0/8", "::1"],
        description="Addresses or networks of the MTAs allowed to connect; anyone else is closed at once.",
    )
    hands_off_macros: list[str] = Field(
        ["{quarantine}"],
        description="Macros that, when the MTA sends one with a value, mean an earlier filter quarantined the "
        "message: it is neither copied nor taken over.",
    )

    @field_validator("allowed_peers")
    @classmethod
    def _peers(cls, value: list[str]) -> list[str]:
        return _networks(value)

    @property
    def journal(self) -> bool:
        return self.mode in ("journal", "both")

    @property
    def redirect(self) -> bool:
        return self.mode in ("redirect", "both")


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


class Config(Section):
    node: NodeSettings = Field(default_factory=NodeSettings)
    tls: TLSSettings = Field(default_factory=TLSSettings)
    smtp: SMTPSettings = Field(default_factory=SMTPSettings)
    directory: DirectorySettings = Field(default_factory=DirectorySettings)
    primary: PrimarySettings = Field(default_factory=PrimarySettings)
    outbound: OutboundSettings = Field(default_factory=OutboundSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    imap: IMAPSettings = Field(default_factory=IMAPSettings)
    pop3: POP3Settings = Field(default_factory=POP3Settings)
    submission: SubmissionSettings = Field(default_factory=SubmissionSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    journal: JournalSettings = Field(default_factory=JournalSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    failover: FailoverSettings = Field(default_factory=FailoverSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    dns: DNSSettings = Field(default_factory=DNSSettings)
    antispam: AntispamSettings = Field(default_factory=AntispamSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    milter: MilterSettings = Field(default_factory=MilterSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)

    _source: Path | None = PrivateAttr(None)

    @property
    def source(self) -> Path | None:
        """The file this configuration was read from."""
        return self._source


class ConfigError(Exception):
    """Every problem found in one config file, each `file: key: problem`."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # TOML 1.0 bare keys


def _key(loc: tuple[int | str, ...]) -> str:
    """`section.key[2].field`; a key that is not a bare TOML key is quoted as TOML quotes it."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        name = part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
        out += f".{name}" if out else name
    return out


def _scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool) and len(repr(value)) < 80


def load(path: Path) -> Config:
    """Read and validate `path`; raise ConfigError naming every bad key."""
    path = Path(path)
    try:
        # bytes, not read_text(): TOML's newlines are LF and CRLF, and a lone CR is an error, not a newline
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise ConfigError(path, [f"cannot read: {e.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(path, ["not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, [f"TOML syntax: {e}"]) from None
    except RecursionError:  # tomllib recurses into nested arrays and inline tables
        raise ConfigError(path, ["TOML syntax: arrays or inline tables nested too deeply"]) from None
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            shown = err["type"] != "extra_forbidden" and _scalar(err["input"]) and repr(err["input"]) not in msg
            shown = shown and tuple(err["loc"][:2]) not in _UNECHOED
            value = f" (got {err['input']!r})" if shown else ""
            problems.append(f"{_key(err['loc']) or '(top)'}: {msg.removeprefix('Value error, ')}{value}")
        raise ConfigError(path, problems) from None
    return resolve_paths(cfg, path)


def resolve_paths(cfg: Config, path: Path) -> Config:
    """Make relative paths relative to the config file's directory."""
    base = path.resolve().parent

    def rel(p: Path | None) -> Path | None:
        return None if p is None or p.is_absolute() else base / p

    node = cfg.node.model_copy(update={"data_dir": rel(cfg.node.data_dir) or cfg.node.data_dir})
    tls = cfg.tls.model_copy(update={"cert": rel(cfg.tls.cert) or cfg.tls.cert, "key": rel(cfg.tls.key) or cfg.tls.key})
    directory = _resolve_directory(cfg.directory, rel)
    outbound = cfg.outbound.model_copy(
        update={"password_file": rel(cfg.outbound.password_file) or cfg.outbound.password_file}
    )
    monitor = cfg.monitor.model_copy(
        update={"probe_password_file": rel(cfg.monitor.probe_password_file) or cfg.monitor.probe_password_file}
    )
    dns = cfg.dns.model_copy(update={"tsig_secret_file": rel(cfg.dns.tsig_secret_file) or cfg.dns.tsig_secret_file})
    notify = cfg.notify.model_copy(update={"templates": rel(cfg.notify.templates) or cfg.notify.templates})
    resolved = cfg.model_copy(
        update={
            "node": node,
            "tls": tls,
            "directory": directory,
            "outbound": outbound,
            "monitor": monitor,
            "dns": dns,
            "notify": notify,
            "sync": cfg.sync.model_copy(
                update={
                    "password_file": rel(cfg.sync.password_file) or cfg.sync.password_file,
                    "tls_ca_file": rel(cfg.sync.tls_ca_file) or cfg.sync.tls_ca_file,
                }
            ),
            "antispam": cfg.antispam.model_copy(
                update={"password_file": rel(cfg.antispam.password_file) or cfg.antispam.password_file}
            ),
        }
    )
    resolved._source = path
    return resolved


def _resolve_directory(d: DirectorySettings, rel: Callable[[Path | None], Path | None]) -> DirectorySettings:
    ldap = d.ldap.model_copy(
        update={
            "password_file": rel(d.ldap.password_file) or d.ldap.password_file,
            "ca_file": rel(d.ldap.ca_file) or d.ldap.ca_file,
        }
    )
    devices = d.devices.model_copy(update={"files": [rel(f) or f for f in d.devices.files]})
    return d.model_copy(update={"csv": rel(d.csv) or d.csv, "ldap": ldap, "devices": devices})
