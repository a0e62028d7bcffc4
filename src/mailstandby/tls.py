"""Server TLS: one context for every listener, its certificate reloaded without a restart.

Protocols and ciphers follow Mozilla's "intermediate" profile (docs/security.md,
"TLS"): TLS 1.2 and 1.3 only; for TLS 1.2 only ECDHE/DHE key exchange with an AEAD
cipher (AES-GCM, ChaCha20-Poly1305), so no RC4, 3DES, NULL, EXPORT, anonymous,
static-RSA or CBC suite is offered. TLS 1.3's suites are all AEAD and stay as
OpenSSL offers them.

`CertificateReloader` owns the live context. On SIGHUP, and when the certificate or
key file changes (checked every `tls.reload_interval`), it loads the new pair into
a scratch context first; only a pair that loads there is loaded into the live one,
so a broken pair is refused with a `tls.reload-refused` log line and the previous
certificate stays in force. The live context is the same object the listeners
hold: new handshakes get the new certificate, established connections keep theirs.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailstandby.core.events import Event
from mailstandby.files import write_private

log = logging.getLogger(__name__)

# Mozilla server-side TLS, "intermediate" (version 5.7): the TLS 1.2 suites, in its order.
INTERMEDIATE_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-CHACHA20-POLY1305",
    ]
)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(INTERMEDIATE_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.load_cert_chain(cert, key)
    return ctx


FileStamp = tuple[int, int, int]  # (inode, size, mtime in ns)


def _stamp(path: Path) -> FileStamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class CertificateReloader:
    """The live server context for `cert`/`key`, reloaded on demand or when the files change."""

    def __init__(self, cert: Path, key: Path, *, workdir: Path) -> None:
        self.cert = cert
        self.key = key
        self.workdir = workdir  # private (0700): a reload's snapshot of the pair is written here, briefly
        self.context = server_context(cert, key)
        self._stamps = self._current()

    def _current(self) -> tuple[FileStamp | None, FileStamp | None]:
        return (_stamp(self.cert), _stamp(self.key))

    def reload(self, why: str) -> bool:
        """Load the pair now on disk into the live context; False (and the old pair kept) if it does not load."""
        self._stamps = self._current()
        try:
            self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
            with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
                # one snapshot of both files, read once: the scratch and the live load see the same bytes
                snapshot = Path(tmp) / "pair.pem"
                write_private(snapshot, self.cert.read_bytes() + b"\n" + self.key.read_bytes())
                server_context(snapshot, snapshot)  # raises on a broken or mismatched pair
                self.context.load_cert_chain(snapshot, snapshot)
        except (OSError, ssl.SSLError, ValueError) as e:
            log.error(
                "%s: %s: the certificate %s with key %s did not load (%s); still serving the previous one",
                Event.TLS_RELOAD_REFUSED,
                why,
                self.cert,
                self.key,
                e,
            )
            return False
        log.info("%s: %s: new connections get the certificate in %s", Event.TLS_RELOADED, why, self.cert)
        return True

    def changed(self) -> bool:
        return self._current() != self._stamps

    async def watch(self, interval: float) -> None:
        """Reload whenever the certificate or key file changes (checked every `interval` seconds)."""
        while True:
            await asyncio.sleep(interval)
            if self.changed():
                self.reload("the certificate or key file changed")


def ensure_self_signed(directory: Path, hostname: str) -> tuple[Path, Path]:
    """Create (once) a self-signed certificate for `hostname` under `directory`."""
    cert_path, key_path = directory / "selfsigned.crt", directory / "selfsigned.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    sans: list[x509.GeneralName] = [
        x509.DNSName(hostname),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_private(key_path, pem)
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    log.info("generated a self-signed certificate for %s in %s", hostname, directory)
    return cert_path, key_path
