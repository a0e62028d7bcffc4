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
