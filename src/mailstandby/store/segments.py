"""Append-only spool segments holding message bodies.

Many bodies share one file so that one fsync covers a whole batch of
concurrently accepted messages (group commit). Each record is self-delimiting
(header with id, length and CRC-32; an END trailer) so a segment can be
audited or salvaged by hand; the SQLite index is what makes a record live.
A record whose index row was never committed is garbage, never mail.
"""

from __future__ import annotations

import contextlib
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

TRAILER = b"\r\nEND\r\n"
_NAME = re.compile(r"^seg-(\d{8})\.dat$")


@dataclass(frozen=True, slots=True)
class Location:
    segment: int
    offset: int  # of the body, after the record header
    size: int
    crc: int


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SegmentWriter:
    """Appends records to the current segment; used by the store's writer thread only."""

    def __init__(self, directory: Path, max_size: int) -> None:
        self.directory = directory
        self.max_size = max_size
        existing = [int(m.group(1)) for p in directory.iterdir() if (m := _NAME.match(p.name))]
        self.current = max(existing, default=0)
        self._fd = -1
        self._size = 0
        self._open(self.current if existing else self.current + 1)

    def path(self, segment: int) -> Path:
        return self.directory / f"seg-{segment:08d}.dat"

    def _open(self, segment: int) -> None:
        """Make `segment` current. Its directory entry is fsync'd before anything is written to it
        (RELIABILITY D1: a rename or a new name is durable only after the directory's fsync); when
        that fails the file is dropped and no segment is current, so the next append tries again
        and nothing is acknowledged in a file whose name may not survive a power loss."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1  # never keep a closed descriptor: its number may be reused by another file
        path = self.path(segment)
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fsync_dir(self.directory)  # also for a segment found at start-up: its entry may never have been
        except OSError:
            os.close(fd)
            if created:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        self._fd = fd
        self._size = os.fstat(fd).st_size
        self.current = segment

    def append(self, records: list[tuple[str, bytes]]) -> list[Location]:
        """Write records (id, body) without syncing; on error the segment is cut back."""
        if self._fd < 0 or self._size >= self.max_size:  # full, abandoned, or a new one failed to open
            self._open(self.current + 1)
        start = self._size
        parts: list[bytes] = []
        locations = []
        pos = start
        for message_id, body in records:
            crc = zlib.crc32(body)
            header = f"MSR1 {message_id} {len(body)} {crc:08x}\r\n".encode("ascii")
            parts += (header, body, TRAILER)
            locations.append(Location(self.current, pos + len(header), len(body), crc))
            pos += len(header) + len(body) + len(TRAILER)
        data = memoryview(b"".join(parts))
        try:
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError:
            self._cut_back(start)
            raise
        self._size = pos
        return locations

    def sync(self) -> None:
        """fsync the segment. After a failed fsync the file is abandoned: Linux may
        have dropped the dirty pages, so retrying and trusting it would lie."""
        try:
            os.fsync(self._fd)
        except OSError:
            self._open(self.current + 1)
            raise

    def _cut_back(self, size: int) -> None:
        try:
            os.ftruncate(self._fd, size)
            self._size = size
        except OSError:
            self._open(self.current + 1)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class SegmentReader:
    """Reads bodies back, checking length and CRC; safe from any thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def read(self, loc: Location) -> bytes:
        """The body at `loc`; raises ValueError when it is short or fails its CRC."""
        path = self.directory / f"seg-{loc.segment:08d}.dat"
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            body = os.pread(fd, loc.size, loc.offset)
        finally:
            os.close(fd)
        if len(body) != loc.size:
            raise ValueError(f"{path.name}@{loc.offset}: short read ({len(body)} of {loc.size})")
        if zlib.crc32(body) != loc.crc:
            raise ValueError(f"{path.name}@{loc.offset}: CRC mismatch")
        return body
