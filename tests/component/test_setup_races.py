"""The setup link's one-time codes and password form, on a real socket (uvicorn), and the password policy
on every path that sets a password: the setup page, `mailstandby passwd` and `mailstandby admin`.

- Parallel code requests on one link never leave more than three live codes (the count and the
  insert are one store transaction).
- The password form checks the code before any argon2 work, and hashes in a worker thread.
- A weak password ('1', a common one, the user's own address) is refused with a clear text,
  and the refusal does not use up the code.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_primary import FakePrimary
from http_sink import HTTPSink
from notify_rig import HOSTNAME, Rig, settings, users
from raw_stream import TIMEOUT
from served import served
from starlette.applications import Starlette

import mailstandby.auth as auth_module
from mailstandby.auth import PasswordAuthenticator
from mailstandby.config import AuthSettings
from mailstandby.notify import tokens
from mailstandby.notify.setup import SetupService, setup_routes
from mailstandby.store.sqlite_mailbox import SQLiteMailboxStore

ALICE = "alice@corp.test"
GOOD_PASSWORD = "plum tart on tuesday"


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    smarthost, http = FakePrimary(), HTTPSink()
    await smarthost.start()
    await http.start()
    r = Rig(tmp_path / "data", smarthost, http, settings(), users(http.port))
    try:
        await r.start(deliver=False)  # codes are recorded and queued; nobody needs them sent here
        yield r
    finally:
        await r.stop()
        await http.stop()
        await smarthost.stop()


async def setup_site(rig: Rig) -> tuple[Starlette, str]:
    """The setup routes over the rig's store, and a fresh personal link for alice."""
    assert rig.store is not None and rig.notifications is not None and rig.notifier is not None
    key = tokens.load_key(rig.data_dir)
    service = SetupService(
        rig.notifications,
        rig.directory,
        rig.settings,
        hostname=HOSTNAME,
        key=key,
        credentials=SQLiteMailboxStore(rig.store),
        send_code=rig.notifier.send_code,
    )
    token = tokens.link_token(key, ALICE, "setup-races")
    now = time.time()
    hashed = tokens.token_hash(token)
    await rig.notifications.add_link_token(hashed, ALICE, now, now + 3600)
    return Starlette(routes=setup_routes(service)), f"/setup/{token}"


async def a_code(rig: Rig, nonce: str) -> str:
    """Have a code sent to alice the way the page does; the code itself (derived from the nonce)."""
    assert rig.notifier is not None
    await rig.notifier.send_code(rig.people["alice"], nonce)
    return tokens.code_for(rig.notifier.key, ALICE, nonce)


async def test_parallel_code_requests_on_one_link_never_pass_three_live_codes(rig: Rig) -> None:
    assert rig.notifications is not None
    app, path = await setup_site(rig)
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http:
        answers = await asyncio.gather(*(http.post(path + "/code") for _ in range(20)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 3 + [429] * 17
    assert rig.notifications.live_codes(ALICE, time.time()) == 3


class WatchedHasher:
    """argon2's hasher, noting for each new hash whether it ran on the event loop's thread."""

    def __init__(self, real: Any, loop_thread: threading.Thread) -> None:
        self.real = real
        self.loop_thread = loop_thread
        self.on_loop: list[bool] = []

    def hash(self, password: str) -> str:
        self.on_loop.append(threading.current_thread() is self.loop_thread)
        return str(self.real.hash(password))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


async def test_the_password_form_checks_the_code_before_hashing_and_hashes_off_the_event_loop(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    watched = WatchedHasher(auth_module.HASHER, threading.current_thread())
    monkeypatch.setattr(auth_module, "HASHER", watched)
    app, path = await setup_site(rig)
    code = await a_code(rig, "n-1")
    wrong = "000000" if code != "000000" else "111111"
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http:
        denied = await http.post(path + "/password", data={"code": wrong, "password": GOOD_PASSWORD})
        assert denied.status_code == 403
        assert watched.on_loop == []  # a wrong code costs no argon2 run
        ok = await http.post(path + "/password", data={"code": code, "password": GOOD_PASSWORD})
        assert ok.status_code == 200 and "password is set" in ok.text
    assert watched.on_loop == [False]  # one hash, in a worker thread


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("1", "too short"),
        ("short-pw", "too short"),
        ("password1234", "most common"),
        ("123456789012", "most common"),
        ("aaaaaaaaaaaaaaaa", "too few different"),
        ("Alice@corp.test2026", "user name"),
    ],
)
async def test_the_setup_page_refuses_a_weak_password_and_keeps_the_code(rig: Rig, password: str, why: str) -> None:
    assert rig.notifications is not None
    app, path = await setup_site(rig)
    code = await a_code(rig, "n-2")
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http:
        refused = await http.post(path + "/password", data={"code": code, "password": password})
        assert refused.status_code == 400 and why in refused.text
        assert await SQLiteMailboxStore(rig.store).password_hash(ALICE) is None
        ok = await http.post(path + "/password", data={"code": code, "password": GOOD_PASSWORD})
        assert ok.status_code == 200  # the refusal did not use up the code
    auth = PasswordAuthenticator(rig.directory, SQLiteMailboxStore(rig.store), AuthSettings(failure_delay=0))
    assert await auth.authenticate(ALICE, GOOD_PASSWORD, peer="127.0.0.1", protocol="imap") == ALICE


# -- the command line -------------------------------------------------------------------------


def run_cli(config: Path, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailstandby", *args[:1], "-c", str(config), *args[1:]],
        input=stdin,
        text=True,
        capture_output=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", [("passwd", ALICE), ("admin", "ops")])
async def test_passwd_and_admin_refuse_a_weak_password(tmp_path: Path, command: tuple[str, str]) -> None:
    config = tmp_path / "mailstandby.toml"
    config.write_text(
        '[node]\nhostname = "standby.corp.test"\ndata_dir = "data"\n'
        '[directory]\ndomains = ["corp.test"]\n[[directory.users]]\naddress = "alice@corp.test"\n'
    )
    for weak, why in (("1", "too short"), ("Password2024!", "most common"), (f"{command[1]}-1234567890", "user name")):
        refused = await asyncio.to_thread(run_cli, config, *command, stdin=weak + "\n")
        assert refused.returncode == 1 and why in refused.stderr, refused.stderr
    done = await asyncio.to_thread(run_cli, config, *command, stdin=GOOD_PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
