"""The whole story with the sync: Postfix dies, mail goes to the standby, Postfix returns, and the failover
controller runs the failback sync before it declares NORMAL: the primary then holds every message once."""

from __future__ import annotations

import imaplib
import json
import subprocess
import sys
from pathlib import Path

from tests.support.primary import Primary
from tests.support.standby import Standby
from tests.wire.test_failover import FAST, SLACK, send, subjects_at_primary, subjects_in_standby, wait_mode


def imap_subjects(standby: Standby, user: str, password: str) -> list[str]:
    """The subjects in the user's standby INBOX, read over IMAP as a phone would."""
    client = imaplib.IMAP4("127.0.0.1", standby.listeners["imap"])
    try:
        client.login(user, password)
        client.select("INBOX", readonly=True)
        typ, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        lines = [item[1].decode().strip() for item in data if isinstance(item, tuple)]
        return sorted(line.removeprefix("Subject: ").strip() for line in lines)
    finally:
        client.logout()


def test_failback_runs_the_sync_before_normal(tmp_path: Path, primary: Primary, store_section: dict[str, str]) -> None:
    """On each store backend: mail in over SMTP, failover, IMAP read, failback sync, every message once."""
    secret = tmp_path / "master.pw"
    secret.write_text(primary.master_password + "\n")
    sync = {
        "imap_host": primary.host,
        "imap_port": primary.imap_port,
        "imap_tls": "none",
        "master_user": primary.master_user,
        "password_file": str(secret),
    }
    standby = Standby(
        tmp_path / "standby",
        primary_port=primary.smtp_port,
        failover={"control": "automatic"},
        monitor=dict(FAST),
        sync=sync,
        store=store_section,
        imap={"listen": ["127.0.0.1:0"], "allow_plaintext_auth_on_loopback": True},
    )
    config = standby.config_path.read_text().replace(
        'address = "alice@corp.test"\n', 'address = "alice@corp.test"\nalternates = ["alice@home.test"]\n'
    )
    standby.config_path.write_text(config)
    with standby:
        send(standby, ["alice@corp.test"], "before the outage")
        primary.wait_for_messages("alice@corp.test", 1)
        primary.stop_smtp()
        wait_mode(standby, "failed-over", SLACK)
        outage = [f"during the outage {n}" for n in range(5)]
        for subject in outage:
            send(standby, ["alice@corp.test"], subject)
        standby.wait_until(
            lambda: sorted(subjects_in_standby(standby, "alice@corp.test")) == outage,
            SLACK,
            "outage mail on the standby",
        )
        standby.set_password("alice@corp.test", "standby-password-1")  # `mailstandby passwd` on this store
        read = imap_subjects(standby, "alice@corp.test", "standby-password-1")  # journal copies beside them
        assert all(read.count(subject) == 1 for subject in outage), read
        primary.start_smtp()
        wait_mode(standby, "normal", 2 * SLACK + FAST["min_dwell"])
        assert sorted(subjects_at_primary(primary, "alice@corp.test")) == sorted(["before the outage", *outage])
        status = subprocess.run(
            [sys.executable, "-m", "mailstandby", "sync", "status", "--json", "-c", str(standby.config_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert json.loads(status.stdout)["users"]["alice@corp.test"] == {
            "total": 5,
            "done": 5,
            "failed": 0,
            "pending": 0,
        }
        assert "sync.run: planned=5" in standby.log()
        # alice is told her mail is back as soon as hers is synchronized, before the failback ends;
        # the notice for everyone at the end does not tell her twice.
        lines = standby.log_lines()
        told = next(n for n, ln in enumerate(lines) if "notify.announced: failback failback-1: 1 users, 1 new" in ln)
        normal = next(n for n, ln in enumerate(lines) if "failing-back -> normal" in ln)
        assert told < normal
        assert any("notify.announced: failback failback-1:" in ln and ", 0 new" in ln for ln in lines[normal:])
        standby.add_admin("admin", "failback-sync-pw")
        with standby.api(password="failback-sync-pw") as api:
            progress = api.get("/api/v1/sync").json()
        assert progress["failover"] == "normal"
        assert progress["total"] == {"total": 5, "done": 5, "failed": 0, "pending": 0}
