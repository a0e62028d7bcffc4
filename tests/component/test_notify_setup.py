"""The setup pages over ASGI (httpx): the link from a real failover notice, its profile and
autoconfig documents, single use and expiry, and choosing a password with a one-time code
sent to the user's registered push URL (argon2 hash checked by the real authenticator)."""

from __future__ import annotations

import plistlib
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_primary import FakePrimary
from http_sink import HTTPSink
from notify_rig import HOSTNAME, Rig, parse, settings, users
from starlette.applications import Starlette

from mailstandby.auth import PasswordAuthenticator
from mailstandby.config import AuthSettings, StoreSettings
from mailstandby.directory.base import NoticeKind
from mailstandby.notify.setup import SetupService, setup_routes
from mailstandby.notify.tokens import load_key
from mailstandby.store.sqlite_mailbox import SQLiteMailboxStore


@pytest.fixture
async def rig(tmp_path: Path, store_settings: StoreSettings) -> AsyncIterator[Rig]:
    smarthost, http = FakePrimary(), HTTPSink()
    await smarthost.start()
    await http.start()
    r = Rig(tmp_path / "data", smarthost, http, settings(), users(http.port), store_settings=store_settings)
    try:
        await r.start()
        yield r
    finally:
        await r.stop()
        await http.stop()
        await smarthost.stop()


def client(rig: Rig, *, clock: Any = None) -> tuple[httpx.AsyncClient, SetupService]:
    assert rig.store is not None and rig.notifications is not None and rig.notifier is not None
    service = SetupService(
        rig.notifications,
        rig.directory,
        rig.settings,
        hostname=HOSTNAME,
        key=load_key(rig.data_dir),
        credentials=SQLiteMailboxStore(rig.store),
        send_code=rig.notifier.send_code,
        **({"clock": clock} if clock else {}),
    )
    app = Starlette(routes=setup_routes(service))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://standby.corp.test"), service


async def link_for(rig: Rig, user: str, occurrence: str) -> str:
    """Announce a failover and read the setup link out of the email the user received."""
    assert rig.notifier is not None
    await rig.notifier.announce(NoticeKind.FAILOVER, [rig.people[user]], occurrence)
    await rig.settled()
    [mail] = [m for m in rig.mail_to(f"{user}@home.test") if occurrence.encode() in m.body]
    text = parse(mail.body).get_body(("plain",)).get_content()
    found = re.search(r"https://standby\.corp\.test(/setup/[\w-]+)", text)
    assert found is not None, text
    return found.group(1)


async def test_the_link_serves_a_profile_once(rig: Rig) -> None:
    path = await link_for(rig, "alice", "failover-30")
    http, _ = client(rig)
    async with http:
        page = await http.get(path)
        assert page.status_code == 200
        assert "mail.corp.test" in page.text and "993" in page.text and "alice@corp.test" in page.text
        profile = await http.get(path + "/standby.mobileconfig")
        assert profile.status_code == 200
        assert profile.headers["content-type"] == "application/x-apple-aspen-config"
        doc = plistlib.loads(profile.content)
        assert doc["PayloadType"] == "Configuration"
        [account] = doc["PayloadContent"]
        assert account["PayloadType"] == "com.apple.mail.managed"
        assert account["IncomingMailServerHostName"] == "mail.corp.test"
        assert account["IncomingMailServerPortNumber"] == 993
        assert account["IncomingMailServerUsername"] == "alice@corp.test"
        assert account["OutgoingMailServerPortNumber"] == 587
        assert "IncomingPassword" not in account
        # single use: any further download, and the page, are refused
        for again in (path + "/standby.mobileconfig", path + "/config-v1.1.xml", path):
            refused = await http.get(again)
            assert refused.status_code == 410 and "used" in refused.text


async def test_autoconfig_documents(rig: Rig) -> None:
    path = await link_for(rig, "bob", "failover-31")
    http, _ = client(rig)
    async with http:
        personal = await http.get(path + "/config-v1.1.xml")
        assert personal.status_code == 200
        root = ET.fromstring(personal.content)
        assert root.tag == "clientConfig" and root.get("version") == "1.1"
        imap = root.find("emailProvider/incomingServer[@type='imap']")
        assert imap is not None
        assert [imap.findtext(k) for k in ("hostname", "port", "socketType", "username")] == [
            "mail.corp.test",
            "993",
            "SSL",
            "bob@corp.test",
        ]
        smtp = root.find("emailProvider/outgoingServer[@type='smtp']")
        assert smtp is not None and smtp.findtext("socketType") == "STARTTLS"
        for url in ("/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml"):
            generic = await http.get(url, params={"emailaddress": "carol@corp.test"})
            assert generic.status_code == 200
            server = ET.fromstring(generic.content).find("emailProvider/incomingServer[@type='imap']")
            assert server is not None and server.findtext("username") == "carol@corp.test"
        outlook = await http.post(
            "/autodiscover/autodiscover.xml",
            content=b"<Autodiscover><Request><EMailAddress>carol@corp.test</EMailAddress></Request></Autodiscover>",
        )
        assert outlook.status_code == 200 and b"<Server>mail.corp.test</Server>" in outlook.content
        stranger = await http.post("/autodiscover/autodiscover.xml", content=b"<EMailAddress>x@ext.test</EMailAddress>")
        assert stranger.status_code == 404
        spaced = await http.post(
            "/autodiscover/autodiscover.xml", content=b"<emailaddress> carol@corp.test\n</emailaddress>"
        )
        assert spaced.status_code == 200
        for junk in (
            b"<EMailAddress>" + b"@" * 16000,
            b"<EMailAddress>a@b@corp.test</EMailAddress>",
            b"<EMailAddress>",
        ):
            assert (await http.post("/autodiscover/autodiscover.xml", content=junk)).status_code == 404


async def test_an_expired_or_unknown_link_is_refused(rig: Rig) -> None:
    path = await link_for(rig, "alice", "failover-32")
    later = time.time() + rig.settings.link_lifetime + 1
    http, _ = client(rig, clock=lambda: later)
    async with http:
        for url in (path, path + "/standby.mobileconfig"):
            expired = await http.get(url)
            assert expired.status_code == 410 and "expired" in expired.text
        unknown = await http.get("/setup/not-a-token/standby.mobileconfig")
        assert unknown.status_code == 410 and "not valid" in unknown.text


async def test_a_one_time_code_on_the_push_url_lets_the_user_choose_a_password(rig: Rig) -> None:
    assert rig.store is not None
    path = await link_for(rig, "alice", "failover-33")
    http, _ = client(rig)
    auth = PasswordAuthenticator(rig.directory, SQLiteMailboxStore(rig.store), AuthSettings(failure_delay=0))
    async with http:
        assert "Choose your standby password" in (await http.get(path)).text
        assert (await http.post(path + "/code")).status_code == 200
        await rig.http.wait_for(lambda: any("code" in p.json["message"] for p in rig.http.to("/alice")))
        [sent] = [p for p in rig.http.to("/alice") if "code" in p.json["message"]]
        found = re.search(r"\b(\d{6})\b", sent.json["message"])
        assert found is not None
        code = found.group(1)
        wrong = "000000" if code != "000000" else "111111"
        denied = await http.post(path + "/password", data={"code": wrong, "password": "new-phone-pw"})
        assert denied.status_code == 403
        assert await auth.authenticate("alice@corp.test", "new-phone-pw", peer="127.0.0.1", protocol="imap") is None
        ok = await http.post(path + "/password", data={"code": code, "password": "new-phone-pw"})
        assert ok.status_code == 200 and "password is set" in ok.text
        user = await auth.authenticate("alice@corp.test", "new-phone-pw", peer="127.0.0.1", protocol="imap")
        assert user == "alice@corp.test"
        again = await http.post(path + "/password", data={"code": code, "password": "another-password"})
        assert again.status_code == 403  # a code works once
        assert "Choose your standby password" not in (await http.get(path)).text
