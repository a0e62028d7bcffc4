"""The MX switch against a real BIND 9 accepting TSIG-signed RFC 2136 updates.

Failover points the zone's MX (and the mail host's A record) at the standby,
failback restores exactly what was there (records and TTLs); `dig` asking the
server directly is the judge. A wrong TSIG key is reported and changes nothing.
"""

from __future__ import annotations

import base64
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.dns import KEY_NAME, Bind
from tests.support.standby import Standby

ADMIN_PW = "dns-switch-password"
ORIGINAL_MX = ["10 mail.corp.test."]


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[Bind]:
    with Bind(tmp_path / "bind") as b:
        yield b


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def standby_for(tmp_path: Path, bind: Bind, secret: str | None = None) -> Standby:
    key = bind.write_secret(tmp_path / "tsig.secret", secret)
    dns: dict[str, Any] = {
        "enabled": True,
        "server": "127.0.0.1",
        "port": bind.port,
        "zone": "corp.test",
        "standby_mx": "standby.corp.test",
        "addresses": {"mail.corp.test": ["192.0.2.99"]},
        "ttl": 60,
        "tsig_key_name": KEY_NAME,
        "tsig_secret_file": str(key),
    }
    # The primary is not under test here (manual control; its port is closed).
    standby = Standby(tmp_path / "standby", primary_port=closed_port(), dns=dns)
    return standby


def test_failover_switches_the_mx_and_failback_restores_it(tmp_path: Path, bind: Bind) -> None:
    assert bind.dig("corp.test", "MX") == ORIGINAL_MX
    with standby_for(tmp_path, bind) as standby:
        standby.add_admin("admin", ADMIN_PW)
        done = standby.cli("failover", "--reason", "primary datacenter dark", password=ADMIN_PW)
        assert done.returncode == 0, done.stderr
        assert bind.dig("corp.test", "MX") == ["10 standby.corp.test."]
        assert bind.dig("mail.corp.test", "A") == ["192.0.2.99"]
        status = standby.cli("dns", "status", password=ADMIN_PW)
        assert status.returncode == 0 and "switched to the standby" in status.stdout
        assert "corp.test. MX 10 mail.corp.test. ttl=3600" in status.stdout  # saved, to be put back

        standby.kill()  # the saved records survive a crash ...
        standby.start()
        done = standby.cli("failback", "--reason", "primary back", password=ADMIN_PW)
        assert done.returncode == 0, done.stderr
        standby.wait_until(lambda: bind.dig("corp.test", "MX") == ORIGINAL_MX, 30, "MX restored")
        assert bind.dig("mail.corp.test", "A") == ["192.0.2.25"]
        with standby.api(password=ADMIN_PW) as api:
            dns = api.get("/api/v1/dns").json()
        assert dns["switched"] is False
        assert {(r["name"], r["type"], r["ttl"]) for r in dns["current"]} >= {("corp.test.", "MX", 3600)}


def test_a_wrong_tsig_key_is_reported_and_changes_nothing(tmp_path: Path, bind: Bind) -> None:
    wrong = base64.b64encode(secrets.token_bytes(32)).decode()
    with standby_for(tmp_path, bind, secret=wrong) as standby:
        standby.add_admin("admin", ADMIN_PW)
        done = standby.cli("dns", "switch", "--reason", "test", password=ADMIN_PW)
        assert done.returncode == 1
        assert "502" in done.stderr and ("TSIG" in done.stderr or "NOTAUTH" in done.stderr), done.stderr
        assert bind.dig("corp.test", "MX") == ORIGINAL_MX
        assert bind.dig("mail.corp.test", "A") == ["192.0.2.25"]
        status = standby.cli("dns", "status", password=ADMIN_PW)
        assert "as the primary had it" in status.stdout and "saved" not in status.stdout
        audit = standby.cli("audit", "--action", "admin.dns", password=ADMIN_PW)
        assert "admin.dns-switch  failed" in audit.stdout

        # A failover still happens (mail must flow); the DNS failure is logged, not fatal.
        assert standby.cli("failover", "--reason", "outage", password=ADMIN_PW).returncode == 0
        assert standby.failover_state()["mode"] == "failed-over"
        assert bind.dig("corp.test", "MX") == ORIGINAL_MX
        assert "rejected the TSIG signature" in standby.log() or "NOTAUTH" in standby.log()
