"""One-way signals between parts that are built independently of each other."""

from __future__ import annotations

import asyncio


class Trouble:
    """Evidence of trouble with the primary, reported by whoever meets it (the queue runner: a
    connection refused, a mailbox the primary calls unavailable) and awaited by the monitor, which
    decides by probing. Built before both, so neither needs the other."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._detail = ""

    def report(self, ok: bool, detail: str) -> None:
        """A delivery result: only trouble (`ok` False) is passed on; the last detail wins."""
        if not ok:
            self._detail = detail
            self._event.set()

    async def wait(self) -> str:
        """The next trouble reported (one wake-up for all reported meanwhile); returns its detail."""
        await self._event.wait()
        self._event.clear()
        return self._detail
