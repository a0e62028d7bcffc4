"""The settings of what listens: the certificate (`[tls]`), SMTP and submission, IMAP, POP3, the
logins they share (`[auth]`), the content check of inbound mail (`[antispam]`), the admin API and
the milter."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mailstandby.config.base import KiB, Listen, MiB, Section, _networks, split_listen


def _min_data_rate() -> Any:
    return Field(
        256,
        ge=0,
        description="Bytes per second a request (command line, message data, literal) must keep arriving at once "
        "begun, over each `data_rate_window`; slower is closed as a timeout (slowloris). 0: no minimum.",
    )


def _data_rate_window() -> Any:
    return Field(30.0, gt=0, description="Seconds over which `min_data_rate` is measured.")


class TLSSettings(Section):
    """The certificate every listener (SMTP, IMAP, POP3, admin HTTPS) presents."""

    cert: Path | None = Field(
        None, description="PEM certificate chain; with `key` unset a self-signed pair is generated under the data dir."
    )
    key: Path | None = Field(None, description="PEM private key for `cert`.")
    reload_interval: float = Field(
        60.0,
        gt=0,
        description="Seconds between checks of `cert` and `key` for changes; a changed pair is loaded for new "
        "connections (as on SIGHUP), a broken one refused and logged.",
    )


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
    min_data_rate: int = _min_data_rate()
    data_rate_window: float = _data_rate_window()
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


class SubmissionSettings(SMTPSettings):
    """Mail from users' phones (RFC 6409): AUTH required, sender must be the user's own address."""

    listen: list[Listen] = Field([], description="Submission listeners with STARTTLS (usually port 587); empty: off.")
    listen_tls: list[Listen] = Field([], description="Implicit-TLS submission listeners (usually port 465).")
    allow_plaintext_auth_on_loopback: bool = Field(
        False, description="Allow AUTH without TLS from 127.0.0.0/8 and ::1 (never from elsewhere)."
    )


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
    min_data_rate: int = _min_data_rate()
    data_rate_window: float = _data_rate_window()


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
    min_data_rate: int = _min_data_rate()
    data_rate_window: float = _data_rate_window()
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
