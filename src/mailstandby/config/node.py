"""This node and the store it keeps its state in: `[node]`, `[store]`."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from mailstandby.config.base import MiB, Section


def default_node_id(data_dir: Path) -> str:
    """This machine's host name and a hash of the data directory: unique among nodes sharing a database
    unless two of them run on one machine with one data directory (which they cannot)."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


class NodeSettings(Section):
    hostname: str = Field("localhost", description="Name used in the SMTP banner, EHLO and Received headers.")
    id: str = Field(
        "",
        max_length=100,
        description="This node's name among nodes sharing one PostgreSQL store (queue claims, leadership); "
        "empty: the machine's host name and a hash of data_dir.",
    )
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

    @property
    def node_id(self) -> str:
        """`id`, or the default built from the host name and the data directory."""
        return self.id or default_node_id(self.data_dir)


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
