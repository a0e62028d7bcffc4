"""Shared test support. Importing it makes every mailstandby process a test starts (`python -m
mailstandby ...`) run this checkout's code: its `src` goes first on PYTHONPATH, absolute, whatever
the current directory of the child and whichever checkout the virtualenv's editable install names."""

from __future__ import annotations

import os
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")
_paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and os.path.isabs(p) and p != SRC]
os.environ["PYTHONPATH"] = os.pathsep.join([SRC, *_paths])
