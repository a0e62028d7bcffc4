"""Fixtures for the fault-injection runs: the real primary (Postfix + Dovecot) and a seeded random source.

Every run is reproducible: its seed comes from FAULT_SEED (default 14) and is printed with its counts.
The number of kill -9 iterations per run is FAULT_ITERATIONS (default: a few, to keep CI short;
bench/crash.py runs the long series)."""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_REPO_ROOT = Path(__file__).resolve().parents[2]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from tests.support.primary import Primary  # noqa: E402

USERS = {"alice@corp.test": "pw-alice", "bob@corp.test": "pw-bob", "carol@corp.test": "pw-carol"}


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[Primary]:
    p = Primary(tmp_path / "primary", users=dict(USERS), aliases={"a.liddell@corp.test": "alice@corp.test"})
    try:
        p.start()
        yield p
    finally:
        p.close()


@pytest.fixture
def seed() -> int:
    return int(os.environ.get("FAULT_SEED", "14"))


@pytest.fixture
def rng(seed: int) -> random.Random:
    return random.Random(seed)


@pytest.fixture
def iterations() -> int:
    return int(os.environ.get("FAULT_ITERATIONS", "4"))
