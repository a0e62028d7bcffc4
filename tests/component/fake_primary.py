"""A scripted fake primary mail system: an in-process asyncio SMTP or LMTP server.

The queue runner's peer in component tests (RELIABILITY harness convention 4,
in the spirit of Postfix's smtp-sink). It listens on 127.0.0.1:0, records every
message it takes responsibility for, counts connections, and answers each
stage of the dialogue as the test says:

    fake.on("rcpt", "452 4.2.2 try later", times=1)      # the next RCPT only
    fake.on("rcpt:bob@corp.test", "550 5.1.1 no such user")  # every RCPT for bob
    fake.on("dot", HANGUP, times=1)                       # commit, then hang up with no reply
    fake.on("data", Delay(5.0, "354 go ahead"))
    fake.on("mail", Endless())                            # "250-" continuation lines forever

Stages: `banner`, `ehlo` (EHLO/HELO/LHLO), `mail`, `rcpt` (`rcpt:<addr>` first),
`data`, `dot` (the reply to the final dot; for LMTP one per accepted recipient,
`dot:<addr>` first), `rset`, `noop`, `quit`. A step is a reply text (lines
separated by "\\n" become a proper multi-line reply), `HANGUP`, `Delay`, `Raw`
(exact bytes, e.g. garbage; the stage counts as not accepted and the session
carries on) or `Endless`. `fake.dsn = True` advertises DSN (RFC 3461) from the next
EHLO/LHLO on; `fake.log` keeps every command line as received. After a 421 reply the fake closes the connection,
as a real server does.

A message is recorded when its data is complete and the reply to the dot is
2xx or never sent (a hang-up or a delay after the dot: the primary committed,
the client may not know; RELIABILITY D11). With LMTP only the recipients
whose reply is 2xx (or lost) are recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

HOSTNAME = "primary.test"
TIMEOUT = 10.0


@dataclass(frozen=True)
class _Hangup:
    def __repr__(self) -> str:
        return "HANGUP"


HANGUP = _Hangup()


@dataclass(frozen=True)
class Delay:
    """Wait `seconds`, then answer with `then` (a reply text or another step)."""

    seconds: float
    then: Step


@dataclass(frozen=True)
class Raw:
    """Send exactly these bytes; the stage is not accepted and the session continues."""

    data: bytes


@dataclass(frozen=True)
class Endless:
    """Stream `line` over and over (up to `limit` bytes, or until the client goes away)."""

    line: bytes = b"250-this reply never ends\r\n"
    limit: int = 4 * 1024 * 1024


Step = str | _Hangup | Delay | Raw | Endless


@dataclass
class Rule:
    step: Step
    times: int | None  # None: for ever


@dataclass
class Received:
    sender: str
    rcpts: list[str]
    body: bytes
    connection: int  # 1-based number of the connection it arrived on


@dataclass
class _Txn:
    sender: str | None = None
    rcpts: list[str] = field(default_factory=list)


class _Gone(Exception):
    """The fake hung up (scripted) or the client went away."""


EHLO_SMTP = f"{HOSTNAME}\nPIPELINING\nSIZE 100000000\n8BITMIME\nENHANCEDSTATUSCODES\nSMTPUTF8"


class FakePrimary:
    def __init__(self, *, lmtp: bool = False) -> None:
        self.lmtp = lmtp
        self.dsn = False  # advertise DSN (RFC 3461) to the EHLO/LHLO that follow
        self.port = 0
        self.rules: dict[str, list[Rule]] = {}
        self.messages: list[Received] = []
        self.log: list[tuple[float, str]] = []  # (time.time(), command line) as received
        self.connections = 0
        self.changed = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # -- scripting -----------------------------------------------------------------------
    def on(self, stage: str, step: Step, *, times: int | None = None) -> None:
        """Answer `stage` with `step`, the next `times` times (None: until `clear()`)."""
        self.rules.setdefault(stage, []).append(Rule(step, times))

    def clear(self) -> None:
        """Back to a well-behaved primary."""
        self.rules.clear()

    def _step(self, *stages: str) -> Step | None:
        for stage in stages:
            rules = self.rules.get(stage)
            if rules:
                rule = rules[0]
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        rules.pop(0)
                return rule.step
        return None

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Listen (again, on the same port after `stop()`)."""
        self._server = await asyncio.start_server(
            self._session, "127.0.0.1", self.port, reuse_address=True, limit=1024 * 1024
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every open connection (connections are then refused)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        # A connection accepted just before the close has its session task created but not yet
        # started (so not yet in _sessions): let such tasks take their first step, or their
        # transports outlive the loop (unclosed-transport warnings in a later test).
        for _ in range(3):
            await asyncio.sleep(0)
        for w in list(self._writers):
            w.close()
        for task in list(self._sessions):
            task.cancel()
        if self._sessions:
            await asyncio.wait(list(self._sessions), timeout=TIMEOUT)

    # -- observation -----------------------------------------------------------------------
    async def wait_for(self, condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(condition)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    @property
    def commands(self) -> list[str]:
        return [line for _, line in self.log]

    def copies(self, subject: bytes) -> list[Received]:
        """Messages received whose body contains `subject` (e.g. b"Subject: m1\\r\\n")."""
        return [m for m in self.messages if subject in m.body]

    # -- the server side -------------------------------------------------------------------
    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        self._writers.add(writer)
        self.connections += 1
        number = self.connections
        await self._notify()
        try:
            await self._dialogue(reader, writer, number)
        except (_Gone, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass
        finally:
            self._sessions.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _dialogue(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        await self._answer(writer, ("banner",), f"220 {HOSTNAME} ESMTP fake")
        txn = _Txn()
        while True:
            raw = await reader.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.log.append((time.time(), line))
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb in ("EHLO", "HELO", "LHLO"):
                if (verb == "LHLO") != self.lmtp:
                    await self._send(writer, "500 5.5.1 wrong protocol")
                    continue
                extensions = EHLO_SMTP + ("\nDSN" if self.dsn else "")
                await self._answer(writer, ("ehlo",), "250 " + extensions if verb != "HELO" else f"250 {HOSTNAME}")
                txn = _Txn()
            elif verb == "MAIL":
                if _positive(await self._answer(writer, ("mail",), "250 2.1.0 Ok")):
                    txn = _Txn(sender=_path(arg))
            elif verb == "RCPT":
                rcpt = _path(arg)
                if txn.sender is None:
                    await self._send(writer, "503 5.5.1 need MAIL")
                elif _positive(await self._answer(writer, (f"rcpt:{rcpt}", "rcpt"), "250 2.1.5 Ok")):
                    txn.rcpts.append(rcpt)
            elif verb == "DATA":
                default = "354 End data with <CR><LF>.<CR><LF>" if txn.rcpts else "554 5.5.1 no valid recipients"
                reply = await self._answer(writer, ("data",), default)
                if reply is not None and reply.startswith("354") and txn.rcpts:
                    body = await _read_body(reader)
                    await self._end_of_data(writer, txn, body, number)
                    txn = _Txn()
            elif verb == "RSET":
                await self._answer(writer, ("rset",), "250 2.0.0 Ok")
                txn = _Txn()
            elif verb == "NOOP":
                await self._answer(writer, ("noop",), "250 2.0.0 Ok")
            elif verb == "QUIT":
                await self._answer(writer, ("quit",), "221 2.0.0 Bye")
                return
            else:
                await self._send(writer, "502 5.5.2 command not recognized")

    async def _end_of_data(self, writer: asyncio.StreamWriter, txn: _Txn, body: bytes, number: int) -> None:
        assert txn.sender is not None
        if not self.lmtp:
            step = self._step("dot")
            if step is None or _commits(step):
                await self._record(Received(txn.sender, list(txn.rcpts), body, number))
            await self._play(writer, step, "250 2.0.0 Ok: queued")
            return
        steps = [(rcpt, self._step(f"dot:{rcpt}", "dot")) for rcpt in txn.rcpts]
        taken = [rcpt for rcpt, step in steps if step is None or _commits(step)]
        if taken:
            await self._record(Received(txn.sender, taken, body, number))
        for rcpt, step in steps:
            await self._play(writer, step, f"250 2.0.0 <{rcpt}> delivered")

    async def _record(self, message: Received) -> None:
        self.messages.append(message)
        await self._notify()

    async def _answer(self, writer: asyncio.StreamWriter, stages: tuple[str, ...], default: str) -> str | None:
        """Play the scripted step for `stages` (or `default`); the reply text if one was sent."""
        return await self._play(writer, self._step(*stages), default)

    async def _play(self, writer: asyncio.StreamWriter, step: Step | None, default: str) -> str | None:
        if step is None:
            step = default
        if isinstance(step, Delay):
            await asyncio.sleep(step.seconds)
            return await self._play(writer, step.then, default)
        if step is HANGUP:
            raise _Gone
        if isinstance(step, Raw):
            writer.write(step.data)
            await writer.drain()
            return None
        if isinstance(step, Endless):
            sent = 0
            while sent < step.limit and not writer.is_closing():
                chunk = step.line * max(1, 65536 // len(step.line))
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
            return None
        assert isinstance(step, str)
        await self._send(writer, step)
        if step.startswith("421"):  # RFC 5321 §3.8: the server closes after 421
            raise _Gone
        return step

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, text: str) -> None:
        code, _, rest = text.partition(" ")
        lines = rest.split("\n")
        out = "".join(f"{code}{'-' if i < len(lines) - 1 else ' '}{line}\r\n" for i, line in enumerate(lines))
        writer.write(out.encode("utf-8"))
        await writer.drain()


def _positive(reply: str | None) -> bool:
    return reply is not None and reply.startswith("2")


def _commits(step: Step) -> bool:
    """Does the primary take the message with this reply to the dot?"""
    while isinstance(step, Delay):
        step = step.then
    if isinstance(step, str):
        return step.startswith("2")
    return step is HANGUP


def _path(arg: str) -> str:
    """The address in `FROM:<a@b> PARAMS` / `TO:<a@b>`."""
    start, end = arg.find("<"), arg.find(">")
    return arg[start + 1 : end] if 0 <= start < end else arg.partition(":")[2].strip()


async def _read_body(reader: asyncio.StreamReader) -> bytes:
    lines = []
    while True:
        raw = await reader.readline()
        if not raw:
            raise _Gone
        if raw == b".\r\n":
            return b"".join(lines)
        lines.append(raw[1:] if raw.startswith(b"..") else raw)
