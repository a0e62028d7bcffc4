"""Private files: what lives under the data directory is the service's alone.

The database (password hashes, mail, tokens), its -wal/-shm files, the spool
segments, quarantined bodies, keys and certificates are created 0600 and
directories 0700, whatever the umask: `create_private` / `write_private`
pass the mode to open(2) (SQLite gives -wal and -shm the database file's
mode), and the server runs with umask 077. A data directory left readable by
an older version or by hand is tightened at start-up (`tighten`), and the
log says which files were changed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
PRIVATE_UMASK = 0o077


def create_private(path: Path) -> None:
    """Create `path` empty and 0600 unless it exists (an existing file is not even opened).

    Never open an existing database here: closing any descriptor of a file drops
    every POSIX lock this process holds on it, SQLite's included (fcntl(2)), and
    another process could then checkpoint and delete a WAL still in use.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
    except FileExistsError:
        return
    os.close(fd)


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` (created 0600, or truncated keeping a private mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def tighten(root: Path) -> list[Path]:
    """Take group and other permissions away from `root` and everything under it; return what changed.

    Symbolic links are not followed (what they point to is not ours to change).
    """
    changed = []
    if not root.exists():
        return changed
    for path in [root, *root.rglob("*")]:
        try:
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
                continue
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077)
        except FileNotFoundError:
            continue  # removed meanwhile (a spent segment)
        changed.append(path)
    return changed
