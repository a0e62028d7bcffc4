"""Standby logins: argon2id hashes in the store, aliases, failure delay, throttling, audit trail."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailstandby.auth import PasswordAuthenticator, hash_password
from mailstandby.config import AuthSettings, StoreSettings
from mailstandby.directory.base import User
from mailstandby.directory.static import StaticDirectory
from mailstandby.store.sqlite import SQLiteStore
from mailstandby.store.sqlite_mailbox import SQLiteMailboxStore

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.database import query

DIRECTORY = StaticDirectory(["corp.test"], [User("alice@corp.test", ("a.liddell@corp.test",)), User("bob@corp.test")])


@pytest.fixture
async def creds(tmp_path: Path) -> AsyncIterator[SQLiteMailboxStore]:
    base = SQLiteStore(tmp_path / "data", StoreSettings())
    await base.open()
    store = SQLiteMailboxStore(base)
    await store.set_password_hash("alice@corp.test", hash_password("right horse battery"))
    try:
        yield store
    finally:
        await base.close()


def audit_rows(store: SQLiteMailboxStore) -> list[tuple[str, str, str, str]]:
    return query(store.store.data_dir, "SELECT actor, action, outcome, peer FROM audit ORDER BY id")  # type: ignore[return-value]


async def test_login_by_address_or_alias_gives_the_canonical_user(creds: SQLiteMailboxStore) -> None:
    auth = PasswordAuthenticator(DIRECTORY, creds, AuthSettings(failure_delay=0))
    assert await auth.authenticate("alice@corp.test", "right horse battery", peer="10.0.0.1", protocol="imap") == (
        "alice@corp.test"
    )
    assert await auth.authenticate("A.Liddell@corp.test", "right horse battery", peer="10.0.0.1", protocol="pop3") == (
        "alice@corp.test"
    )
    assert audit_rows(creds) == [
        ("alice@corp.test", "login.imap", "ok", "10.0.0.1"),
        ("alice@corp.test", "login.pop3", "ok", "10.0.0.1"),
    ]


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice@corp.test", "wrong"),
        ("bob@corp.test", "right horse battery"),  # exists, has no standby password yet
        ("nobody@corp.test", "right horse battery"),
        ("not an address", "x"),
        ("alice@corp.test", ""),
        ("alice@corp.test", "x" * 5000),
    ],
)
async def test_bad_credentials_are_refused_after_the_delay(
    creds: SQLiteMailboxStore, username: str, password: str
) -> None:
    auth = PasswordAuthenticator(DIRECTORY, creds, AuthSettings(failure_delay=0.2))
    started = time.monotonic()
    assert await auth.authenticate(username, password, peer="10.0.0.2", protocol="imap") is None
    assert time.monotonic() - started >= 0.2
    [(actor, action, outcome, peer)] = audit_rows(creds)
    assert (action, outcome, peer) == ("login.imap", "failed", "10.0.0.2")
    assert not password or password not in actor  # the audit trail never holds a password


async def test_an_address_that_keeps_failing_is_throttled_even_with_the_right_password(
    creds: SQLiteMailboxStore,
) -> None:
    auth = PasswordAuthenticator(DIRECTORY, creds, AuthSettings(failure_delay=0, max_failures=3))
    for _ in range(3):
        assert await auth.authenticate("alice@corp.test", "guess", peer="10.9.9.9", protocol="imap") is None
    assert await auth.authenticate("alice@corp.test", "right horse battery", peer="10.9.9.9", protocol="imap") is None
    assert audit_rows(creds)[-1][2] == "throttled"
    # another address is not affected
    ok = await auth.authenticate("alice@corp.test", "right horse battery", peer="10.9.9.10", protocol="imap")
    assert ok == "alice@corp.test"


def test_hashes_are_argon2id_and_never_the_password() -> None:
    hashed = hash_password("right horse battery")
    assert hashed.startswith("$argon2id$") and "right horse battery" not in hashed
    with pytest.raises(ValueError):
        hash_password("")


async def test_a_verified_login_is_cached_until_the_password_changes(
    creds: SQLiteMailboxStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mailstandby.auth as auth_module

    runs: list[str] = []
    real_verify = auth_module.verify_password

    def counting_verify(hashed: str, password: str) -> bool:
        runs.append(password)
        return real_verify(hashed, password)

    monkeypatch.setattr(auth_module, "verify_password", counting_verify)
    auth = PasswordAuthenticator(DIRECTORY, creds, AuthSettings(failure_delay=0))
    for _ in range(3):
        assert await auth.authenticate("alice@corp.test", "right horse battery", peer="p", protocol="imap")
    assert len(runs) == 1  # one argon2 run, then the cache
    assert await auth.authenticate("alice@corp.test", "wrong", peer="p", protocol="imap") is None
    assert len(runs) == 2  # a wrong password is always checked
    await creds.set_password_hash("alice@corp.test", hash_password("a new one, longer"))  # `mailstandby passwd`
    assert await auth.authenticate("alice@corp.test", "right horse battery", peer="p", protocol="imap") is None
    assert (
        await auth.authenticate("alice@corp.test", "a new one, longer", peer="p", protocol="imap") == "alice@corp.test"
    )
