"""rspamd (the Debian package, a private instance) in the inbound path: its verdict is honoured before
the final dot is answered, and accepted mail carries it in X-Spam-* headers to the primary."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.primary import Primary
from tests.support.rspamd import Rspamd
from tests.support.standby import Standby

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@pytest.fixture
def rspamd(tmp_path: Path) -> Iterator[Rspamd]:
    with Rspamd(tmp_path / "rspamd") as r:
        yield r


def mail(subject: str, body: str) -> bytes:
    return (
        f"From: <sender@ext.test>\r\nTo: <alice@corp.test>\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@ext.test>\r\nDate: Sun, 29 Nov 2026 08:00:00 +0000\r\n\r\n{body}\r\n"
    ).encode()


def test_rspamd_rejects_gtube_at_the_dot_and_marks_what_it_accepts(
    tmp_path: Path, primary: Primary, rspamd: Rspamd
) -> None:
    with Standby(tmp_path / "standby", primary_port=primary.smtp_port, antispam={"rspamd_url": rspamd.url}) as standby:
        with smtplib.SMTP("127.0.0.1", standby.port, timeout=60) as s:
            s.ehlo("client.ext.test")
            with pytest.raises(smtplib.SMTPDataError) as refused:
                s.sendmail("sender@ext.test", ["alice@corp.test"], mail("spam", GTUBE))
            assert refused.value.smtp_code == 554 and refused.value.smtp_error.startswith(b"5.7.1")
            s.sendmail("sender@ext.test", ["alice@corp.test"], mail("hello", "An ordinary note about lunch."))
        [delivered] = primary.wait_for_messages("alice@corp.test", 1)
    head = delivered.split(b"\r\n\r\n", 1)[0].decode()
    assert "Subject: hello" in head
    assert "X-Spam-Status: No, score=" in head and "X-Spam-Action: no action" in head
    assert not standby.deliveries() or all(b"GTUBE" not in b for b, _, _ in standby.mailbox("alice@corp.test", "INBOX"))


def test_rspamd_unreachable_defers_the_message_rather_than_let_it_in_unchecked(
    tmp_path: Path, primary: Primary
) -> None:
    with Standby(
        tmp_path / "standby",
        primary_port=primary.smtp_port,
        antispam={"rspamd_url": "http://127.0.0.1:9", "timeout": 2.0},
    ) as standby:
        with (
            smtplib.SMTP("127.0.0.1", standby.port, timeout=60) as s,
            pytest.raises(smtplib.SMTPDataError) as deferred,
        ):
            s.sendmail("sender@ext.test", ["alice@corp.test"], mail("later", "try again"))
        assert deferred.value.smtp_code == 451 and deferred.value.smtp_error.startswith(b"4.7.1")
        assert standby.deliveries() == []
