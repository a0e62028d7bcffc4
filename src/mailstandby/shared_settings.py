"""The settings every node of one cluster must agree on, as digests the store compares at start.

Nodes sharing one PostgreSQL database serve the same users and take turns leading: if one
accepted a domain another refuses, or failed over on a different policy, the cluster would act
on a mix of both. So each node hands the store a digest per shared key (`shared_settings`);
the first node of a cluster records them and a node whose digests differ from the running
nodes' refuses to start, naming the keys (store/postgres_settings.py).

Shared: the directory's domains and inline users, the primary's address, and the failover, DNS,
notification and failback-sync policies. Node-local and left out: files (paths differ per node
and hold secrets), listeners, timeouts of a node's own connections, the node section.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, get_args

from pydantic import BaseModel

from mailstandby.config import Config

# section -> fields compared (None: every field that is not a file path)
SHARED: dict[str, tuple[str, ...] | None] = {
    "directory": ("domains", "users"),
    "primary": ("host", "port", "protocol"),
    "failover": None,
    "dns": None,
    "notify": None,
    "sync": None,
}


def _is_path(annotation: Any) -> bool:
    if annotation is Path:
        return True
    return isinstance(annotation, UnionType) and set(get_args(annotation)) <= {Path, NoneType}


def _fields(section: BaseModel, names: tuple[str, ...] | None) -> list[str]:
    if names is not None:
        return list(names)
    fields = type(section).model_fields
    return [name for name, info in fields.items() if not _is_path(info.annotation)]


def digest(value: Any) -> int:
    """A signed 64-bit digest of a setting's value (it fits the store's BIGINT `meta.value`)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def shared_settings(config: Config) -> dict[str, int]:
    """`section.key` -> digest of its value, for every key the nodes of a cluster must agree on."""
    out: dict[str, int] = {}
    for name, names in SHARED.items():
        section: BaseModel = getattr(config, name)
        values = section.model_dump(mode="json")
        for field in _fields(section, names):
            out[f"{name}.{field}"] = digest(values[field])
    return out
