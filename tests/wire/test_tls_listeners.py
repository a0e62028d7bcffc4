"""Every TLS listener of a running mailstandby, scanned by testssl.sh (Debian's `testssl.sh`), and its certificate
reloaded without a restart (RELIABILITY T3, docs/reliability.md;
docs/security.md, "TLS").

The scan asks each listener (SMTP and submission STARTTLS, implicit-TLS submission, IMAP and POP3 with
STARTTLS/STLS and implicit TLS, admin HTTPS) which protocols and cipher categories it accepts and which
certificates it serves: nothing below TLS 1.2, no NULL, anonymous, EXPORT, LOW (DES, RC2, RC4), 3DES/IDEA or
CBC suite (Mozilla "intermediate"), and the whole chain (leaf and intermediate) served, trusted up to the root.

The reload tests read the certificate each listener serves with Python's ssl client before and after the
files change: new connections get the new one, an established session goes on, a broken pair is refused
with a `tls.reload-refused` log line and the previous certificate kept.
"""

from __future__ import annotations

import contextlib
import imaplib
import json
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import trustme
from tests.support.standby import Standby

pytestmark = pytest.mark.timeout(900)

TIMEOUT = 30.0
PASSWORD = "tls-reload-pw-1"
# listener name in listeners.json -> testssl's --starttls protocol ("" for implicit TLS)
LISTENERS = {
    "smtp": "smtp",
    "submission": "smtp",
    "submissions": "",
    "imap": "imap",
    "imaps": "",
    "pop3": "pop3",
    "pop3s": "",
    "admin": "",
}
NOT_OFFERED = [
    "SSLv2",
    "SSLv3",
    "TLS1",
    "TLS1_1",
    "cipherlist_NULL",
    "cipherlist_aNULL",
    "cipherlist_EXPORT",
    "cipherlist_LOW",
    "cipherlist_3DES_IDEA",
    "cipherlist_AVERAGE",  # testssl: "Obsolete CBC ciphers (AES, ARIA etc.)"
]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_pair(cert: trustme.LeafCert, root: Path, *, key_of: trustme.LeafCert | None = None) -> None:
    """The chain (leaf first) and the key, each replaced in one rename, as a certificate tool would."""
    chain = b"".join(pem.bytes() for pem in cert.cert_chain_pems)
    key = (key_of or cert).private_key_pem.bytes()
    for name, data in (("cert.pem", chain), ("key.pem", key)):
        tmp = root / (name + ".new")
        tmp.write_bytes(data)
        os.replace(tmp, root / name)


def leaf_der(cert: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())


def standby_with(root: Path, cert: trustme.LeafCert, **tls: object) -> Standby:
    root.mkdir(parents=True, exist_ok=True)
    write_pair(cert, root)
    both = {"listen": ["127.0.0.1:0"], "listen_tls": ["127.0.0.1:0"], "allow_plaintext_auth_on_loopback": True}
    return Standby(
        root / "standby",
        primary_port=closed_port(),
        tls={"cert": str(root / "cert.pem"), "key": str(root / "key.pem"), **tls},
        submission={"listen": ["127.0.0.1:0"], "listen_tls": ["127.0.0.1:0"]},
        imap=dict(both),
        pop3=dict(both),
    )


# -- the scan ----------------------------------------------------------------------------------------------


def scan(port: int, starttls: str, ca: Path, out: Path) -> dict[str, str]:
    """testssl.sh's protocol, cipher-category and server-default checks; finding by id."""
    assert shutil.which("testssl"), "testssl.sh is not installed (scripts/test.sh installs it)"
    command = ["testssl", "--quiet", "--color", "0", "--warnings", "off", "--ip", "one", "--add-ca", str(ca)]
    command += ["--protocols", "--std", "--server-defaults", "--jsonfile", str(out)]
    if starttls:
        command += ["--starttls", starttls]
    done = subprocess.run([*command, f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=600)
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return {f["id"]: f["finding"] for f in json.loads(out.read_text())}


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, str]]]:
    root = tmp_path_factory.mktemp("tls-scan")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(root / "root.pem"))
    cert = ca.create_child_ca().issue_cert("127.0.0.1", "localhost")  # served: leaf + intermediate
    # two scans at a time: each makes hundreds of handshakes, and the machine has two cores
    with standby_with(root, cert) as standby, ThreadPoolExecutor(2) as pool:
        futures = {
            name: pool.submit(scan, standby.listeners[name], proto, root / "root.pem", root / f"{name}.json")
            for name, proto in LISTENERS.items()
        }
        yield {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("listener", LISTENERS)
def test_only_tls_1_2_and_1_3_and_no_weak_cipher(scans: dict[str, dict[str, str]], listener: str) -> None:
    found = scans[listener]
    assert found["TLS1_2"] == "offered" and found["TLS1_3"].startswith("offered"), found
    offered = {check: found[check] for check in NOT_OFFERED if found[check] != "not offered"}
    assert offered == {}, offered


@pytest.mark.parametrize("listener", LISTENERS)
def test_the_whole_chain_is_served(scans: dict[str, dict[str, str]], listener: str) -> None:
    found = scans[listener]
    assert found["certs_countServer"] == "2", found  # the leaf and the intermediate
    assert found["cert_chain_of_trust"].startswith("passed"), found
    assert found["cert_trust"].startswith("Ok"), found


# -- reload without restart --------------------------------------------------------------------------------


def any_certificate() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # we only read what is served
    return context


def served_implicit(port: int) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        any_certificate().wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def served_starttls(port: int) -> bytes:
    with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
        client.starttls(context=any_certificate())
        assert isinstance(client.sock, ssl.SSLSocket)
        der = client.sock.getpeercert(binary_form=True)
    assert der is not None
    return der


def served(standby: Standby) -> set[bytes]:
    """What new connections get on an implicit-TLS, a STARTTLS and the admin listener."""
    return {
        served_implicit(standby.listeners["imaps"]),
        served_starttls(standby.listeners["smtp"]),
        served_implicit(standby.listeners["admin"]),
    }


def logged(standby: Standby, before: int, event: str) -> bool:
    return any(event in line for line in standby.log_lines()[before:])


@contextlib.contextmanager
def logged_in_imaps(standby: Standby) -> Iterator[imaplib.IMAP4_SSL]:
    client = imaplib.IMAP4_SSL("127.0.0.1", standby.listeners["imaps"], ssl_context=any_certificate(), timeout=30)
    client.login("alice@corp.test", PASSWORD)
    try:
        yield client
    finally:
        client.logout()


def test_sighup_reloads_and_a_broken_pair_is_refused(tmp_path: Path) -> None:
    ca = trustme.CA()
    first, second, third = (ca.issue_cert("127.0.0.1") for _ in range(3))
    standby = standby_with(tmp_path, first, reload_interval=3600.0)  # only the signal reloads here
    standby.set_password("alice@corp.test", PASSWORD)
    with standby, logged_in_imaps(standby) as established:
        assert served(standby) == {leaf_der(first)}
        write_pair(second, tmp_path)
        before = len(standby.log_lines())
        assert standby.proc is not None
        standby.proc.send_signal(signal.SIGHUP)
        standby.wait_until(lambda: served(standby) == {leaf_der(second)}, what="the new certificate served")
        assert logged(standby, before, "tls.reloaded")
        # the session from before the reload goes on, on the certificate it began with
        assert established.noop()[0] == "OK"
        assert established.sock.getpeercert(binary_form=True) == leaf_der(first)

        write_pair(third, tmp_path, key_of=second)  # a certificate with someone else's key
        before = len(standby.log_lines())
        standby.proc.send_signal(signal.SIGHUP)
        standby.wait_until(lambda: logged(standby, before, "tls.reload-refused"), what="the refusal logged")
        assert served(standby) == {leaf_der(second)}
        assert established.noop()[0] == "OK"


def test_changed_files_are_picked_up_and_garbage_is_refused(tmp_path: Path) -> None:
    ca = trustme.CA()
    first, second = ca.issue_cert("127.0.0.1"), ca.issue_cert("127.0.0.1")
    standby = standby_with(tmp_path, first, reload_interval=0.2)
    with standby:
        assert served(standby) == {leaf_der(first)}
        before = len(standby.log_lines())
        (tmp_path / "cert.pem").write_text("not a certificate\n")
        standby.wait_until(lambda: logged(standby, before, "tls.reload-refused"), what="the refusal logged")
        assert served(standby) == {leaf_der(first)}  # still the previous one, and still serving
        write_pair(second, tmp_path)
        standby.wait_until(lambda: served(standby) == {leaf_der(second)}, what="the new certificate served")
        assert standby.proc is not None and standby.proc.poll() is None
