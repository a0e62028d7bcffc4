"""Slowloris against a running mailstandby: a request trickled below the minimum data rate is closed with the
protocol's own timeout reply and a `listener.too-slow` log line (RELIABILITY X1, docs/reliability.md;
docs/security.md, "Slowloris").

One server for the module, with a 2-second rate window and a minimum of 32 bytes per second, so that a client
sending a byte every 0.2 s (5 bytes per second) is well below it and one sending 200 bytes every 0.1 s well
above (it would have to stall for a whole window to fall below). Each trickled request is long enough that it
would take several windows to complete. A quiet session between commands, and IMAP IDLE, are left to the
idle timeouts: they outlive several windows. The admin listener's HTTP request deadlines (`header_timeout`,
`body_timeout`) are absolute, so a trickle does not extend them.
"""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import socket
import time
from collections.abc import Iterator

import pytest
from tests.support.standby import Standby

PASSWORD = "slow-client-pw-1"
WINDOW = 2.0
RATE = {"min_data_rate": 32, "data_rate_window": WINDOW}
TIMEOUT = 30.0
TRICKLE_PAUSE = 0.2  # one byte per pause: 5 bytes per second, far below RATE


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def standby(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standby]:
    loopback = {"listen": ["127.0.0.1:0"], "allow_plaintext_auth_on_loopback": True, **RATE}
    s = Standby(
        tmp_path_factory.mktemp("slow") / "standby",
        primary_port=closed_port(),
        smtp=dict(RATE),
        imap=dict(loopback),
        pop3=dict(loopback),
        admin={"tls": False, "header_timeout": 2.0},
    )
    s.set_password("alice@corp.test", PASSWORD)
    with s:
        yield s


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return sock


def read_line(sock: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        line += chunk
    return line


def trickle(sock: socket.socket, data: bytes) -> bytes:
    """Send `data` a byte at a time until the server speaks or closes; then everything it said until it closed."""
    sock.setblocking(False)
    try:
        for i in range(len(data)):
            try:
                sock.send(data[i : i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(TRICKLE_PAUSE)
            try:
                first = sock.recv(4096)
            except BlockingIOError:
                continue
            return first + rest(sock)
        return rest(sock)
    finally:
        sock.close()


def rest(sock: socket.socket) -> bytes:
    """Read until the server closes."""
    sock.setblocking(True)
    sock.settimeout(TIMEOUT)
    out = b""
    try:
        while chunk := sock.recv(4096):
            out += chunk
    except ConnectionResetError:
        pass
    return out


def too_slow_logged(standby: Standby, before: int) -> None:
    standby.wait_until(
        lambda: any("listener.too-slow" in line for line in standby.log_lines()[before:]), what="too-slow log line"
    )


def test_smtp_command_line_trickled_gets_421(standby: Standby) -> None:
    before = len(standby.log_lines())
    sock = connect(standby.listeners["smtp"])
    assert read_line(sock).startswith(b"220 ")
    said = trickle(sock, b"EHLO slow.example.test\r\n" * 4)
    assert said.startswith(b"421 ") and b"timeout" in said, said  # before EHLO: no enhanced code (RFC 2034 §3)
    too_slow_logged(standby, before)


def test_smtp_data_trickled_gets_421_and_nothing_is_stored(standby: Standby) -> None:
    before = len(standby.log_lines())
    sock = connect(standby.listeners["smtp"])
    assert read_line(sock).startswith(b"220 ")
    sock.sendall(b"EHLO slow.example.test\r\n")
    while not read_line(sock).startswith(b"250 "):
        pass
    sock.sendall(b"MAIL FROM:<s@example.test>\r\nRCPT TO:<bob@corp.test>\r\nDATA\r\n")
    replies = [read_line(sock) for _ in range(3)]
    assert replies[-1].startswith(b"354 "), replies
    said = trickle(sock, b"Subject: slow\r\n\r\n" + b"x" * 200 + b"\r\n.\r\n")
    assert said.startswith(b"421 4.4.2 "), said
    too_slow_logged(standby, before)
    assert standby.deliveries() == []


def test_smtp_data_above_the_rate_is_accepted(standby: Standby) -> None:
    """Many windows long, but each well above the minimum: accepted."""
    with smtplib.SMTP(*standby.address, timeout=TIMEOUT) as client:
        client.ehlo()
        client.mail("s@example.test")
        client.rcpt("carol@corp.test")
        client.putcmd("data")
        assert client.getreply()[0] == 354
        assert client.sock is not None
        for _ in range(50):  # 5 s at about 2,000 bytes per second
            client.sock.sendall(b"y" * 198 + b"\r\n")
            time.sleep(0.1)
        client.sock.sendall(b".\r\n")
        assert client.getreply()[0] == 250


def test_imap_command_trickled_gets_bye(standby: Standby) -> None:
    before = len(standby.log_lines())
    sock = connect(standby.listeners["imap"])
    assert read_line(sock).startswith(b"* OK")
    said = trickle(sock, b"a1 LOGIN alice@corp.test " + PASSWORD.encode() + b"\r\n")
    assert said.startswith(b"* BYE "), said
    too_slow_logged(standby, before)


def test_imap_append_literal_trickled_gets_bye(standby: Standby) -> None:
    before = len(standby.log_lines())
    sock = connect(standby.listeners["imap"])
    assert read_line(sock).startswith(b"* OK")
    sock.sendall(b"a1 LOGIN alice@corp.test " + PASSWORD.encode() + b"\r\n")
    while not read_line(sock).startswith(b"a1 "):
        pass
    body = b"Subject: slow\r\n\r\n" + b"z" * 100 + b"\r\n"
    sock.sendall(b"a2 APPEND INBOX {%d}\r\n" % len(body))
    assert read_line(sock).startswith(b"+ ")
    said = trickle(sock, body)
    assert said.startswith(b"* BYE "), said
    too_slow_logged(standby, before)


def test_imap_idle_and_a_quiet_session_outlive_the_rate_window(standby: Standby) -> None:
    client = imaplib.IMAP4("127.0.0.1", standby.listeners["imap"], timeout=TIMEOUT)
    client.login("alice@corp.test", PASSWORD)
    client.select("INBOX")
    time.sleep(3 * WINDOW)  # quiet between commands
    assert client.noop()[0] == "OK"
    tag = client._new_tag().decode()  # type: ignore[attr-defined]
    client.send(f"{tag} IDLE\r\n".encode())
    assert client.readline().startswith(b"+ ")
    time.sleep(3 * WINDOW)  # idling: no request under way
    client.send(b"DONE\r\n")
    while not (line := client.readline()).startswith(tag.encode()):
        assert line.startswith(b"* "), line
    assert b" OK " in line, line
    client.logout()


def test_pop3_command_trickled_gets_err(standby: Standby) -> None:
    before = len(standby.log_lines())
    sock = connect(standby.listeners["pop3"])
    assert read_line(sock).startswith(b"+OK")
    said = trickle(sock, b"USER " + b"a" * 150 + b"@corp.test\r\n")  # under POP3's 255-octet line
    assert said.startswith(b"-ERR "), said
    too_slow_logged(standby, before)


def test_pop3_quiet_session_outlives_the_rate_window(standby: Standby) -> None:
    client = poplib.POP3("127.0.0.1", standby.listeners["pop3"], timeout=TIMEOUT)
    client.user("alice@corp.test")
    client.pass_(PASSWORD)
    time.sleep(3 * WINDOW)
    assert client.noop().startswith(b"+OK")
    client.quit()


def test_admin_request_trickled_is_closed_at_its_deadline(standby: Standby) -> None:
    """Each byte arrives well within any per-read timeout; the header deadline is for the whole head."""
    before = len(standby.log_lines())
    sock = connect(standby.listeners["admin"])
    said = trickle(sock, b"GET /healthz HTTP/1.1\r\nHost: standby\r\n" + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n")
    assert said.startswith(b"HTTP/1.1 408 "), said
    standby.wait_until(
        lambda: any("did not send the request headers in time" in line for line in standby.log_lines()[before:]),
        what="admin deadline log line",
    )
