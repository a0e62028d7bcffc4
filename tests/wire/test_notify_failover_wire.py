"""The whole story in the real process: an administrator's failover makes the standby tell each user
on their alternate address (through [outbound] to a sink), with a setup link served by the standby's
own admin HTTPS server; a user without a standby password chooses one with a one-time code sent to
that alternate address and then logs in over IMAP. A restart re-announces the outage: nothing twice."""

from __future__ import annotations

import asyncio
import imaplib
import plistlib
import re
import ssl
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from tests.component.fake_primary import FakePrimary, Received
from tests.support.standby import Standby

ADMIN_PW = "correct horse battery staple"
ALICE_PW = "phone-standby-pw"


@pytest.fixture
async def smarthost() -> AsyncIterator[FakePrimary]:
    fake = FakePrimary()
    await fake.start()
    yield fake
    await fake.stop()


def text_of(m: Received) -> str:
    msg = message_from_bytes(m.body, policy=policy.default)
    part = msg.get_body(("plain",))  # type: ignore[attr-defined]
    return part.get_content()


def imap_login(port: int, user: str, password: str, cafile: Path) -> str:
    context = ssl.create_default_context(cafile=str(cafile))
    context.check_hostname = False
    with imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=context, timeout=30) as client:
        typ, _ = client.login(user, password)
        client.logout()
        return typ


async def test_failover_notice_link_and_one_time_code_in_the_running_standby(
    tmp_path: Path, smarthost: FakePrimary
) -> None:
    standby = Standby(
        tmp_path / "standby",
        primary_port=smarthost.port,
        imap={"listen_tls": ["127.0.0.1:0"]},
        outbound={"host": "127.0.0.1", "port": smarthost.port, "tls": "none", "connect_timeout": 5.0},
        notify={"setup_url": "https://standby.corp.test", "organization": "Corp"},
    )
    config = standby.config_path.read_text()
    for user in ("alice", "bob"):
        config = config.replace(
            f'address = "{user}@corp.test"\n', f'address = "{user}@corp.test"\nalternates = ["{user}@home.test"]\n'
        )
    standby.config_path.write_text(config)
    await asyncio.to_thread(standby.set_password, "alice@corp.test", ALICE_PW)
    await asyncio.to_thread(standby.start)
    try:
        await asyncio.to_thread(standby.add_admin, "admin", ADMIN_PW)
        done = await asyncio.to_thread(standby.cli, "failover", "--reason", "primary down", password=ADMIN_PW)
        assert done.returncode == 0, done.stderr
        await smarthost.wait_for(lambda: len(smarthost.messages) == 2, timeout=60)
        notices = {m.rcpts[0]: m for m in smarthost.messages}
        assert set(notices) == {"alice@home.test", "bob@home.test"}  # carol and ghost have no alternate

        cafile = standby.data_dir / "tls" / "selfsigned.crt"
        paths = {}
        for rcpt, m in notices.items():
            found = re.search(r"https://standby\.corp\.test(/setup/[\w-]+)", text_of(m))
            assert found is not None
            paths[rcpt] = found.group(1)
        web = standby.api(admin=None)  # the setup pages need no administrator: the link is the credential
        try:
            profile = await asyncio.to_thread(web.get, paths["alice@home.test"] + "/standby.mobileconfig")
            assert profile.status_code == 200
            [account] = plistlib.loads(profile.content)["PayloadContent"]
            assert account["IncomingMailServerUsername"] == "alice@corp.test"
            again = await asyncio.to_thread(web.get, paths["alice@home.test"] + "/standby.mobileconfig")
            assert again.status_code == 410

            bob = paths["bob@home.test"]
            page = await asyncio.to_thread(web.get, bob)
            assert page.status_code == 200 and "Choose your standby password" in page.text
            assert (await asyncio.to_thread(web.post, bob + "/code")).status_code == 200
            await smarthost.wait_for(lambda: len(smarthost.messages) == 3, timeout=60)
            code_mail = smarthost.messages[-1]
            assert code_mail.rcpts == ["bob@home.test"]
            found = re.search(r"\b(\d{6})\b", text_of(code_mail))
            assert found is not None
            form = {"code": found.group(1), "password": "new-phone-pw-b"}
            assert (await asyncio.to_thread(web.post, bob + "/password", data=form)).status_code == 200
        finally:
            web.close()
        imaps = standby.listeners["imaps"]
        assert await asyncio.to_thread(imap_login, imaps, "bob@corp.test", "new-phone-pw-b", cafile) == "OK"
        assert await asyncio.to_thread(imap_login, imaps, "alice@corp.test", ALICE_PW, cafile) == "OK"

        # A restart re-applies the recorded outage and announces it again: nothing new is sent.
        await asyncio.to_thread(standby.stop)
        await asyncio.to_thread(standby.start)
        again_announced = re.compile(r"notify\.announced: failover failover-\d+: 4 users, 0 new")
        await asyncio.to_thread(standby.wait_until, lambda: again_announced.search(standby.log()) is not None, 30)
        status = await asyncio.to_thread(standby.cli, "notify", "status")
        assert status.returncode == 0
        rows = status.stdout.splitlines()
        assert len(rows) == 3 and all(" sent " in r for r in rows), status.stdout
        assert len(smarthost.messages) == 3
    finally:
        await asyncio.to_thread(standby.kill)


async def test_outage_mail_is_forwarded_to_the_alternate_address_by_the_queue(
    tmp_path: Path, smarthost: FakePrimary
) -> None:
    """During an outage the queue files alice's mail in her standby INBOX and, as she asked, forwards it
    whole to her alternate address; a bounce to her is filed but never forwarded."""
    standby = Standby(
        tmp_path / "standby",
        primary_port=smarthost.port,
        outbound={"host": "127.0.0.1", "port": smarthost.port, "tls": "none", "connect_timeout": 5.0},
        notify={"bounce_address": "bounces@corp.test"},
    )
    config = standby.config_path.read_text().replace(
        'address = "alice@corp.test"\n',
        'address = "alice@corp.test"\nalternates = ["alice@home.test"]\nforward = "full"\nnotify = []\n',
    )
    standby.config_path.write_text(config)
    await asyncio.to_thread(standby.start)
    try:
        await asyncio.to_thread(standby.add_admin, "admin", ADMIN_PW)
        done = await asyncio.to_thread(standby.cli, "failover", "--reason", "primary down", password=ADMIN_PW)
        assert done.returncode == 0, done.stderr

        def send(sender: str, subject: str) -> None:
            import smtplib

            with smtplib.SMTP("127.0.0.1", standby.port, timeout=30) as s:
                s.sendmail(sender, ["alice@corp.test"], f"Subject: {subject}\r\n\r\nbody\r\n".encode())

        await asyncio.to_thread(send, "", "a bounce for alice")
        await asyncio.to_thread(send, "partner@ext.test", "contract draft")
        await smarthost.wait_for(lambda: len(smarthost.messages) >= 1, timeout=60)
        await asyncio.to_thread(
            standby.wait_until, lambda: len(standby.mailbox("alice@corp.test", "INBOX")) == 2, 30, "both filed"
        )
        await asyncio.sleep(1)  # a forwarded bounce would have arrived by now
        [forwarded] = smarthost.messages
        assert forwarded.rcpts == ["alice@home.test"] and forwarded.sender == "bounces@corp.test"
        assert b"contract draft" in forwarded.body
    finally:
        await asyncio.to_thread(standby.kill)
