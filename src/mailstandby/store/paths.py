"""Where the store keeps its files under the node's data directory: the one place naming the database.

Every module, test and benchmark that needs the SQLite database's path asks
`database_path(data_dir)`; nothing else spells the file name.
"""

from __future__ import annotations

from pathlib import Path

DATABASE_FILE = "mailstandby.db"


def database_path(data_dir: Path) -> Path:
    """The SQLite database (WAL: `-wal` and `-shm` files sit beside it) of the store under `data_dir`."""
    return data_dir / DATABASE_FILE
