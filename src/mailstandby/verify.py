"""Recipient verification against the primary at RCPT time (backup-MX mode).

As a lower-priority MX, mailstandby must not accept what the primary would
refuse: that is backscatter later, or a way around the primary's checks. With
`smtp.verify_recipients`, a recipient our directory knows is also asked of the
primary (`MAIL FROM:<>`, `RCPT TO`, `RSET`: nothing is sent) while the primary
is in service:

- the primary accepts: accepted here;
- the primary refuses permanently (5xx, e.g. 550 5.1.1): refused here with
  its own code, while the sender is still connected;
- the primary does not answer or defers (4xx): our directory decides — an
  outage must not stop mail.

Answers are cached (accepted for `verify_ttl`, refusals for `verify_negative_ttl`)
so a burst does not become a burst of callouts. During a failover nothing is
asked: the primary is down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from mailstandby.config import PrimarySettings, SMTPSettings
from mailstandby.core.model import Address
from mailstandby.core.reply import Reply
from mailstandby.monitor import probes
from mailstandby.monitor.health import Observation

log = logging.getLogger(__name__)

MAX_CACHE = 50_000


class RecipientVerifier:
    def __init__(
        self,
        settings: SMTPSettings,
        primary: PrimarySettings,
        *,
        hostname: str,
        in_service: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.primary = primary
        self.hostname = primary.helo_name or hostname
        self.in_service = in_service
        self.clock = clock
        self._cache: dict[str, tuple[float, Reply | None]] = {}

    async def refusal(self, address: Address) -> Reply | None:
        """The primary's permanent refusal of `address`, or None (accepted, or no answer to go by)."""
        if not self.in_service():
            return None
        now = self.clock()
        cached = self._cache.get(address.key)
        if cached is not None and cached[0] > now:
            return cached[1]
        p = self.primary
        session = await probes.rcpt(
            p.host, p.port, self.hostname, [str(address)], self.settings.verify_timeout, lmtp=p.protocol == "lmtp"
        )
        result = session.results.get(str(address))
        if result is None:  # the session ended before the question: no answer to go by
            why = session.failure or "no answer"
            log.info("recipient verification of %s inconclusive (%s): accepting by the directory", address, why)
            return None
        code = result.detail[:3]
        if result.seen is Observation.OK:
            refusal, ttl = None, self.settings.verify_ttl
        elif code.isdigit() and code.startswith("5"):
            refusal, ttl = _reply(result.detail), self.settings.verify_negative_ttl
        else:  # 4xx or no answer: not cached, our directory decides
            log.info(
                "recipient verification of %s inconclusive (%s): accepting by the directory", address, result.detail
            )
            return None
        if len(self._cache) >= MAX_CACHE:
            self._cache.clear()
        self._cache[address.key] = (now + ttl, refusal)
        return refusal


def _reply(detail: str) -> Reply:
    code, _, rest = detail.partition(" ")
    status, _, text = rest.partition(" ")
    if status.count(".") != 2:
        status, text = "5.1.1", rest
    return Reply(int(code), status, f"Recipient address rejected by the primary: {text}"[:200])
