"""The TOML configuration, validated into frozen pydantic models.

Each component takes its own section (`SMTPSettings`, `QueueSettings`, ...),
never the whole `Config`. `load()` reports every problem in one run, each as
`file: section.key: problem`, and nothing listens before it succeeded.
Secrets come from files or the environment, never from the log.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

KiB = 1024
MiB = 1024 * KiB


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:2525 (port 0 picks a free port)")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if host != "localhost":
            raise ValueError("HOST must be an IP address or localhost") from None
    return value


Listen = Annotated[str, AfterValidator(_check_listen)]


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
    max_recipients: int = Field(100, ge=1, description="Recipients per transaction; more get 452 4.5.3.")
    max_line_length: int = Field(
        2048, ge=512, description="Longest command line in bytes (RFC 5321 requires 512); longer gets 500 5.5.6."
    )
    max_errors: int = Field(20, ge=1, description="Errors per session before 421 4.7.0 and disconnect.")
    max_junk_commands: int = Field(100, ge=1, description="NOOP/RSET/VRFY/HELP per session before 421 4.7.0.")
    max_connections: int = Field(500, ge=1, description="Concurrent sessions; more get 421 4.3.2 at connect.")
    command_timeout: float = Field(
        300.0, gt=0, description="Seconds to wait for a command (RFC 5321 §4.5.3.2.7: 5 minutes)."
    )
    data_timeout: float = Field(600.0, gt=0, description="Seconds to wait for each block of message data.")
    min_free_space: int = Field(
        64 * MiB, ge=0, description="Free bytes the data volume must keep; below it MAIL gets 452 4.3.1."
    )


def disk_reserve(settings: SMTPSettings) -> int:
    """Free bytes to keep for accepting mail: Postfix's rule, queue_minfree and 1.5 x the largest message."""
    return max(settings.min_free_space, int(1.5 * settings.max_message_size))


class UserEntry(Section):
    address: str = Field(description="The user's primary address.")
    aliases: list[str] = Field([], description="Other addresses delivered to the same user.")

    @field_validator("address", "aliases")
    @classmethod
    def _addresses(cls, value: str | list[str]) -> str | list[str]:
        for a in [value] if isinstance(value, str) else value:
            local, at, domain = a.rpartition("@")
            if not at or not local or not domain or any(c.isspace() for c in a):
                raise ValueError(f"{a!r} is not an address (local@domain)")
        return value


class DirectorySettings(Section):
    domains: list[str] = Field([], description="Domains served: recipients there are checked against the directory.")
    users: list[UserEntry] = Field([], description="Users defined inline (`[[directory.users]]`).")
    csv: Path | None = Field(
        None, description="CSV file of users: columns `address` and `aliases` (aliases separated by spaces or `;`)."
    )


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


class StoreSettings(Section):
    segment_size: int = Field(64 * MiB, ge=1 * MiB, description="Spool segment size before a new one is started.")


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
    login_timeout: float = Field(60.0, gt=0, description="Seconds a client has to log in.")
    max_bad_commands: int = Field(10, ge=1, description="Invalid commands per session before BYE.")


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
    max_connections_per_user: int = Field(
        10, ge=1, description="Logged-in sessions per user and client address; more get -ERR [IN-USE]."
    )


class JournalSettings(Section):
    enabled: bool = Field(
        True, description="File a copy of every message relayed to the primary in the user's standby INBOX."
    )
    retention_days: float = Field(30.0, gt=0, description="Days a journal copy is kept before it is pruned.")
    prune_interval: float = Field(3600.0, gt=0, description="Seconds between prunings of old journal copies.")


class AuthSettings(Section):
    failure_delay: float = Field(
        2.0, ge=0, description="Seconds before answering a failed login (Dovecot auth_failure_delay)."
    )
    max_failures: int = Field(
        10, ge=1, description="Failed logins per client address in `failure_window` before it is throttled."
    )
    failure_window: float = Field(300.0, gt=0, description="Seconds over which failed logins are counted.")


class SyncSettings(Section):
    """Failback sync: standby-only mail (and the phones' flags) into the primary mailboxes (docs/sync.md)."""

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
        True, description="Without `imap_host`, re-inject standby-only INBOX mail through `[primary]` over SMTP."
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


def _key(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool) and len(repr(value)) < 80


def load(path: Path) -> Config:
    """Read and validate `path`; raise ConfigError naming every bad key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(path, [f"cannot read: {e.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(path, ["not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, [f"TOML syntax: {e}"]) from None
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            shown = err["type"] != "extra_forbidden" and _scalar(err["input"]) and repr(err["input"]) not in msg
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
    directory = cfg.directory.model_copy(update={"csv": rel(cfg.directory.csv) or cfg.directory.csv})
    outbound = cfg.outbound.model_copy(
        update={"password_file": rel(cfg.outbound.password_file) or cfg.outbound.password_file}
    )
    sync = cfg.sync.model_copy(
        update={
            "password_file": rel(cfg.sync.password_file) or cfg.sync.password_file,
            "tls_ca_file": rel(cfg.sync.tls_ca_file) or cfg.sync.tls_ca_file,
        }
    )
    resolved = cfg.model_copy(
        update={"node": node, "tls": tls, "directory": directory, "outbound": outbound, "sync": sync}
    )
    resolved._source = path
    return resolved
