"""Logging setup. Transcripts only at TRACE; secrets are never logged."""

from __future__ import annotations

import logging
import sys

TRACE = 5
logging.addLevelName(TRACE, "TRACE")


class _Context(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        sid = getattr(record, "sid", None)
        record.ctx = f" [{sid} {getattr(record, 'peer', '')}]" if sid else ""
        return True


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Context())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s%(ctx)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(TRACE if level == "TRACE" else getattr(logging, level))
