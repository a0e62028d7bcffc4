"""Byte-level connections shared by the SMTP, IMAP and POP3 servers.

`Connection` is an asyncio.Protocol with its own input buffer, so that
memory stays bounded on overlong lines, huge messages and literals (the
overflow is consumed and dropped, never buffered), and so that STARTTLS can
drop any plaintext pipelined behind the command before the handshake starts
(the CVE-2024-34083 class) using only public asyncio APIs. Replies are
collected and written in one go right before the connection waits for input,
which is what pipelining clients want and what makes small commands cheap.

A request (a command line, a DATA body, a literal) that has begun to arrive
must keep arriving at `min_rate` bytes per second, measured over each
`rate_window` seconds (RELIABILITY X1, slowloris): a peer that trickles below it
gets `TooSlow`, a `TimeoutError`, so each protocol answers it as it answers
a timeout (SMTP 421 4.4.2, IMAP `* BYE`, POP3 `-ERR`). The clock starts at
the request's first byte: a quiet session between commands, or in IMAP IDLE,
is left to the protocol's idle timeout.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Protocol

from mailstandby.core.events import Event

log = logging.getLogger(__name__)

END_OF_DATA = b"\r\n.\r\n"  # SMTP/POP3 end of multi-line data (RFC 5321 §4.1.1.4)


class ConnectionClosed(Exception):
    """The peer went away; there is nobody left to answer."""


class LineTooLong(Exception):
    """A line exceeded the limit; the whole line has been consumed and dropped.

    `head` keeps its first octets (at most HEAD_KEPT), so that a reply can name
    the command, e.g. the IMAP tag of a `BAD ... Too long argument`.
    """

    def __init__(self, head: bytes = b"") -> None:
        super().__init__("line too long")
        self.head = head


HEAD_KEPT = 64


class TooSlow(TimeoutError):
    """The peer sent a request below the minimum data rate; the protocol answers it as a timeout."""


class DataTooBig(Exception):
    """Message data exceeded the limit; consumed through end-of-data and dropped."""


class DataOverBudget(Exception):
    """Holding more message data would pass the listener's memory budget; consumed and dropped."""


class Reservation(Protocol):
    """A share of a memory budget (`limits.Reservation`)."""

    def grow_to(self, size: int) -> bool: ...


HIGH_WATER = 256 * 1024  # pause reading when this much input is buffered and unread


class Connection(asyncio.Protocol):
    """Buffered reads with limits and timeouts over an asyncio transport."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("?", 0)
        self.tls_active = False
        self._buf = bytearray()
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None
        self._out: list[bytes] = []
        self._drain: asyncio.Future[None] | None = None
        self._paused = False
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timed_out = False
        self.write_timeout = 300.0  # seconds a peer may leave our replies unread
        self.min_rate = 0  # bytes per second a request must keep arriving at; 0: no minimum
        self.rate_window = 30.0  # seconds over which that rate is measured
        self._window_end = 0.0  # end of the current rate window; 0: no request under way
        self._window_bytes = 0  # bytes received since the window began
        self._too_slow = False
        self.on_open: Callable[[Connection], None] | None = None

    # -- asyncio callbacks ------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = (peer[0], peer[1])
        if self.on_open is not None:
            self.on_open(self)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._window_bytes += len(data)
        if len(self._buf) > HIGH_WATER and not self._paused and self.transport is not None:
            self.transport.pause_reading()
            self._paused = True
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_writing(self) -> None:
        if self._drain is None or self._drain.done():
            self._drain = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- reading -------------------------------------------------------------------
    async def _wait(self, timeout: float, *, request: bool = False) -> None:
        """Flush pending replies, then wait for more input (or EOF) up to `timeout`.

        `request`: part of a request has arrived, so the minimum data rate applies.
        """
        if self._eof:
            raise ConnectionClosed
        await self.flush()
        if self._paused and self.transport is not None:
            self.transport.resume_reading()
            self._paused = False
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + timeout
        if request and self.min_rate and not self._window_end:
            self._window_end = loop.time() + self.rate_window
            self._window_bytes = 0
        due = self._next_check()
        if self._timer is not None and self._timer.when() > due:
            self._timer.cancel()  # a shorter timeout than the armed one (e.g. IMAP login, then IDLE)
            self._timer = None
        if self._timer is None:  # one timer per connection, re-armed only when it fires
            self._timer = loop.call_at(due, self._on_timer)
        self._waiter = loop.create_future()
        try:
            await self._waiter
        except asyncio.CancelledError:
            if self._too_slow:
                self._too_slow = False
                raise TooSlow from None
            if self._timed_out:
                self._timed_out = False
                raise TimeoutError from None
            raise
        finally:
            self._waiter = None

    def _next_check(self) -> float:
        return min(self._deadline, self._window_end) if self._window_end else self._deadline

    def _end_request(self) -> None:
        self._window_end = 0.0

    def _on_timer(self) -> None:
        self._timer = None
        if self._waiter is None or self._waiter.done():
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._window_end and now >= self._window_end:
            if self._window_bytes < self.min_rate * self.rate_window:
                log.info(
                    "%s: peer=%s: %d bytes of a request in %.0fs, below the minimum of %d per second: closing",
                    Event.LISTENER_TOO_SLOW,
                    self.peer[0],
                    self._window_bytes,
                    self.rate_window,
                    self.min_rate,
                )
                self._too_slow = True
                self._waiter.cancel()
                return
            self._window_end, self._window_bytes = now + self.rate_window, 0
        if now >= self._deadline:
            self._timed_out = True
            self._waiter.cancel()
        else:
            self._timer = loop.call_at(self._next_check(), self._on_timer)

    def _consume(self, n: int) -> bytes:
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def read_line(self, limit: int, timeout: float) -> bytes:
        start = 0
        head: bytes | None = None  # set once the line is known to be too long
        while True:
            i = self._buf.find(b"\n", start)
            if i >= 0:
                self._end_request()
                line = self._consume(i + 1)
                if head is not None or len(line) > limit:
                    raise LineTooLong(line[:HEAD_KEPT] if head is None else head)
                return line
            if len(self._buf) > limit:
                if head is None:
                    head = bytes(self._buf[:HEAD_KEPT])
                del self._buf[:]
            start = len(self._buf)
            if self._eof:
                raise ConnectionClosed
            await self._wait(timeout, request=bool(start) or head is not None)

    async def read_data(self, limit: int, timeout: float, reservation: Reservation | None = None) -> bytes:
        """Message data up to and including the CRLF before the final dot.

        `limit` applies to the message; the data may exceed it by its dot-stuffing,
        so up to `slack` more is read before the rest is dropped. The caller checks
        the exact size once the data is unstuffed. What is buffered is held in
        `reservation` as it grows; when that is refused, the rest is dropped too.
        """
        slack = limit // 32 + 1024
        start = 0
        dropped = 0  # bytes discarded once the limit was passed
        refused = False  # the memory budget said no
        while True:
            if not dropped and self._buf.startswith(b".\r\n"):
                self._end_request()
                self._consume(3)  # empty message: the DATA line's CRLF began the terminator
                return b""
            i = self._buf.find(END_OF_DATA, start)
            if i >= 0:
                self._end_request()
                data = self._consume(i + 5)[:-3]
                if refused:
                    raise DataOverBudget
                if dropped or len(data) > limit + slack:
                    raise DataTooBig
                return data
            if not refused and reservation is not None and not reservation.grow_to(len(self._buf)):
                refused = True
            if len(self._buf) > 8 and (refused or len(self._buf) > limit + slack + 8):
                keep = 4  # a terminator may straddle the cut
                dropped += len(self._buf) - keep
                del self._buf[:-keep]
            start = max(0, len(self._buf) - 4)
            if self._eof:
                raise ConnectionClosed
            await self._wait(timeout, request=bool(self._buf))

    async def read_exact(self, n: int, timeout: float) -> bytes:
        """Exactly `n` bytes (an IMAP literal); the caller bounds `n` before asking."""
        while len(self._buf) < n:
            if self._eof:
                raise ConnectionClosed
            await self._wait(timeout, request=bool(self._buf))
        self._end_request()
        return self._consume(n)

    async def discard_exact(self, n: int, timeout: float) -> None:
        """Read and drop `n` bytes without buffering them (a refused literal, RFC 7888 §4)."""
        started = False
        while n > 0:
            if not self._buf:
                if self._eof:
                    raise ConnectionClosed
                await self._wait(timeout, request=started)
            take = min(n, len(self._buf))
            del self._buf[:take]
            n -= take
            started = True
        self._end_request()

    async def input_within(self, timeout: float) -> bool:
        """Whether the peer sends anything within `timeout` (0: whether it already has), consuming nothing."""
        if self._buf or timeout <= 0:
            return bool(self._buf)
        try:
            await self._wait(timeout)
        except TimeoutError:
            return False
        return bool(self._buf)

    def has_buffered_input(self) -> bool:
        return bool(self._buf)

    # -- writing -------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self._out.append(data)

    async def flush(self) -> None:
        if self._out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self._out))
        self._out.clear()
        if self._drain is not None and not self._drain.done():
            try:
                async with asyncio.timeout(self.write_timeout):
                    await self._drain
            except TimeoutError:
                # The peer pipelines commands but never reads the replies: nothing
                # more can be said to it, and the session must not wait forever.
                if self.transport is not None:
                    self.transport.abort()
                raise ConnectionClosed from None

    async def start_tls(
        self, context: ssl.SSLContext, timeout: float = 60.0, *, server_hostname: str | None = None
    ) -> None:
        """Upgrade to TLS: as the server, or, with `server_hostname`, as a client checking that name."""
        assert self.transport is not None
        await self.flush()
        if self._buf:
            log.warning("peer=%s: dropped %d plaintext bytes pipelined after STARTTLS", self.peer[0], len(self._buf))
            del self._buf[:]
        loop = asyncio.get_running_loop()
        # No await between clearing the buffer and handing the transport to TLS:
        # no plaintext byte can reach the session after this point.
        new = await loop.start_tls(
            self.transport,
            self,
            context,
            server_side=server_hostname is None,
            server_hostname=server_hostname,
            ssl_handshake_timeout=timeout,
        )
        if new is None:
            raise ConnectionClosed
        self.transport = new
        self.tls_active = True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
