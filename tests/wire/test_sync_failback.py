"""The whole story with the sync: Postfix dies, mail goes to the standby, Postfix returns, and the failover
controller runs the failback sync before it declares NORMAL: the primary then holds every message once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.primary import Primary
from tests.support.standby import Standby
from tests.wire.test_failover import FAST, SLACK, send, subjects_at_primary, subjects_in_standby, wait_mode


def test_failback_runs_the_sync_before_normal(tmp_path: Path, primary: Primary) -> None:
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
