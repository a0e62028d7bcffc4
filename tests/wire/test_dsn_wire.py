"""The DSN extension passed on to a real primary (RFC 3461 §5.2.1): mailstandby -> Postfix -> Dovecot.

Postfix advertises DSN, so mailstandby gives it the sender's NOTIFY, ORCPT, RET
and ENVID and sends no `relayed` report of its own; Postfix then owns the
reporting and, for NOTIFY=SUCCESS, sends its own success DSN once it has
delivered (to Dovecot over LMTP). The sender is a user of the primary, so that
report lands in a mailbox the test reads.
"""

from __future__ import annotations

import email
import smtplib
from email import policy
from email.message import Message
from pathlib import Path

from tests.support.primary import Primary
from tests.support.standby import Standby

SENDER, RCPT = "bob@corp.test", "alice@corp.test"
BODY = b"From: Bob <bob@corp.test>\r\nTo: alice@corp.test\r\nSubject: dsn passed on\r\n\r\nthe body\r\n"


def status_groups(raw: bytes) -> list[Message]:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg.get_content_type() == "multipart/report"
    (part,) = [p for p in msg.walk() if p.get_content_type() == "message/delivery-status"]
    groups = part.get_payload()
    assert isinstance(groups, list)
    return list(groups)


def test_postfix_gets_the_dsn_parameters_and_reports_success_itself(tmp_path: Path, primary: Primary) -> None:
    with Standby(tmp_path / "standby", primary_port=primary.smtp_port) as standby:
        with smtplib.SMTP(*standby.address, timeout=30) as s:
            s.ehlo("client.ext.test")
            s.mail(SENDER, ["RET=HDRS", "ENVID=wire+2Bdsn-1"])
            code, _ = s.rcpt(RCPT, ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Alice+2BTag@Corp.Test"])
            assert code == 250
            code, _ = s.data(BODY)
            assert code == 250
        primary.wait_for_messages(RCPT, 1)
        [report] = primary.wait_for_messages(SENDER, 1, timeout=60)  # from Postfix, not from us
        standby.wait_until(lambda: not standby.queued(), what="queue to drain")
        assert {d["rcpt"] for d in standby.deliveries()} == {RCPT}  # no DSN message of our own
    per_message, per_rcpt = status_groups(report)
    assert per_message["Reporting-MTA"] == f"dns; primary.{primary.domain}"
    assert per_message["Original-Envelope-Id"] == "wire+dsn-1"  # the ENVID we passed on (Postfix writes it decoded)
    assert per_rcpt["Original-Recipient"] == "rfc822;Alice+Tag@Corp.Test"  # our ORCPT, decoded
    assert per_rcpt["Final-Recipient"] == f"rfc822; {RCPT}"
    assert per_rcpt["Action"] == "relayed"  # Postfix to an LMTP server without DSN (lmtp_assume_final = no)
    assert per_rcpt["Status"].startswith("2.")
    assert b"the body" not in report  # RET=HDRS passed on: Postfix returned the headers only
