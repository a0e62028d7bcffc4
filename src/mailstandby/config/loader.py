"""The whole configuration (`Config`) and `load()`, which reads one TOML file and validates it.

`load()` reports every problem in one run, each as `file: section.key: problem`, and
nothing listens before it succeeded. Relative paths are made relative to the file.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path

from pydantic import Field, PrivateAttr, ValidationError

from mailstandby.config.base import Section
from mailstandby.config.directory import DirectorySettings
from mailstandby.config.failover import ClusterSettings, DNSSettings, FailoverSettings, MonitorSettings
from mailstandby.config.listeners import (
    AdminSettings,
    AntispamSettings,
    AuthSettings,
    IMAPSettings,
    MilterSettings,
    POP3Settings,
    SMTPSettings,
    SubmissionSettings,
    TLSSettings,
)
from mailstandby.config.node import NodeSettings, StoreSettings
from mailstandby.config.notify import NotifySettings
from mailstandby.config.queue import JournalSettings, OutboundSettings, PrimarySettings, QueueSettings
from mailstandby.config.sync import SyncSettings

# values never repeated in an error message: a libpq URL may carry a password
_UNECHOED = {("store", "url")}


class Config(Section):
    node: NodeSettings = Field(default_factory=NodeSettings)
    tls: TLSSettings = Field(default_factory=TLSSettings)
    smtp: SMTPSettings = Field(default_factory=SMTPSettings)
    directory: DirectorySettings = Field(default_factory=DirectorySettings)
    primary: PrimarySettings = Field(default_factory=PrimarySettings)
    outbound: OutboundSettings = Field(default_factory=OutboundSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
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
