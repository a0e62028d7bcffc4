"""Content check by rspamd before the final dot is answered (its HTTP protocol, `POST /checkv2`).

The verdict is honoured: `reject` gets 554 5.7.1 while the sender is still
connected (no backscatter), `soft reject` / `greylist` get 451 4.7.1, `add
header` / `rewrite subject` are accepted and marked. Every accepted message
carries `X-Spam-Status` / `X-Spam-Action` and the headers rspamd asks for
(e.g. `Authentication-Results`), prepended before our `Received` line is
stored, so the primary and the standby mailboxes see the same verdict.
rspamd unreachable: `on_error` decides (tempfail by default: the sender retries,
nothing unchecked gets in, nothing is lost).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx

from mailstandby.config import AntispamSettings
from mailstandby.core.model import Envelope

log = logging.getLogger(__name__)


class Action(StrEnum):
    ACCEPT = "accept"
    MARK = "mark"  # accepted, marked as spam
    TEMPFAIL = "tempfail"
    REJECT = "reject"


_ACTIONS = {
    "no action": Action.ACCEPT,
    "add header": Action.MARK,
    "rewrite subject": Action.MARK,
    "greylist": Action.TEMPFAIL,
    "soft reject": Action.TEMPFAIL,
    "reject": Action.REJECT,
}


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    detail: str  # rspamd's action, score and main symbols, for the log
    headers: list[tuple[str, str]] = field(default_factory=list)


def verdict(response: dict[str, Any]) -> Verdict:
    """rspamd's JSON answer as a verdict (pure). Unknown actions are temporary failures."""
    name = str(response.get("action", ""))
    action = _ACTIONS.get(name, Action.TEMPFAIL)
    score, required = float(response.get("score", 0.0)), float(response.get("required_score", 0.0))
    symbols = sorted(response.get("symbols", {}), key=str)[:20]
    detail = f"rspamd {name or '?'} score={score:.2f}/{required:.2f} {' '.join(symbols)}".strip()
    spam = action is not Action.ACCEPT
    headers = [
        ("X-Spam-Status", f"{'Yes' if spam else 'No'}, score={score:.2f} required={required:.2f}"),
        ("X-Spam-Action", name or "unknown"),
    ]
    added = (response.get("milter") or {}).get("add_headers") or {}
    for key, value in added.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            text = v.get("value") if isinstance(v, dict) else v
            if isinstance(text, str) and _safe(key) and _safe(text):
                headers.append((key, text))
    return Verdict(action, detail, headers)


def _safe(text: str) -> bool:
    return 0 < len(text) < 2000 and "\r" not in text and "\n" not in text.replace("\n\t", "").replace("\n ", "")


def render(headers: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in headers)


class RspamdScanner:
    def __init__(self, settings: AntispamSettings) -> None:
        self.settings = settings
        self.url = settings.rspamd_url.rstrip("/") + "/checkv2"
        self.password = ""
        if settings.password_file is not None:
            self.password = settings.password_file.read_text(encoding="utf-8").strip()
        self.client = httpx.AsyncClient(timeout=settings.timeout)

    async def close(self) -> None:
        await self.client.aclose()

    async def scan(self, queue_id: str, envelope: Envelope, message: bytes) -> Verdict:
        if len(message) > self.settings.max_size:
            return Verdict(Action.ACCEPT, "too large to scan", [("X-Spam-Status", "unchecked, too large")])
        headers = {
            "Queue-Id": queue_id,
            "From": envelope.sender,
            "IP": envelope.client_ip,
            "Helo": envelope.helo or "unknown",
            "Pass": "all",
        }
        if self.password:
            headers["Password"] = self.password
        rcpts = [("Rcpt", r) for r in envelope.recipients]
        try:
            r = await self.client.post(self.url, content=message, headers=list(headers.items()) + rcpts)
            r.raise_for_status()
            return verdict(r.json())
        except (httpx.HTTPError, ValueError) as e:
            log.warning("rspamd check of %s failed: %s: %s", queue_id, type(e).__name__, e)
            if self.settings.on_error == "accept":
                return Verdict(Action.ACCEPT, "rspamd unavailable", [("X-Spam-Status", "unchecked")])
            return Verdict(Action.TEMPFAIL, "rspamd unavailable")
