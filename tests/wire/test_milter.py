"""The primary's own Postfix hands every message to mailstandby's milter (smtpd_milters, protocol 6).

Journal: each message for our users is copied into their standby INBOX (journaled) before Postfix
gets its answer, and Postfix still delivers it to Dovecot. Redirect, during an outage: mail for
failed-over users is taken over (queued durably, filed in the standby mailbox) and Postfix discards
it or drops those recipients, so it is delivered exactly once. A milter that does not answer never
costs mail: with `milter_default_action = tempfail` Postfix refuses the message temporarily (the
sender keeps it and retries), with `accept` it delivers without a copy.
"""

from __future__ import annotations

import smtplib
import socket
import threading
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from tests.support.primary import Primary
from tests.support.standby import Standby

from mailstandby.milter import codec
from mailstandby.milter.codec import Actions, Proto
from mailstandby.milter.session import WANTED

ADMIN_PW = "correct horse battery staple"


def message(to: list[str], subject: str, body: str = "") -> bytes:
    m = EmailMessage()
    m["From"] = "sender@ext.test"
    m["To"] = ", ".join(to)
    m["Subject"] = subject
    m["Message-ID"] = f"<{uuid.uuid4().hex}@ext.test>"
    m["Date"] = "Sun, 29 Nov 2026 08:00:00 +0000"
    m["X-Folded"] = "a header value long enough that it is folded over more than one line " * 2
    m.set_content(body or f"{subject}\n")
    return m.as_bytes(policy=SMTP)


def send(primary: Primary, to: list[str], raw: bytes) -> None:
    with smtplib.SMTP(primary.host, primary.smtp_port, timeout=60) as s:
        s.sendmail("sender@ext.test", to, raw)


def copies(standby: Standby, user: str, journaled: int) -> list[bytes]:
    return [body for body, j, _ in standby.mailbox(user, "INBOX") if j == journaled]


@pytest.fixture
def standby(tmp_path: Path, primary: Primary, request: pytest.FixtureRequest) -> Iterator[Standby]:
    mode = getattr(request, "param", "journal")
    # journal = off for the relay queue: the copies in these tests can only come from the milter
    s = Standby(
        tmp_path / "standby",
        primary_port=primary.smtp_port,
        milter={"listen": ["127.0.0.1:0"], "mode": mode},
        journal={"enabled": False},
    )
    with s:
        primary.set_milters(f"inet:127.0.0.1:{s.listeners['milter']}")
        yield s


def test_journal_copies_land_in_the_standby_before_postfix_answers(primary: Primary, standby: Standby) -> None:
    big = "".join(f"line {n:06d} of a body longer than one milter chunk\n" for n in range(3000))
    raw = message(["alice@corp.test", "bob@corp.test"], "journal me", big)
    send(primary, ["alice@corp.test", "bob@corp.test"], raw)

    # Postfix's 250 came after the milter's answer, which came after the copies were filed.
    for user in ("alice@corp.test", "bob@corp.test"):
        (copy,) = copies(standby, user, journaled=1)
        assert copy.startswith(b"Received: from ") and b"(mailstandby) with milter" in copy
        assert copy.endswith(raw), "the copy is the message as sent, behind our trace header"
        assert copies(standby, user, journaled=0) == []
    assert copies(standby, "carol@corp.test", journaled=1) == []
    assert len(primary.wait_for_messages("alice@corp.test", 1)) == 1
    assert len(primary.wait_for_messages("bob@corp.test", 1)) == 1
    assert standby.deliveries() == []  # nothing went through the queue


def test_several_messages_in_one_smtp_session_and_an_aborted_one(primary: Primary, standby: Standby) -> None:
    with smtplib.SMTP(primary.host, primary.smtp_port, timeout=60) as s:
        s.sendmail("sender@ext.test", ["alice@corp.test"], message(["alice@corp.test"], "first"))
        s.mail("sender@ext.test")
        s.rcpt("alice@corp.test")
        s.rset()  # Postfix sends ABORT: nothing of this one may be kept
        s.sendmail("sender@ext.test", ["alice@corp.test"], message(["alice@corp.test"], "second"))
    subjects = [
        next(ln for ln in c.splitlines() if ln.startswith(b"Subject:")) for c in copies(standby, "alice@corp.test", 1)
    ]
    assert subjects == [b"Subject: first", b"Subject: second"]
    assert len(primary.wait_for_messages("alice@corp.test", 2)) == 2


def test_concurrent_smtp_sessions_each_message_copied_once(primary: Primary, standby: Standby) -> None:
    def client(n: int) -> None:
        with smtplib.SMTP(primary.host, primary.smtp_port, timeout=60) as s:
            for i in range(5):
                s.sendmail("sender@ext.test", ["alice@corp.test"], message(["alice@corp.test"], f"msg {n}-{i}"))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    subjects = sorted(
        next(ln for ln in c.splitlines() if ln.startswith(b"Subject:")).decode()
        for c in copies(standby, "alice@corp.test", journaled=1)
    )
    assert subjects == sorted(f"Subject: msg {n}-{i}" for n in range(4) for i in range(5))
    assert len(primary.wait_for_messages("alice@corp.test", 20)) == 20


@pytest.mark.parametrize("standby", ["both"], indirect=True)
def test_during_an_outage_postfix_hands_the_mail_over_and_does_not_deliver_it(
    primary: Primary, standby: Standby
) -> None:
    standby.add_admin("admin", ADMIN_PW)
    done = standby.cli("failover", "--reason", "mailbox server down", password=ADMIN_PW)
    assert done.returncode == 0, done.stderr
    raw = message(["alice@corp.test"], "during the outage")
    send(primary, ["alice@corp.test"], raw)

    # Durable in our queue before Postfix discarded it; the queue files it in the standby mailbox.
    standby.wait_until(lambda: copies(standby, "alice@corp.test", journaled=0), 30, "the standby delivery")
    standby.wait_until(lambda: standby.queued() == [], 30, "an empty queue")
    (delivered,) = copies(standby, "alice@corp.test", journaled=0)
    assert delivered.endswith(raw)
    assert copies(standby, "alice@corp.test", journaled=1) == [], "taken over, not journaled"
    assert [d["state"] for d in standby.deliveries()] == ["delivered"]
    assert primary.queue_size() == 0
    assert primary.fetch_all("alice@corp.test") == [], "Postfix discarded its copy"
    assert "discard" in primary.maillog()


@pytest.mark.parametrize("standby", ["both"], indirect=True)
def test_mixed_recipients_postfix_drops_the_failed_over_ones_and_delivers_the_rest(
    primary: Primary, standby: Standby
) -> None:
    standby.add_admin("admin", ADMIN_PW)
    done = standby.cli("failover", "--reason", "bob's mailbox is down", "--user", "bob@corp.test", password=ADMIN_PW)
    assert done.returncode == 0, done.stderr
    raw = message(["alice@corp.test", "bob@corp.test"], "mixed")
    send(primary, ["alice@corp.test", "bob@corp.test"], raw)

    standby.wait_until(lambda: copies(standby, "bob@corp.test", journaled=0), 30, "bob's standby delivery")
    assert len(primary.wait_for_messages("alice@corp.test", 1)) == 1
    standby.wait_until(lambda: standby.queued() == [], 30, "an empty queue")
    assert [d["rcpt"] for d in standby.deliveries()] == ["bob@corp.test"]
    assert len(copies(standby, "bob@corp.test", journaled=0)) == 1
    assert copies(standby, "bob@corp.test", journaled=1) == []
    assert len(copies(standby, "alice@corp.test", journaled=1)) == 1, "alice still gets her journal copy"
    assert primary.queue_size() == 0
    assert primary.fetch_all("bob@corp.test") == [], "Postfix removed bob and delivered only alice"


def test_milter_down_with_tempfail_postfix_refuses_temporarily_and_loses_nothing(
    primary: Primary, standby: Standby
) -> None:
    standby.kill()
    raw = message(["alice@corp.test"], "while the milter is down")
    with pytest.raises(smtplib.SMTPException) as refused:
        send(primary, ["alice@corp.test"], raw)
    assert _code(refused.value) // 100 == 4, "a temporary refusal: the sender keeps the message"
    assert primary.queue_size() == 0 and primary.fetch_all("alice@corp.test") == []

    standby.start()  # back (on a new port): the sender's retry goes through, with its copy
    primary.set_milters(f"inet:127.0.0.1:{standby.listeners['milter']}")
    send(primary, ["alice@corp.test"], raw)
    assert len(copies(standby, "alice@corp.test", journaled=1)) == 1
    assert len(primary.wait_for_messages("alice@corp.test", 1)) == 1


def test_milter_killed_in_the_middle_of_a_message_tempfails_it(primary: Primary, standby: Standby) -> None:
    with smtplib.SMTP(primary.host, primary.smtp_port, timeout=60) as s:
        s.ehlo()
        assert s.mail("sender@ext.test")[0] == 250
        assert s.rcpt("alice@corp.test")[0] == 250
        s.putcmd("data")
        assert s.getreply()[0] == 354
        standby.kill()  # while the message is on its way
        s.send(message(["alice@corp.test"], "cut off") + b".\r\n")
        code, _ = s.getreply()
    assert code // 100 == 4
    assert primary.queue_size() == 0 and primary.fetch_all("alice@corp.test") == []


def test_milter_down_with_accept_postfix_delivers_without_a_copy(primary: Primary, standby: Standby) -> None:
    primary.set_milters(f"inet:127.0.0.1:{standby.listeners['milter']}", default_action="accept")
    standby.kill()
    send(primary, ["alice@corp.test"], message(["alice@corp.test"], "no copy"))
    assert len(primary.wait_for_messages("alice@corp.test", 1)) == 1
    assert standby.mailbox("alice@corp.test", "INBOX") == []


def _code(e: smtplib.SMTPException) -> int:
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        return next(iter(e.recipients.values()))[0]
    return int(getattr(e, "smtp_code", 0))


class EarlierMilter:
    """Another filter ahead of ours in `smtpd_milters`, deciding every message at end of body
    (`quarantine`, `reject` or `continue`)."""

    def __init__(self, verdict: str) -> None:
        self.verdict = verdict
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        reader = codec.PacketReader()
        with conn:
            while data := conn.recv(65536):
                for command, payload in reader.feed(data):
                    cmd = codec.decode(command, payload)
                    if isinstance(cmd, codec.OptNeg):
                        conn.sendall(codec.optneg_reply(6, Actions.QUARANTINE, (WANTED | Proto.NODATA) & cmd.protocol))
                    elif isinstance(cmd, codec.EndOfMessage):
                        conn.sendall(self._verdict())
                    elif isinstance(cmd, codec.Quit):
                        return

    def _verdict(self) -> bytes:
        if self.verdict == "quarantine":
            return codec.frame(ord("q"), b"held by the earlier filter\0") + codec.CONTINUE
        if self.verdict == "reject":
            return codec.REJECT
        return codec.CONTINUE

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("standby", ["both"], indirect=True)
def test_a_message_an_earlier_milter_quarantined_is_left_in_postfixs_hold_queue(
    primary: Primary, standby: Standby
) -> None:
    earlier = EarlierMilter("quarantine")
    try:
        primary.set_milters(f"inet:127.0.0.1:{earlier.port}, inet:127.0.0.1:{standby.listeners['milter']}")
        standby.add_admin("admin", ADMIN_PW)
        assert standby.cli("failover", "--reason", "outage", password=ADMIN_PW).returncode == 0
        send(primary, ["alice@corp.test"], message(["alice@corp.test"], "quarantined"))
        assert [m["queue_name"] for m in primary.queue()] == ["hold"], "Postfix holds it, as the filter asked"
        assert standby.deliveries() == [] and standby.mailbox("alice@corp.test", "INBOX") == []
    finally:
        earlier.close()


@pytest.mark.parametrize("standby", ["both"], indirect=True)
def test_a_message_an_earlier_milter_rejected_never_reaches_us(primary: Primary, standby: Standby) -> None:
    earlier = EarlierMilter("reject")
    try:
        primary.set_milters(f"inet:127.0.0.1:{earlier.port}, inet:127.0.0.1:{standby.listeners['milter']}")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(primary, ["alice@corp.test"], message(["alice@corp.test"], "rejected"))
        assert refused.value.smtp_code == 550
        assert standby.mailbox("alice@corp.test", "INBOX") == [] and primary.queue_size() == 0
    finally:
        earlier.close()


def test_mail_we_relay_to_postfix_ourselves_is_journaled_once(tmp_path: Path, primary: Primary) -> None:
    """mailstandby both in front of the primary (relay queue with journal on) and as its milter."""
    with Standby(
        tmp_path / "standby2", primary_port=primary.smtp_port, milter={"listen": ["127.0.0.1:0"], "mode": "both"}
    ) as standby:
        primary.set_milters(f"inet:127.0.0.1:{standby.listeners['milter']}")
        with smtplib.SMTP("127.0.0.1", standby.port, timeout=60) as s:
            s.sendmail("sender@ext.test", ["alice@corp.test"], message(["alice@corp.test"], "via the standby"))
        assert len(primary.wait_for_messages("alice@corp.test", 1)) == 1
        standby.wait_until(lambda: standby.queued() == [], 30, "the relay to finish")
        standby.wait_until(lambda: copies(standby, "alice@corp.test", journaled=1), 30, "the queue's journal copy")
        assert len(copies(standby, "alice@corp.test", journaled=1)) == 1
        assert "reason=relayed-by-standby" in standby.log()
