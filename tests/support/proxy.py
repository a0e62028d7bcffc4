"""A TCP front for a test primary that turns connections away on a schedule: by their number
(every other one) or by time (down 20 s of every minute). A turned-away connection is reset at
once (SO_LINGER 0), which a client sees as a refusal; forwarded ones are piped both ways."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable


class GatedProxy:
    """A TCP front for Postfix that forwards a connection when `gate(n, seconds since start)` says so
    and otherwise resets it at once (SO_LINGER 0: the client sees a refusal, not a goodbye)."""

    def __init__(self, target: int, gate: Callable[[int, float], bool]) -> None:
        self.target, self.gate = target, gate
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.started = time.monotonic()
        self.accepted = self.refused = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        n = 0
        while not self.stopping:
            try:
                client, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            n += 1
            if not self.gate(n, time.monotonic() - self.started):
                self.refused += 1
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            self.accepted += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self.stopping = True
        self.sock.close()


class DataFaultProxy:
    """A TCP front for an SMTP or LMTP server that breaks the first `times` transactions at the end of data.

    `fault` is "drop-after-dot": the end of data reaches the server, which commits and answers, but the
    answer never reaches the client (the connection is closed instead: RFC 5321 §6.1's lost reply), or
    "hang-mid-data": after the first block of message data nothing more is forwarded either way, so the
    server never sees the end of data and the client waits for a reply that never comes."""

    def __init__(self, target: int, fault: str, times: int = 1) -> None:
        assert fault in ("drop-after-dot", "hang-mid-data")
        self.target, self.fault, self.left = target, fault, times
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.faults = 0
        self.lock = threading.Lock()
        self.stopping = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stopping:
            try:
                client, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            state = {"dot": False, "data": False, "hang": False}
            threading.Thread(target=self._up, args=(client, upstream, state), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, state), daemon=True).start()

    def _take(self) -> bool:
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            self.faults += 1
            return True

    def _up(self, src: socket.socket, dst: socket.socket, state: dict[str, bool]) -> None:
        """Client to server, watching for DATA and the end of data."""
        tail = b""
        try:
            while data := src.recv(65536):
                if state["hang"]:
                    continue  # swallowed: the server never sees the rest
                window = tail + data
                if state["data"] and self.fault == "hang-mid-data" and self._take():
                    state["hang"] = True
                    continue
                if b"\r\nDATA\r\n" in b"\r\n" + window.upper() or window.upper().startswith(b"DATA\r\n"):
                    state["data"] = True
                if b"\r\n.\r\n" in window and state["data"]:
                    state["dot"], state["data"] = True, False
                dst.sendall(data)
                tail = window[-4:]
        except OSError:
            pass
        finally:
            _close(src, dst)

    def _down(self, src: socket.socket, dst: socket.socket, state: dict[str, bool]) -> None:
        """Server to client; after the end of data, the reply may be dropped with the connection."""
        try:
            while data := src.recv(65536):
                if state["hang"]:
                    continue
                if state["dot"] and self.fault == "drop-after-dot":
                    state["dot"] = False
                    if self._take():
                        break  # the server committed and answered; the client never hears it
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src, dst)

    def close(self) -> None:
        self.stopping = True
        self.sock.close()


def _close(*socks: socket.socket) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()
