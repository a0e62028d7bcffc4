"""The short CI run of every fuzz target (`fuzz/`, docs/fuzzing.md).

Each target's seed corpus must pass, then hypothesis generates inputs for
MAILSTANDBY_FUZZ_SECONDS (default 30) per target. The pre-release run is the
same with 600 s per target: `python -m fuzz.run all --seconds 600`.
A failure prints the smallest input found; add it to the target's corpus and
a regression test in tests/unit once fixed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from fuzz.engine import run_hypothesis
from fuzz.run import TARGETS, target

SECONDS = float(os.environ.get("MAILSTANDBY_FUZZ_SECONDS", "30"))

pytestmark = pytest.mark.fuzz


@pytest.mark.parametrize("name", TARGETS)
def test_seed_corpus_passes(name: str) -> None:
    fuzz_target = target(name)
    seeds = fuzz_target.seeds()
    assert seeds, f"fuzz/corpus/{name} is empty"
    for seed in seeds:
        fuzz_target.run(seed)


@pytest.mark.parametrize("name", TARGETS)
def test_fuzz_target(name: str) -> None:
    assert run_hypothesis(target(name), SECONDS) > 0
