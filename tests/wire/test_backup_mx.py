"""mailstandby as a lower-priority MX (backup-MX mode), between real Postfix instances.

A sending Postfix whose first choice (the primary's MX) is dead falls back to
mailstandby (Postfix `smtp_fallback_relay`, what a lower-priority MX record
gives any sender); mailstandby relays to the primary. Recipients get the same
answer at RCPT time as from the primary itself: what the primary refuses is
refused here while the sender is connected (no backscatter)."""

from __future__ import annotations

import smtplib
import socket
from pathlib import Path

from tests.support.primary import Primary
from tests.support.standby import Standby

VERIFY = {"listen": ["127.0.0.1:0"], "verify_recipients": True}


def dead_port() -> socket.socket:
    """A port bound but not listening: connections are refused, and nothing else can take it."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s


def rcpt(port: int, address: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.ext.test")
        s.mail("sender@ext.test")
        return s.rcpt(address)


def test_a_sender_whose_primary_mx_is_dead_delivers_through_the_backup_mx(tmp_path: Path, primary: Primary) -> None:
    with Standby(tmp_path / "standby", primary_port=primary.smtp_port, smtp=VERIFY) as standby:
        dead = dead_port()
        sender = Primary(
            tmp_path / "sender",
            domain="ext.test",
            users={"partner@ext.test": "pw"},
            relayhost=f"[127.0.0.1]:{dead.getsockname()[1]}",  # the primary MX, unreachable from outside
            fallback_relay=f"[127.0.0.1]:{standby.port}",  # the lower-priority MX: mailstandby
        )
        try:
            sender.start()
            with smtplib.SMTP("127.0.0.1", sender.smtp_port, timeout=30) as s:
                s.sendmail("partner@ext.test", ["alice@corp.test"], b"Subject: via the backup MX\r\n\r\nhello\r\n")
            try:
                [got] = primary.wait_for_messages("alice@corp.test", 1, timeout=90)
            except AssertionError as e:
                logs = f"--- sending Postfix:\n{sender.maillog()}\n--- standby:\n{standby.log()}"
                raise AssertionError(f"{e}\n{logs}") from None
        finally:
            sender.close()
            dead.close()
    assert b"Subject: via the backup MX" in got
    assert b"by standby.corp.test (mailstandby)" in got  # it came through the backup MX
    assert [d["state"] for d in standby.deliveries()] == ["delivered"]


def test_recipients_get_the_primarys_answer_at_rcpt_time(tmp_path: Path, primary: Primary) -> None:
    with Standby(tmp_path / "standby", primary_port=primary.smtp_port, smtp=VERIFY) as standby:
        assert rcpt(standby.port, "alice@corp.test")[0] == 250
        assert rcpt(standby.port, "nobody@corp.test")[0] == 550  # unknown to our directory
        code, text = rcpt(standby.port, "ghost@corp.test")  # in our directory, unknown to the primary
        assert code == 550 and text.startswith(b"5.1.1"), text
        assert rcpt(standby.port, "someone@elsewhere.test")[0] == 554  # never an open relay

        primary.stop_smtp()  # the primary cannot be asked: the directory decides, mail keeps flowing
        assert rcpt(standby.port, "bob@corp.test")[0] == 250
        assert rcpt(standby.port, "ghost@corp.test")[0] == 550  # the primary's refusal is remembered


def test_without_verification_the_directory_alone_decides(tmp_path: Path, primary: Primary) -> None:
    with Standby(tmp_path / "standby", primary_port=primary.smtp_port) as standby:
        assert rcpt(standby.port, "ghost@corp.test")[0] == 250
