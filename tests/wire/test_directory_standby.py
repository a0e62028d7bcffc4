"""A running mailstandby (subprocess, real SMTP) follows directory imports from a real slapd without a restart."""

from __future__ import annotations

import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.ldap import Slapd
from tests.support.ldaptree import PEOPLE, SERVICE_DN, SERVICE_PASSWORD, base, person
from tests.support.primary import Primary
from tests.support.standby import Standby

USERS = {"user001@corp.test": "pw-1", "user002@corp.test": "pw-2", "user003@corp.test": "pw-3"}


@pytest.fixture
def slapd(tmp_path: Path) -> Iterator[Slapd]:
    server = Slapd(tmp_path / "ldap")
    server.load_ldif(base() + person(1) + person(2))
    with server:
        yield server


def standby_for(tmp_path: Path, slapd: Slapd, primary_port: int, **directory: object) -> Standby:
    root = tmp_path / "standby"
    root.mkdir(parents=True, exist_ok=True)
    (root / "bind.pw").write_text(SERVICE_PASSWORD + "\n")
    ldap = {"url": slapd.url, "bind_dn": SERVICE_DN, "password_file": "bind.pw", "base_dn": PEOPLE, "timeout": 5.0}
    return Standby(
        root,
        primary_port=primary_port,
        directory={"domains": ["corp.test"], "reload_interval": 0.2, **directory},
        **{"directory.ldap": ldap},
    )


def rcpt(standby: Standby, address: str) -> tuple[int, str]:
    with smtplib.SMTP(*standby.address, timeout=30) as s:
        s.ehlo("client.ext.test")
        s.mail("sender@ext.test")
        code, msg = s.rcpt(address)
        return code, msg.decode()


def send(standby: Standby, address: str, subject: str) -> None:
    body = f"From: sender@ext.test\r\nTo: {address}\r\nSubject: {subject}\r\n\r\nhello\r\n".encode()
    with smtplib.SMTP(*standby.address, timeout=30) as s:
        s.sendmail("sender@ext.test", [address], body)


def directory_cli(standby: Standby, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailstandby", "directory", "-c", str(standby.config_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_imported_user_gets_mail_and_a_removed_one_gets_550_without_restart(tmp_path: Path, slapd: Slapd) -> None:
    with Primary(tmp_path / "primary", users=dict(USERS)) as primary:
        standby = standby_for(tmp_path, slapd, primary.smtp_port)
        with standby:
            pid = standby.proc.pid
            assert rcpt(standby, "user001@corp.test")[0] == 550  # not imported yet

            out = directory_cli(standby, "import")
            assert out.returncode == 0, out.stderr
            assert "+ user001@corp.test" in out.stdout and "+ user002@corp.test" in out.stdout
            standby.wait_until(lambda: rcpt(standby, "user001@corp.test")[0] == 250, what="import picked up")
            standby.set_password("user001@corp.test", "standby-pw-1")  # `passwd` knows imported users too
            send(standby, "user001@corp.test", "after import")
            [got] = primary.wait_for_messages("user001@corp.test", 1)
            assert b"Subject: after import" in got

            send(standby, "user002@corp.test", "before removal")
            primary.wait_for_messages("user002@corp.test", 1)
            standby.wait_until(lambda: len(standby.mailbox("user002@corp.test", "INBOX")) == 1, what="journal copy")

            slapd.ldapmodify(f"dn: uid=user002,{PEOPLE}\nchangetype: delete\n")
            slapd.ldapmodify(
                person(3).replace("\nobjectClass: inetOrgPerson", "\nchangetype: add\nobjectClass: inetOrgPerson")
            )
            diff = directory_cli(standby, "diff")
            assert "- user002@corp.test (disabled: gone-from-source)" in diff.stdout
            assert "+ user003@corp.test" in diff.stdout and "dry run: nothing applied" in diff.stdout
            assert rcpt(standby, "user002@corp.test")[0] == 250  # a diff applies nothing

            assert directory_cli(standby, "import").returncode == 0
            standby.wait_until(lambda: rcpt(standby, "user002@corp.test")[0] == 550, what="removal picked up")
            code, msg = rcpt(standby, "user002@corp.test")
            assert (code, msg.split()[0]) == (550, "5.1.1")
            assert rcpt(standby, "user003@corp.test")[0] == 250
            send(standby, "user003@corp.test", "new hire")
            assert b"Subject: new hire" in primary.wait_for_messages("user003@corp.test", 1)[0]

            shown = directory_cli(standby, "show", "user002@corp.test")
            assert "enabled:      no" in shown.stdout
            [(kept, _, _)] = standby.mailbox("user002@corp.test", "INBOX")  # disabled, its standby mail kept
            assert b"Subject: before removal" in kept
            assert standby.proc.pid == pid and standby.proc.poll() is None  # never restarted


def test_server_refreshes_on_its_own_and_restarts_on_the_stored_directory_while_ldap_is_dark(
    tmp_path: Path, slapd: Slapd
) -> None:
    standby = standby_for(tmp_path, slapd, primary_port=9, refresh_interval=0.3)
    with standby:
        standby.wait_until(lambda: rcpt(standby, "user002@corp.test")[0] == 250, what="scheduled import")
        slapd.ldapmodify(f"dn: uid=user001,{PEOPLE}\nchangetype: delete\n")
        standby.wait_until(lambda: rcpt(standby, "user001@corp.test")[0] == 550, what="scheduled re-import")
    slapd.stop()  # the primary (and its LDAP) is dark
    with standby:
        assert rcpt(standby, "user002@corp.test")[0] == 250  # from the store
        assert rcpt(standby, "user001@corp.test")[0] == 550
        assert rcpt(standby, "alice@corp.test")[0] == 250  # the config file's users still count
        standby.wait_until(lambda: "previous directory stays in force" in standby.log(), what="failed import logged")
