"""The model-based stress program (tests/support/imapstress.py) against Dovecot and a running
mailstandby, with the same seed: Dovecot passing checks the model itself (a violation Dovecot
commits is a bug in the model, not in a server), mailstandby passing checks us against it.

Started like tests/wire/test_imap_differential.py (same user, same primary and standby setup).
Bounded for CI; bench/imap_stress.py runs 20,000 commands per server.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from tests.support.imapstress import run_program
from tests.support.primary import Primary
from tests.support.standby import Standby
from tests.wire.test_imap_differential import PRIMARY_USERS, STANDBY_PASSWORD, USER

STEPS = int(os.environ.get("IMAP_STRESS_STEPS", "500"))
SESSIONS = 5


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[int, str]]]:
    """{"dovecot": (imap port, password), "standby": (imap port, password)}"""
    root = tmp_path_factory.mktemp("imapstress")
    primary = Primary(root / "primary", users=dict(PRIMARY_USERS))
    standby: Standby | None = None
    try:
        primary.start()
        standby = Standby(
            root / "standby",
            primary_port=primary.smtp_port,
            imap={"listen": ["127.0.0.1:0"], "allow_plaintext_auth_on_loopback": True},
        )
        standby.set_password(USER, STANDBY_PASSWORD)
        standby.start()
        yield {
            "dovecot": (primary.imap_port, PRIMARY_USERS[USER]),
            "standby": (standby.listeners["imap"], STANDBY_PASSWORD),
        }
    finally:
        if standby is not None:
            standby.kill()
        primary.close()


@pytest.mark.parametrize("server", ["dovecot", "standby"])
@pytest.mark.parametrize("seed", [11, 12])
def test_no_session_is_told_anything_its_model_forbids(
    servers: dict[str, tuple[int, str]], server: str, seed: int
) -> None:
    port, password = servers[server]
    box = f"Stress-{seed}-{time.monotonic_ns()}"
    stats = run_program("127.0.0.1", port, USER, password, box=box, seed=seed, sessions=SESSIONS, steps=STEPS)
    assert stats.violations == [], f"{server}:\n" + "\n".join(stats.violations[:20])
    assert stats.commands > STEPS and stats.checkpoints >= 2
