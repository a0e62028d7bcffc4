"""A real directory server for tests: a private OpenLDAP slapd from the Debian package.

Everything it uses lives under one private directory: `slapd.conf` (no
cn=config of the machine's is read), the mdb data directory, the pid and args
files and its log. It listens on an ephemeral port on 127.0.0.1 only, so the
distribution's own slapd service (stopped or not) never interferes.

The schema is core + cosine + inetorgperson + nis + Debian's `msuser.schema`
(Active Directory's `user` class with `proxyAddresses`, `userPrincipalName`,
`userAccountControl`), plus `mailRecipient` with `mailAlternateAddress`
(Netscape/Sun mail schema, as OpenLDAP mail setups use it).

    with Slapd(tmp_path / "ldap") as ldap:
        ldap.add_ldif(ldif_text)
        conn = ldap.connect()   # ldap3, bound as the root DN
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import ldap3

SLAPD = shutil.which("slapd", path="/usr/sbin:/usr/bin:/sbin") or "/usr/sbin/slapd"
SLAPADD = shutil.which("slapadd", path="/usr/sbin:/usr/bin:/sbin") or "/usr/sbin/slapadd"
SCHEMA_DIR = Path("/etc/ldap/schema")

MAIL_SCHEMA = """\
attributetype ( 2.16.840.1.113730.3.1.13 NAME 'mailAlternateAddress'
    EQUALITY caseIgnoreIA5Match SUBSTR caseIgnoreIA5SubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{256} )
objectclass ( 2.16.840.1.113730.3.2.3 NAME 'mailRecipient' SUP top AUXILIARY
    MAY ( mail $ mailAlternateAddress ) )
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlapdError(RuntimeError):
    pass


class Slapd:
    suffix = "dc=corp,dc=test"
    admin_dn = "cn=admin,dc=corp,dc=test"

    def __init__(self, root: Path, *, tls: tuple[Path, Path] | None = None) -> None:
        """`tls`: (certificate chain, key) PEM files; with it slapd also offers StartTLS and ldaps://."""
        self.root = root
        self.tls = tls
        self.tls_port = 0
        self.data = root / "data"
        self.conf = root / "slapd.conf"
        self.log_path = root / "slapd.log"
        self.admin_password = "admin-secret-" + os.urandom(4).hex()
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(exist_ok=True)
        (root / "mail.schema").write_text(MAIL_SCHEMA)
        self.conf.write_text(self._config())
        self._base_loaded = False

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        assert self.tls is not None
        return f"ldaps://127.0.0.1:{self.tls_port}"

    def _config(self) -> str:
        includes = [SCHEMA_DIR / f"{n}.schema" for n in ("core", "cosine", "inetorgperson", "nis", "msuser")]
        lines = [f"include {p}" for p in [*includes, self.root / "mail.schema"]]
        lines += [
            "modulepath /usr/lib/ldap",
            "moduleload back_mdb",
            f"pidfile {self.root / 'slapd.pid'}",
            f"argsfile {self.root / 'slapd.args'}",
            # lower than the test trees: a plain search stops at 50 entries, a paged one sees them all
            "sizelimit size.soft=50 size.hard=50 size.prtotal=unlimited",
            *(
                [f"TLSCertificateFile {self.tls[0]}", f"TLSCertificateKeyFile {self.tls[1]}"]
                if self.tls is not None
                else []
            ),
            "database mdb",
            f'suffix "{self.suffix}"',
            f'rootdn "{self.admin_dn}"',
            f"rootpw {self.admin_password}",
            f"directory {self.data}",
            "maxsize 104857600",
            "index objectClass eq",
        ]
        return "\n".join(lines) + "\n"

    def load_ldif(self, text: str) -> None:
        """slapadd while stopped: the fast way to a large initial tree."""
        assert self.proc is None, "slapadd needs slapd stopped"
        path = self.root / "load.ldif"
        path.write_text(text)
        r = subprocess.run([SLAPADD, "-f", str(self.conf), "-l", str(path)], capture_output=True, text=True)
        if r.returncode:
            raise SlapdError(f"slapadd failed ({r.returncode}):\n{r.stderr[-3000:]}")

    def start(self, timeout: float = 15) -> None:
        for _attempt in range(3):
            self.port = _free_port()
            urls = f"ldap://127.0.0.1:{self.port}/"
            if self.tls is not None:
                self.tls_port = _free_port()
                urls += f" ldaps://127.0.0.1:{self.tls_port}/"
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    [SLAPD, "-f", str(self.conf), "-h", urls, "-d", "0"],
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5):
                    return
                time.sleep(0.05)
            self.stop()
        raise SlapdError(f"slapd did not start:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def connect(self) -> ldap3.Connection:
        """An ldap3 connection bound as the root DN (for changing entries in tests)."""
        server = ldap3.Server("127.0.0.1", port=self.port, get_info=ldap3.NONE)
        return ldap3.Connection(server, self.admin_dn, self.admin_password, auto_bind=True, raise_exceptions=True)

    def ldapmodify(self, ldif: str) -> None:
        """Apply an LDIF change record with the ldap-utils `ldapmodify`, as an administrator would."""
        r = subprocess.run(
            ["ldapmodify", "-x", "-H", self.url, "-D", self.admin_dn, "-w", self.admin_password],
            input=ldif,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if r.returncode:
            raise SlapdError(f"ldapmodify failed ({r.returncode}): {r.stderr}")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
