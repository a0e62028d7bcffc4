"""The model-based stress program (tests/support/imapstress.py) against mailstandby in-process.

Five sessions on one mailbox, a seeded random program of APPEND, STORE, EXPUNGE, COPY, MOVE,
FETCH, SEARCH, IDLE and NOOP; every untagged response is checked against what its session was
told. Bounded for CI (a few seconds per store); bench/imap_stress.py runs it longer, beside
Dovecot, and tests/wire/test_imap_stress_dovecot.py checks the model against Dovecot itself.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from imap_harness import ALICE, ALICE_PW, RigFactory, make_rig, store_factory
from tests.support.imapstress import run_program

__all__ = ["make_rig", "store_factory"]  # fixtures

STEPS = int(os.environ.get("IMAP_STRESS_STEPS", "600"))


@pytest.mark.parametrize("seed", [1, 2])
async def test_five_sessions_see_only_what_they_were_told(make_rig: RigFactory, seed: int) -> None:
    rig = await make_rig(max_connections_per_user=10, tls=False)
    await rig.store.ensure_user(ALICE)
    stats = await asyncio.to_thread(
        run_program, "127.0.0.1", rig.port, ALICE, ALICE_PW, box=f"Stress{seed}", seed=seed, sessions=5, steps=STEPS
    )
    assert stats.violations == [], "\n".join(stats.violations[:20])
    assert stats.commands > STEPS and stats.checkpoints >= 2
