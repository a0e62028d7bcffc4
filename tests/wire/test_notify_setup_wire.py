"""End to end: `mailstandby notify test` → the running standby mails the notice through [outbound]
→ the link in it, served by the setup routes under uvicorn on a real socket → a .mobileconfig and an
autoconfig document whose settings let imaplib log in to the running standby; a used link is refused.

Here the setup routes run in the test process, on the standby's own database and key, so that they
can be given the standby's real listener ports (known only once it runs; the notice text shows the
configured defaults). test_notify_failover_wire.py uses the routes the standby itself serves.
"""

from __future__ import annotations

import asyncio
import imaplib
import plistlib
import re
import socket
import ssl
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from tests.component.fake_primary import FakePrimary
from tests.support.database import query
from tests.support.standby import Standby

from mailstandby.config import NotifySettings, load
from mailstandby.directory.static import from_settings
from mailstandby.notify.setup import SetupService, setup_routes
from mailstandby.notify.tokens import load_key
from mailstandby.store.sqlite_notify import SQLiteNotifyDB

PASSWORD = "standby-pw-7"


class DirectDB(SQLiteNotifyDB):
    """The store calls the setup routes make, on a connection of their own to the standby's database
    (as `mailstandby passwd` does): token reads and updates, credentials, audit."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.data_dir = data_dir

    async def accept(self, message: Any) -> Any:
        raise AssertionError("the setup routes never queue mail themselves")

    async def password_hash(self, user: str) -> str | None:
        rows = query(self.data_dir, "SELECT hash FROM credentials WHERE user = ?", (user,))
        return rows[0][0] if rows else None

    async def set_password_hash(self, user: str, hashed: str) -> None:
        raise AssertionError("not used here")

    async def audit(self, actor: str, action: str, outcome: str, *, peer: str = "", detail: str = "") -> None:
        return None


@pytest.fixture
async def smarthost() -> AsyncIterator[FakePrimary]:
    fake = FakePrimary()
    await fake.start()
    yield fake
    await fake.stop()


async def notify_test(standby: Standby, smarthost: FakePrimary, count: int) -> str:
    """Run `mailstandby notify test alice@…`; return the link path from the notice the smarthost receives."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "mailstandby", "notify", "-c", str(standby.config_path), "test", "alice@corp.test"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    await smarthost.wait_for(lambda: len(smarthost.messages) == count, timeout=60)
    received = smarthost.messages[-1]
    assert received.rcpts == ["alice@home.test"]
    text = message_from_bytes(received.body, policy=policy.default).get_body(("plain",)).get_content()  # type: ignore[attr-defined]
    found = re.search(r"http://127\.0\.0\.1:\d+(/setup/[\w-]+)", text)
    assert found is not None, text
    return found.group(1)


def imap_login(host: str, port: int, user: str, cafile: Path) -> str:
    context = ssl.create_default_context(cafile=str(cafile))
    context.check_hostname = False  # the self-signed certificate names standby.corp.test
    with imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=30) as client:
        typ, _ = client.login(user, PASSWORD)
        client.logout()
        return typ


async def test_setup_link_profiles_log_in_to_the_running_standby(tmp_path: Path, smarthost: FakePrimary) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    web_port = sock.getsockname()[1]
    standby = Standby(
        tmp_path / "standby",
        primary_port=smarthost.port,
        imap={"listen_tls": ["127.0.0.1:0"]},
        outbound={"host": "127.0.0.1", "port": smarthost.port, "tls": "none", "connect_timeout": 5.0},
        notify={"setup_url": f"http://127.0.0.1:{web_port}", "organization": "Corp"},
    )
    config = standby.config_path.read_text()
    standby.config_path.write_text(
        config.replace(
            'address = "alice@corp.test"\n', 'address = "alice@corp.test"\nalternates = ["alice@home.test"]\n'
        )
    )
    await asyncio.to_thread(standby.set_password, "alice@corp.test", PASSWORD)
    await asyncio.to_thread(standby.start)
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None
    try:
        first = await notify_test(standby, smarthost, 1)
        imaps = standby.listeners["imaps"]
        cfg = load(standby.config_path)
        db = DirectDB(standby.data_dir)
        settings = NotifySettings(public_host="127.0.0.1", imap_port=imaps, imap_security="ssl", organization="Corp")

        async def no_codes(*_: object) -> None:
            raise AssertionError("no code is asked for")

        service = SetupService(
            db,
            from_settings(cfg.directory),
            settings,
            hostname="standby.corp.test",
            key=load_key(standby.data_dir),
            credentials=db,
            send_code=no_codes,
        )
        app = Starlette(routes=setup_routes(service))
        server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", ws="none", http="h11")
        )
        task = asyncio.create_task(server.serve(sockets=[sock]))
        async with asyncio.timeout(20):
            while not server.started:
                await asyncio.sleep(0.02)
        cafile = standby.data_dir / "tls" / "selfsigned.crt"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}", timeout=30) as http:
            page = await http.get(first)
            assert page.status_code == 200 and str(imaps) in page.text
            profile = await http.get(first + "/standby.mobileconfig")
            assert profile.status_code == 200
            [account] = plistlib.loads(profile.content)["PayloadContent"]
            assert account["PayloadType"] == "com.apple.mail.managed" and account["IncomingMailServerUseSSL"]
            host, port = account["IncomingMailServerHostName"], account["IncomingMailServerPortNumber"]
            login = await asyncio.to_thread(imap_login, host, port, account["IncomingMailServerUsername"], cafile)
            assert login == "OK"
            assert (await http.get(first + "/standby.mobileconfig")).status_code == 410  # used

            second = await notify_test(standby, smarthost, 2)
            assert second != first
            xml = await http.get(second + "/config-v1.1.xml")
            assert xml.status_code == 200
            imap = ET.fromstring(xml.content).find("emailProvider/incomingServer[@type='imap']")
            assert imap is not None and imap.findtext("socketType") == "SSL"
            hostname, port_text, user = (imap.findtext(k) or "" for k in ("hostname", "port", "username"))
            assert await asyncio.to_thread(imap_login, hostname, int(port_text), user, cafile) == "OK"
            assert (await http.get(second + "/config-v1.1.xml")).status_code == 410

        status = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "mailstandby", "notify", "-c", str(standby.config_path), "status", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0 and status.stdout.count('"state": "sent"') == 2
        db.close()
    finally:
        if server is not None and task is not None:
            server.should_exit = True
            await task
        sock.close()
        await asyncio.to_thread(standby.kill)
