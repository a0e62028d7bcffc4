"""A private BIND 9 authoritative server for tests: one zone that accepts TSIG-signed updates.

`Bind(root, zone="corp.test")` writes named.conf, a TSIG key and the zone
(MX 10 mail.corp.test., A for mail. and standby.) under `root`, and starts
`named -f` on 127.0.0.1 with an ephemeral port (UDP and TCP). `dig(name, type)`
asks it directly. The machine's own BIND configuration is never touched.

`extra_zones={"ext.test": "@ IN MX 10 mx\nmx IN A 127.0.0.1\n"}` serves more
zones (read-only) beside it: each gets an SOA, NS and `ns1 A 127.0.0.1`, then
the records given, so tests can give other domains MX records to resolve.
"""

from __future__ import annotations

import base64
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

NAMED = shutil.which("named") or "/usr/sbin/named"
DIG = shutil.which("dig") or "/usr/bin/dig"
KEY_NAME = "mailstandby-update"


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port for named")


class Bind:
    host = "127.0.0.1"

    def __init__(self, root: Path, zone: str = "corp.test", extra_zones: dict[str, str] | None = None) -> None:
        self.artifacts = Path(root)  # the log and config are copied here at stop
        # named drops to user `bind`, which cannot enter pytest's private tmp tree: live under /tmp.
        self.root = Path(tempfile.mkdtemp(prefix="msb-bind-"))
        self.zone = zone
        self.extra_zones = dict(extra_zones or {})
        self.secret = base64.b64encode(secrets.token_bytes(32)).decode()
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.root / "named.log"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_secret(self, path: Path, secret: str | None = None) -> Path:
        path.write_text((secret or self.secret) + "\n")
        return path

    def start(self) -> None:
        os.chmod(self.root, 0o755)
        bind_user = pwd.getpwnam("bind")
        self.port = _free_port()
        zone_file = self.root / f"{self.zone}.zone"
        zone_file.write_text(
            f"""$TTL 3600
@       IN SOA  ns1.{self.zone}. hostmaster.{self.zone}. ( 1 3600 600 86400 300 )
        IN NS   ns1.{self.zone}.
        IN MX   10 mail.{self.zone}.
ns1     IN A    127.0.0.1
mail    IN A    192.0.2.25
standby IN A    192.0.2.26
"""
        )
        (self.root / "named.conf").write_text(
            f"""key "{KEY_NAME}" {{ algorithm hmac-sha256; secret "{self.secret}"; }};
options {{
    directory "{self.root}";
    pid-file "{self.root}/named.pid";
    session-keyfile "{self.root}/session.key";
    listen-on port {self.port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
}};
zone "{self.zone}" {{
    type primary;
    file "{zone_file}";
    allow-update {{ key "{KEY_NAME}"; }};
}};
"""
            + "".join(self._extra_zone(name, records) for name, records in self.extra_zones.items())
        )
        for path in [self.root, *self.root.iterdir()]:
            os.chown(path, bind_user.pw_uid, bind_user.pw_gid)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [NAMED, "-f", "-u", "bind", "-c", str(self.root / "named.conf"), "-n", "1"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"named exited: {self.log.read_text()[-3000:]}")
            if self.dig(self.zone, "SOA") and all(self.dig(name, "SOA") for name in self.extra_zones):
                return
            time.sleep(0.1)
        raise RuntimeError(f"named did not answer: {self.log.read_text()[-3000:]}")

    def _extra_zone(self, name: str, records: str) -> str:
        """Write a read-only zone `name` holding `records`; its named.conf clause."""
        path = self.root / f"{name}.zone"
        path.write_text(
            f"""$TTL 3600
$ORIGIN {name}.
@       IN SOA  ns1.{name}. hostmaster.{name}. ( 1 3600 600 86400 300 )
        IN NS   ns1.{name}.
ns1     IN A    127.0.0.1
{records}
"""
        )
        return f'zone "{name}" {{\n    type primary;\n    file "{path}";\n}};\n'

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        for name in ("named.log", "named.conf"):
            if (self.root / name).exists():
                shutil.copy(self.root / name, self.artifacts / name)
        shutil.rmtree(self.root, ignore_errors=True)

    def dig(self, name: str, rdtype: str) -> list[str]:
        """The answer's records (short form), asking this server directly."""
        done = subprocess.run(
            [DIG, "+short", "+norecurse", "+time=2", "+tries=1", "-p", str(self.port), "@127.0.0.1", name, rdtype],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if done.returncode != 0:
            return []
        return sorted(line.strip() for line in done.stdout.splitlines() if line.strip())
