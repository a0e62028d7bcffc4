"""How fast does mailstandby notice an outage, and the primary's return, with its default [monitor]
settings; does a flapping primary stay one outage; does the rotation keep to its rate?

Sets up a private Postfix + Dovecot primary and mailstandby in automatic failover control with the
default [monitor] settings (only the control mode is set), then, each with a fresh standby:

1. steady mail (a message every 0.2 s): stops Postfix and measures the time until the first message
   is delivered into a standby mailbox (`detect_s`: probes, queue evidence, rerouting); starts
   Postfix and measures the time until the failover state is NORMAL again (`recover_s`: `up_after`
   good rounds lasting `min_dwell` plus the flap penalty of one outage, then the failback sync);
2. no mail at all: waits for a probe round to finish (the worst phase), stops Postfix and measures
   the time until the outage is recorded, the moment routing follows it (`detect_idle_s`), then
   checks that a message sent now lands in the standby; goal: under 15 s;
3. a primary down 20 s of every minute (a proxy in front of Postfix) for `--flap-minutes`:
   `flaps` is the number of outages declared (goal: at most 1);
4. a primary that refuses every other connection (the same proxy) for `--alternate-minutes`: no
   transition and no notice may follow (`alternate_changes`, their number: goal 0);
5. `--users` directory users (10,000 by default) probed in rotation against a primary that logs
   every RCPT TO: every address asked once within one rotation period, and never more RCPTs in a
   second than `rotation_rate` (counted at the primary's log).

The last line is `detect_s=<s> detect_idle_s=<s> recover_s=<s> flaps=<n>`.

    sudo PYTHONPATH=$PWD/src python bench/detection.py [--only steady,idle,flap,rotation] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import smtplib
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.harness import BenchError, run_in_workdir  # noqa: E402
from tests.support.primary import Primary, PrimaryError  # noqa: E402
from tests.support.proxy import GatedProxy  # noqa: E402
from tests.support.standby import Standby  # noqa: E402

from mailstandby.config import MonitorSettings  # noqa: E402

USER = "alice@corp.test"
ADMIN_PW = "bench admin password"
AUTOMATIC = {"failover": {"control": "automatic"}}  # the [monitor] defaults are under test


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="steady,idle,flap,alternate,rotation", help="scenarios to run (comma separated)")
    p.add_argument("--flap-minutes", type=float, default=5.0, help="how long the primary flaps")
    p.add_argument("--alternate-minutes", type=float, default=5.0, help="how long every other connection is refused")
    p.add_argument("--users", type=int, default=10_000, help="directory users for the rotation")
    p.add_argument("--tmpdir", default=None, help="where the work directory goes")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p.parse_args(argv)


@contextlib.contextmanager
def standby_for(root: Path, port: int, extra: str = "", **sections: dict[str, Any]) -> Iterator[Standby]:
    standby = Standby(root, primary_port=port, **(AUTOMATIC | sections))
    if extra:
        standby.config_path.write_text(standby.config_path.read_text() + "\n" + extra)
    standby.start(timeout=120)
    try:
        standby.add_admin("admin", ADMIN_PW)
        yield standby
    finally:
        standby.kill()


def primary_up(standby: Standby) -> dict[str, Any]:
    with standby.api(password=ADMIN_PW) as api:
        return dict(api.get("/api/v1/status").json()["health"])


def in_standby(standby: Standby, user: str) -> int:
    return sum(1 for _, journaled, _ in standby.mailbox(user, "INBOX") if not journaled)


def send(standby: Standby, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", standby.port, timeout=30) as s:
        s.sendmail("bench@ext.test", [USER], f"Subject: {subject}\r\n\r\n{subject}\r\n".encode())


def steady(root: Path, primary: Primary) -> tuple[float, float]:
    with standby_for(root / "steady", primary.smtp_port) as standby:
        standby.wait_until(lambda: primary_up(standby)["primary"]["status"] == "up", 60, "the primary up")
        stop = threading.Event()
        sender = threading.Thread(target=_load, args=(standby, stop), daemon=True)
        sender.start()
        try:
            time.sleep(5)
            print("steady: stopping the primary's MTA", flush=True)
            primary.stop_smtp()
            stopped = time.monotonic()
            standby.wait_until(lambda: in_standby(standby, USER) > 0, 120, "mail in the standby")
            detect = time.monotonic() - stopped
            print(f"steady: first message delivered to the standby after {detect:.1f}s", flush=True)
            time.sleep(2)
            primary.start_smtp()
            started = time.monotonic()
            standby.wait_until(lambda: standby.failover_state()["mode"] == "normal", 600, "failback")
            recover = time.monotonic() - started
            print(f"steady: failover state NORMAL again after {recover:.1f}s", flush=True)
        finally:
            stop.set()
            sender.join(30)
        _transitions(standby)
    return detect, recover


def idle(root: Path, primary: Primary) -> float:
    with standby_for(root / "idle", primary.smtp_port) as standby:
        standby.wait_until(lambda: primary_up(standby)["primary"]["status"] == "up", 60, "the primary up")
        rounds = primary_up(standby)["rounds"]
        standby.wait_until(lambda: primary_up(standby)["rounds"] > rounds, 60, "a round to finish")
        print("idle: a round has just finished; stopping the primary's MTA", flush=True)
        primary.stop_smtp()
        stopped = time.monotonic()
        standby.wait_until(lambda: standby.failover_state()["mode"] == "failed-over", 120, "the outage")
        detect = time.monotonic() - stopped
        print(f"idle: outage recorded (routing follows it) after {detect:.1f}s", flush=True)
        send(standby, "after the outage was declared")
        standby.wait_until(lambda: in_standby(standby, USER) == 1, 60, "the message in the standby")
        print(f"idle: a message sent then is in the standby {time.monotonic() - stopped:.1f}s after the stop")
        _transitions(standby)
        primary.start_smtp()
    return detect


def flapping(root: Path, primary: Primary, minutes: float) -> int:
    def gate(_n: int, t: float) -> bool:
        return t < 60 or t % 60 >= 20  # up for a minute, then down 20 s of every minute

    proxy = GatedProxy(primary.smtp_port, gate)
    try:
        with standby_for(root / "flap", proxy.port) as standby:
            print(f"flap: the primary is down 20 s of every minute for {minutes:g} minutes", flush=True)
            end = proxy.started + 60 + minutes * 60
            while time.monotonic() < end:
                time.sleep(5)
            status = primary_up(standby)["primary"]
            print(f"flap: primary {status['status']}, outages {status['outages']}, hold {status['hold']:.0f}s")
            transitions = _transitions(standby)
    finally:
        proxy.close()
    return sum(1 for t in transitions if t["from_mode"] == "normal" and t["to_mode"] == "failed-over")


def alternate(root: Path, primary: Primary, minutes: float) -> int:
    proxy = GatedProxy(primary.smtp_port, lambda n, _t: n % 2 == 0)
    try:
        with standby_for(root / "alternate", proxy.port) as standby:
            print(f"alternate: the primary refuses every other connection for {minutes:g} minutes", flush=True)
            end = time.monotonic() + minutes * 60
            while time.monotonic() < end:
                time.sleep(5)
            status = primary_up(standby)
            transitions = _transitions(standby)
            with standby.api(password=ADMIN_PW) as api:
                notices = api.get("/api/v1/notifications").json()
    finally:
        proxy.close()
    print(
        f"alternate: primary {status['primary']['status']} after {status['rounds']} rounds, "
        f"{proxy.refused} connections refused, {len(transitions)} transitions, {len(notices)} notices"
    )
    return len(transitions) + len(notices)


def rotation(root: Path, users: int) -> None:
    settings = MonitorSettings()
    addresses = [f"user{i:05d}@corp.test" for i in range(users)]
    big = Primary(root / "big-primary", users=dict.fromkeys(addresses, "pw"), log_recipients=True)
    big.start()
    try:
        extra = "".join(f'[[directory.users]]\naddress = "{a}"\n\n' for a in addresses)
        started = time.monotonic()
        with standby_for(root / "rotation", big.smtp_port, extra) as standby:
            print(
                f"rotation: {users} directory users, period {settings.rotation_period:g}s, "
                f"at most {settings.rotation_rate:g} RCPT/s",
                flush=True,
            )
            wanted, deadline = set(addresses), started + settings.rotation_period * 3
            while not wanted <= {a for _, a in big.logged_recipients()}:
                if time.monotonic() > deadline:
                    raise BenchError("not every directory address was asked within three rotation periods")
                time.sleep(2)  # the log is read whole: not too often
            took = time.monotonic() - started
            asked = big.logged_recipients()
            counts = primary_up(standby)["counts"]
    finally:
        big.close()
    per_second = Counter(int(at) for at, _ in asked)
    peak = max(per_second.values())
    print(
        f"rotation: every address asked within {took:.0f}s of start ({len(asked)} RCPTs logged), "
        f"peak {peak} RCPT in one second of the primary's log, addresses by status {counts}"
    )
    if peak > settings.rotation_rate + 1:
        raise BenchError(f"the rotation exceeded its rate: {peak} RCPT in one second")


def _transitions(standby: Standby) -> list[dict[str, Any]]:
    transitions = standby.transitions()
    for t in transitions:
        print(f"  {t['from_mode']} -> {t['to_mode']} by {t['actor']}: {t['reason']}")
    return transitions


def _load(standby: Standby, stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        with contextlib.suppress(smtplib.SMTPException, OSError):
            send(standby, f"detection {n}")
        n += 1
        time.sleep(0.2)


def run(args: argparse.Namespace, root: Path) -> int:
    only = set(args.only.split(","))
    detect = detect_idle = recover = float("nan")
    flaps = alternate_changes = -1
    primary = Primary(root / "primary", users={USER: "pw-alice"})
    primary.start()
    try:
        if "steady" in only:
            detect, recover = steady(root, primary)
        if "idle" in only:
            detect_idle = idle(root, primary)
        if "flap" in only:
            flaps = flapping(root, primary, args.flap_minutes)
        if "alternate" in only:
            alternate_changes = alternate(root, primary, args.alternate_minutes)
    finally:
        primary.close()
    if "rotation" in only:
        rotation(root, args.users)
    ok = not detect_idle >= 15 and flaps <= 1 and alternate_changes <= 0
    print(
        f"goals {'met' if ok else 'MISSED'}: detect_idle_s < 15, flaps <= 1, "
        f"alternate_changes=0 (here {alternate_changes}), the rotation within its rate"
    )
    print(f"detect_s={detect:.1f} detect_idle_s={detect_idle:.1f} recover_s={recover:.1f} flaps={flaps}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    errors = (PrimaryError, AssertionError, subprocess.SubprocessError, OSError)
    return run_in_workdir(
        parse_args(argv), "mailstandby-detection-", run, setup_errors=errors, root_for="Postfix's master needs it"
    )


if __name__ == "__main__":
    sys.exit(main())
