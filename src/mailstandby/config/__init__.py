"""The TOML configuration, validated into frozen pydantic models.

Each component takes its own section (`SMTPSettings`, `QueueSettings`, ...),
never the whole `Config`. `load()` reports every problem in one run, each as
`file: section.key: problem`, and nothing listens before it succeeded.
Secrets come from files or the environment, never from the log.

The sections live with their owners: `base` (the `Section` base, sizes, listen and
network validators), `node` (node, store), `listeners` (TLS, SMTP, submission, IMAP,
POP3, auth, antispam, admin, milter), `directory`, `queue` (primary, outbound, queue,
journal), `failover` (cluster, monitor, failover, DNS), `notify`, `sync`, and `loader`
(`Config`, `load()` and its error reports). Import them from here.
"""

from mailstandby.config.base import KiB, Listen, MiB, Section, split_listen
from mailstandby.config.directory import (
    DeviceEntry,
    DeviceImportSettings,
    DirectoryMergeSettings,
    DirectorySettings,
    LDAPSettings,
    UserEntry,
)
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
    disk_reserve,
)
from mailstandby.config.loader import Config, ConfigError, load, resolve_paths
from mailstandby.config.node import NodeSettings, StoreSettings, default_node_id
from mailstandby.config.notify import NotifySettings
from mailstandby.config.queue import JournalSettings, OutboundSettings, PrimarySettings, QueueSettings
from mailstandby.config.sync import SyncSettings

__all__ = [
    "AdminSettings",
    "AntispamSettings",
    "AuthSettings",
    "ClusterSettings",
    "Config",
    "ConfigError",
    "DNSSettings",
    "DeviceEntry",
    "DeviceImportSettings",
    "DirectoryMergeSettings",
    "DirectorySettings",
    "FailoverSettings",
    "IMAPSettings",
    "JournalSettings",
    "KiB",
    "LDAPSettings",
    "Listen",
    "MiB",
    "MilterSettings",
    "MonitorSettings",
    "NodeSettings",
    "NotifySettings",
    "OutboundSettings",
    "POP3Settings",
    "PrimarySettings",
    "QueueSettings",
    "SMTPSettings",
    "Section",
    "StoreSettings",
    "SubmissionSettings",
    "SyncSettings",
    "TLSSettings",
    "UserEntry",
    "default_node_id",
    "disk_reserve",
    "load",
    "resolve_paths",
    "split_listen",
]
