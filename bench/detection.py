"""How fast does mailstandby notice an outage, and the primary's return, with its default probe settings?

Sets up a private Postfix + Dovecot primary and a mailstandby in automatic
failover control with the default [monitor] settings, sends a message to a
user every 0.2 s, then:

- after the primary has been up longer than `min_dwell`, stops Postfix and
  measures the time until the first message is delivered into the standby
  mailbox (`detect_s`: probes + queue evidence + rerouting);
- starts Postfix and measures the time until the failover state is NORMAL
  again (`recover_s`: `up_after` good rounds, at least `min_dwell` after the
  outage was declared, then the failback).

Goal with the defaults: detect_s < 30. The last line is
`detect_s=<seconds> recover_s=<seconds>`.

    python bench/detection.py [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import smtplib
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.primary import Primary
from tests.support.standby import Standby

USER = "alice@corp.test"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="msb-detection-"))
    primary = Primary(work / "primary", users={USER: "pw-alice"})
    standby: Standby | None = None
    try:
        primary.start()
        # The [monitor] defaults are under test: only the control mode is set.
        standby = Standby(work / "standby", primary_port=primary.smtp_port, failover={"control": "automatic"})
        standby.start()
        stop = threading.Event()
        sender = threading.Thread(target=_load, args=(standby, stop), daemon=True)
        sender.start()
        try:
            # A primary that just came up may not be declared down again within min_dwell (30 s):
            # the measure is of an outage after a stable period, as in production.
            print("letting the primary be up for longer than min_dwell (35 s)", flush=True)
            time.sleep(35)
            print("stopping the primary's MTA", flush=True)
            primary.stop_smtp()
            stopped = time.monotonic()
            standby.wait_until(lambda: any(not j for _, j, _ in standby.mailbox(USER, "INBOX")), 120, "standby")
            detect = time.monotonic() - stopped
            print(f"first message delivered to the standby after {detect:.1f}s", flush=True)
            time.sleep(2)
            print("starting the primary's MTA", flush=True)
            primary.start_smtp()
            started = time.monotonic()
            standby.wait_until(lambda: standby.failover_state()["mode"] == "normal", 300, "failback")
            recover = time.monotonic() - started
            print(f"failover state NORMAL again after {recover:.1f}s", flush=True)
        finally:
            stop.set()
            sender.join(30)
        for t in standby.transitions():
            print(f"  {t['from_mode']} -> {t['to_mode']} by {t['actor']}: {t['reason']}")
    finally:
        if standby is not None:
            standby.kill()
        primary.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"detect_s={detect:.1f} recover_s={recover:.1f}")
    return 0


def _load(standby: Standby, stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        try:
            with smtplib.SMTP("127.0.0.1", standby.port, timeout=30) as s:
                s.sendmail("bench@ext.test", [USER], f"Subject: detection {n}\r\n\r\nmessage {n}\r\n".encode())
        except (smtplib.SMTPException, OSError):
            pass
        n += 1
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
