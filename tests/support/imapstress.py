"""A model-based stress program for IMAP servers: several sessions on one mailbox, a seeded random
program of APPEND, STORE, EXPUNGE, COPY, MOVE, FETCH, SEARCH, IDLE and NOOP, and a model of what
each session has been told, against which every untagged response is checked.

Used by tests/component/test_imap_stress.py (mailstandby in-process), tests/wire/test_imap_stress_dovecot.py
(the same program against Dovecot and a running mailstandby, so the model is checked against the
reference server) and bench/imap_stress.py (longer, with commands per second).

Each session is a plain socket client (no imaplib: it must see every untagged line as sent). The
driver is one thread: it picks a session and a command from the seeded RNG, sends it and reads to
its tagged response, so the order of commands is the same on every server for one seed (their
answers, and so the later sequence sets, may differ where the RFC lets servers differ).

What a session's model holds (RFC 3501 §2.3.1.2: numbers change only when the client is told):
the UID at each sequence number (when it has been seen), the keywords announced by FLAGS, the
last MODSEQ seen per UID, and which UIDs were shown with \\Recent. A violation is:
- `* n EXISTS` below the count the session knows, or `* n RECENT` above it;
- `* n EXPUNGE` or `* n FETCH` with n outside 1..count; an EXPUNGE during FETCH, STORE or SEARCH
  by sequence number (RFC 3501 §7.4.1);
- a FETCH UID that contradicts the one known at that number or breaks ascending UID order;
- a keyword in FETCH FLAGS that no FLAGS response announced (RFC 3501 §7.2.6);
- a MODSEQ lower than one seen before for the same message (RFC 7162 §3.1.2);
- a SEARCH number above the count; any BAD;
- at a checkpoint (NOOP in every session, then `UID FETCH 1:* (UID FLAGS)`): sessions that
  disagree on the UIDs or flags, or a message that is \\Recent in other than exactly one session.
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import time
from dataclasses import dataclass, field

KEYWORDS = ("$Work", "$Later", "Todo", "Kw1", "Kw2", "$Label3")
SYSTEM = ("\\Seen", "\\Flagged", "\\Deleted", "\\Answered", "\\Draft")
SEQ_ONLY = ("FETCH", "STORE", "SEARCH")  # no EXPUNGE while one of these runs by sequence number

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n\Z")
_NUMBERED = re.compile(rb"\* (\d+) (EXISTS|RECENT|EXPUNGE|FETCH)\b ?(.*)\r\n\Z", re.S)
_FLAGS = re.compile(rb"\* FLAGS \(([^)]*)\)")
_ITEM_UID = re.compile(rb"\bUID (\d+)")
_ITEM_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_ITEM_MODSEQ = re.compile(rb"\bMODSEQ \((\d+)\)")


class Wire:
    """One connection: exact lines out, response lines (with any literal) in."""

    def __init__(self, host: str, port: int, timeout: float = 60.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.file = self.sock.makefile("rb")
        self.n = 0
        greeting = self.line()
        if not greeting.startswith(b"* OK"):
            raise ConnectionError(f"unexpected greeting {greeting!r}")

    def line(self) -> bytes:
        raw = self.file.readline()
        if not raw:
            raise ConnectionError("the server closed the connection")
        m = _LITERAL.search(raw)
        if m:
            raw += self.file.read(int(m.group(1)))
            raw += self.line()
        return raw

    def tag(self) -> bytes:
        self.n += 1
        return b"t%d" % self.n

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def until(self, tag: bytes) -> tuple[list[bytes], bytes]:
        lines = []
        while True:
            raw = self.line()
            if raw.startswith(tag + b" "):
                return lines, raw
            lines.append(raw)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


@dataclass
class Model:
    """What one session has been told about the selected mailbox."""

    label: str
    uids: list[int | None] = field(default_factory=list)  # by sequence number - 1
    announced: set[bytes] = field(default_factory=set)
    modseq: dict[int, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def fail(self, command: str, line: bytes, why: str) -> None:
        self.violations.append(f"{self.label}: {why} (after {command!r}): {line[:200]!r}")

    def apply(self, line: bytes, command: str) -> None:
        """One untagged response received while `command` ran (or idled)."""
        flags = _FLAGS.match(line)
        if flags:
            self.announced = set(flags.group(1).split()) | self.announced
            return
        if line.startswith(b"* SEARCH"):
            self._search(line, command)
            return
        m = _NUMBERED.match(line)
        if m is None:
            return  # OK/NO codes, STATUS, LIST, ENABLED, ... carry no sequence numbers
        n, kind, rest = int(m.group(1)), m.group(2), m.group(3)
        if kind == b"EXISTS":
            if n < len(self.uids):
                self.fail(command, line, f"EXISTS below the known count {len(self.uids)}")
                del self.uids[n:]
            self.uids.extend([None] * (n - len(self.uids)))
        elif kind == b"RECENT":
            if n > len(self.uids):
                self.fail(command, line, f"RECENT above the known count {len(self.uids)}")
        elif kind == b"EXPUNGE":
            if not 1 <= n <= len(self.uids):
                self.fail(command, line, f"EXPUNGE outside 1..{len(self.uids)}")
                return
            if command.split(" ", 1)[0] in SEQ_ONLY:
                self.fail(command, line, "EXPUNGE during FETCH, STORE or SEARCH by sequence number")
            uid = self.uids.pop(n - 1)
            self.modseq.pop(uid or 0, None)
        else:
            self._fetch(n, rest, line, command)

    def _fetch(self, n: int, rest: bytes, line: bytes, command: str) -> None:
        if not 1 <= n <= len(self.uids):
            self.fail(command, line, f"FETCH outside 1..{len(self.uids)}")
            return
        uid_m = _ITEM_UID.search(rest)
        uid = self.uids[n - 1]
        if uid_m:
            got = int(uid_m.group(1))
            if uid is not None and uid != got:
                self.fail(command, line, f"UID {got} where {uid} was known")
            elif uid is None:
                below = [u for u in self.uids[: n - 1] if u is not None]
                above = [u for u in self.uids[n:] if u is not None]
                if (below and below[-1] >= got) or (above and above[0] <= got):
                    self.fail(command, line, "UID out of ascending order")
                self.uids[n - 1] = got
            uid = got
        flags_m = _ITEM_FLAGS.search(rest)
        if flags_m:
            keywords = {f for f in flags_m.group(1).split() if not f.startswith(b"\\")}
            unknown = keywords - self.announced
            if unknown:
                self.fail(command, line, f"keywords {sorted(unknown)} never announced by FLAGS")
        modseq_m = _ITEM_MODSEQ.search(rest)
        if modseq_m and uid is not None:
            value = int(modseq_m.group(1))
            if value < self.modseq.get(uid, 0):
                self.fail(command, line, f"MODSEQ went back from {self.modseq[uid]}")
            self.modseq[uid] = max(value, self.modseq.get(uid, 0))

    def _search(self, line: bytes, command: str) -> None:
        numbers = [int(x) for x in re.findall(rb"\d+", line.split(b"(MODSEQ", 1)[0])]
        if command.startswith("SEARCH") and any(not 1 <= x <= len(self.uids) for x in numbers):
            self.fail(command, line, f"SEARCH number outside 1..{len(self.uids)}")


@dataclass
class Stats:
    commands: int = 0
    refused: int = 0  # NO answers (allowed: e.g. EXPUNGEISSUED)
    checkpoints: int = 0
    elapsed: float = 0.0
    violations: list[str] = field(default_factory=list)


class Session:
    def __init__(self, label: str, host: str, port: int, user: str, password: str) -> None:
        self.wire = Wire(host, port)
        self.model = Model(label)
        self.idle_tag: bytes | None = None
        self.idle_left = 0
        self.user, self.password = user, password

    def run(self, command: bytes, stats: Stats, *, literal: bytes | None = None) -> tuple[list[bytes], bytes]:
        """Send one command (with a LITERAL+ literal), check every untagged line, count it."""
        tag = self.wire.tag()
        label = command.decode("ascii", "replace")[:60]
        if literal is not None:
            self.wire.send(tag + b" " + command + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        else:
            self.wire.send(tag + b" " + command + b"\r\n")
        lines, done = self.wire.until(tag)
        for line in lines:
            self.model.apply(line, label)
        stats.commands += 1
        status = done.split(b" ", 2)[1] if b" " in done else b""
        if status == b"BAD":
            self.model.fail(label, done, "BAD")
        elif status == b"NO":
            stats.refused += 1
        return lines, done

    def start_idle(self, steps: int, stats: Stats) -> None:
        tag = self.wire.tag()
        self.wire.send(tag + b" IDLE\r\n")
        while True:
            line = self.wire.line()
            if line.startswith(b"+"):
                break
            self.model.apply(line, "IDLE")
        self.idle_tag, self.idle_left = tag, steps
        stats.commands += 1

    def end_idle(self) -> None:
        assert self.idle_tag is not None
        self.wire.send(b"DONE\r\n")
        lines, done = self.wire.until(self.idle_tag)
        for line in lines:
            self.model.apply(line, "IDLE")
        if done.split(b" ", 2)[1] != b"OK":
            self.model.fail("IDLE", done, "IDLE not completed")
        self.idle_tag = None


class Program:
    """`sessions` sessions on mailbox `box` (created fresh), driven for `steps` commands by `seed`."""

    def __init__(self, host: str, port: int, user: str, password: str, *, box: str, seed: int, sessions: int) -> None:
        self.rng = random.Random(seed)
        self.box, self.other = box, box + "-other"
        self.stats = Stats()
        self.sessions = [Session(f"s{i}", host, port, user, password) for i in range(sessions)]
        self.body_n = 0

    def run(self, steps: int, *, checkpoint_every: int = 250) -> Stats:
        first = self.sessions[0]
        self._login_all()
        for box in (self.box, self.other):
            first.run(b'CREATE "%s"' % box.encode(), self.stats)
        for s in self.sessions:
            s.run(b'SELECT "%s" (CONDSTORE)' % self.box.encode(), self.stats)
        start = time.perf_counter()
        for step in range(1, steps + 1):
            self.step()
            if step % checkpoint_every == 0 or step == steps:
                self.checkpoint()
        self.stats.elapsed = time.perf_counter() - start
        for s in self.sessions:
            self.stats.violations += s.model.violations
        return self.stats

    def close(self) -> None:
        for s in self.sessions:
            if s.idle_tag is not None:
                with contextlib.suppress(OSError, ConnectionError):
                    s.end_idle()
            s.wire.close()

    def _login_all(self) -> None:
        for s in self.sessions:
            _, done = s.run(b'LOGIN "%s" "%s"' % (s.user.encode(), s.password.encode()), self.stats)
            if b" OK" not in done:
                raise ConnectionError(f"login failed: {done!r}")

    # -- one random step ---------------------------------------------------------------------
    def step(self) -> None:
        for s in self.sessions:
            if s.idle_tag is not None:
                s.idle_left -= 1
                if s.idle_left <= 0:
                    s.end_idle()
        awake = [s for s in self.sessions if s.idle_tag is None]
        s = self.rng.choice(awake)
        roll = self.rng.random()
        if roll < 0.18:
            self.append(s)
        elif roll < 0.40:
            self.store(s)
        elif roll < 0.50:
            s.run(self.rng.choice([b"EXPUNGE", b"UID EXPUNGE 1:*"]), self.stats)
        elif roll < 0.58:
            self.transfer(s)
        elif roll < 0.72:
            self.fetch(s)
        elif roll < 0.82:
            self.search(s)
        elif roll < 0.88 and len(awake) > 1:
            s.start_idle(self.rng.randint(1, 6), self.stats)
        else:
            s.run(b"NOOP", self.stats)

    def _flags(self, k: int) -> bytes:
        pool = list(SYSTEM[:4]) + list(KEYWORDS)
        return b" ".join(f.encode() for f in self.rng.sample(pool, self.rng.randint(0, k)))

    def _set(self, s: Session) -> bytes | None:
        """A sequence set within what `s` knows, or None when it knows no message."""
        n = len(s.model.uids)
        if n == 0:
            return None
        lo = self.rng.randint(1, n)
        hi = min(n, lo + self.rng.choice((0, 0, 1, 3, 10)))
        return b"%d" % lo if lo == hi else b"%d:%d" % (lo, hi)

    def append(self, s: Session) -> None:
        self.body_n += 1
        body = (
            f"From: Stress <stress{self.body_n % 7}@example.org>\r\nTo: alice@corp.test\r\n"
            f"Subject: stress {self.body_n}\r\nMessage-ID: <stress{self.body_n}@example.org>\r\n\r\n"
            f"body {self.body_n}\r\n"
        ).encode()
        flags = self._flags(3)
        if self.rng.random() < 0.3:
            flags = (flags + b" \\Deleted").strip()  # keeps the mailbox small: EXPUNGE removes them
        s.run(b'APPEND "%s" (%s)' % (self.box.encode(), flags), self.stats, literal=body)

    def store(self, s: Session) -> None:
        seqs = self._set(s)
        if seqs is None:
            s.run(b"NOOP", self.stats)
            return
        mode = self.rng.choice([b"+FLAGS", b"+FLAGS", b"-FLAGS", b"FLAGS"])
        silent = b".SILENT" if self.rng.random() < 0.3 else b""
        flags = self._flags(2) or b"\\Deleted"
        uid = self.rng.random() < 0.3 and all(u is not None for u in s.model.uids)
        if uid:
            lo, _, hi = seqs.partition(b":")
            uids = s.model.uids
            seqs = b"%d:%d" % (uids[int(lo) - 1] or 1, uids[int(hi or lo) - 1] or 1)
        s.run(b"%sSTORE %s %s%s (%s)" % (b"UID " if uid else b"", seqs, mode, silent, flags), self.stats)

    def transfer(self, s: Session) -> None:
        seqs = self._set(s)
        if seqs is None:
            s.run(b"NOOP", self.stats)
            return
        verb = self.rng.choice([b"COPY", b"COPY", b"MOVE"])
        target = self.box if verb == b"COPY" and self.rng.random() < 0.5 else self.other
        s.run(b'%s %s "%s"' % (verb, seqs, target.encode()), self.stats)

    def fetch(self, s: Session) -> None:
        seqs = self._set(s)
        if seqs is None or self.rng.random() < 0.3:
            s.run(b"UID FETCH 1:* (UID FLAGS MODSEQ)", self.stats)
            return
        items = self.rng.choice([b"(UID FLAGS)", b"(FLAGS MODSEQ)", b"(UID RFC822.SIZE FLAGS)", b"(UID)"])
        s.run(b"FETCH %s %s" % (seqs, items), self.stats)

    def search(self, s: Session) -> None:
        key = self.rng.choice(
            [b"ALL", b"RECENT", b"NEW", b"OLD", b"UNSEEN", b"DELETED", b"KEYWORD $Work", b"FROM stress3@example.org"]
        )
        uid = self.rng.random() < 0.3
        s.run(b"%sSEARCH %s" % (b"UID " if uid else b"", key), self.stats)

    # -- what all sessions must agree on -------------------------------------------------------
    def checkpoint(self) -> None:
        for s in self.sessions:
            if s.idle_tag is not None:
                s.end_idle()
        for s in self.sessions:
            s.run(b"NOOP", self.stats)
        views = []
        for s in self.sessions:
            lines, _ = s.run(b"UID FETCH 1:* (UID FLAGS)", self.stats)
            views.append(self._seen(s, lines))
        self.stats.checkpoints += 1
        first = views[0]
        for s, view in zip(self.sessions, views, strict=True):
            if [(u, f) for u, f, _ in view] != [(u, f) for u, f, _ in first]:
                s.model.fail("checkpoint", b"", f"disagrees with {self.sessions[0].model.label} on UIDs or flags")
        for i, (uid, _, _) in enumerate(first):
            holders = [s.model.label for s, v in zip(self.sessions, views, strict=True) if i < len(v) and v[i][2]]
            if len(holders) != 1:
                self.sessions[0].model.fail("checkpoint", b"", f"UID {uid} \\Recent in {holders or 'no session'}")

    @staticmethod
    def _seen(s: Session, lines: list[bytes]) -> list[tuple[int, frozenset[bytes], bool]]:
        by_seq: dict[int, tuple[int, frozenset[bytes], bool]] = {}
        for line in lines:
            m = _NUMBERED.match(line)
            if m is None or m.group(2) != b"FETCH":
                continue
            uid_m, flags_m = _ITEM_UID.search(m.group(3)), _ITEM_FLAGS.search(m.group(3))
            if uid_m and flags_m:
                flags = frozenset(flags_m.group(1).split())
                by_seq[int(m.group(1))] = (int(uid_m.group(1)), flags - {b"\\Recent"}, b"\\Recent" in flags)
        if sorted(by_seq) != list(range(1, len(s.model.uids) + 1)):
            s.model.fail("checkpoint", b"", f"UID FETCH 1:* answered {len(by_seq)} of {len(s.model.uids)}")
        return [by_seq[k] for k in sorted(by_seq)]


def run_program(
    host: str, port: int, user: str, password: str, *, box: str, seed: int, sessions: int, steps: int
) -> Stats:
    program = Program(host, port, user, password, box=box, seed=seed, sessions=sessions)
    try:
        return program.run(steps)
    finally:
        program.close()
