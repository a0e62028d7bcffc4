"""The store's two backends for the suites that run on both: `kind` is "sqlite" or "postgres".

`store_settings(kind, cluster)` is what `[store]` would say (PostgreSQL: a fresh database on the
session's private cluster); `build_store` builds what app.py builds for those settings.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.postgres import PostgresCluster

from mailstandby.config import StoreSettings
from mailstandby.store.postgres import PostgresStore
from mailstandby.store.sqlite import SQLiteStore

BACKENDS = ("sqlite", "postgres")

Store = SQLiteStore | PostgresStore


def store_settings(kind: str, cluster: PostgresCluster | None, **settings: object) -> StoreSettings:
    if kind == "postgres":
        assert cluster is not None
        return StoreSettings(url=cluster.fresh_database(), **settings)  # type: ignore[arg-type]
    return StoreSettings(**settings)  # type: ignore[arg-type]


def build_store(data_dir: Path, settings: StoreSettings) -> Store:
    return PostgresStore(data_dir, settings) if settings.url else SQLiteStore(data_dir, settings)
