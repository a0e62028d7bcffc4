"""Delivery results as health evidence for the monitor (the queue runner's `_report`)."""

from __future__ import annotations

from typing import Any

from mailstandby.config import QueueSettings
from mailstandby.core.reply import Reply
from mailstandby.directory.static import StaticDirectory
from mailstandby.queue.runner import QueueRunner
from mailstandby.routing import Router


def reported(replies: dict[str, Reply]) -> list[tuple[bool, str]]:
    evidence: list[tuple[bool, str]] = []
    runner = QueueRunner(
        store=Any,  # type: ignore[arg-type]  # not used by _report
        router=Router(StaticDirectory(["corp.test"], [])),
        connect=lambda: None,  # type: ignore[arg-type,return-value]
        settings=QueueSettings(),
        hostname="standby.corp.test",
        evidence=lambda ok, why: evidence.append((ok, why)),
    )
    runner._report(replies)
    return evidence


def test_a_mailbox_the_primary_calls_unavailable_is_reported_with_its_address() -> None:
    got = reported(
        {
            "alice@corp.test": Reply(250, "2.0.0", "ok"),
            "bob@corp.test": Reply(452, "4.2.2", "mailbox full"),
            "carol@corp.test": Reply(550, "5.1.1", "no such user"),
        }
    )
    bob = "mailbox unavailable for <bob@corp.test>: 452 4.2.2 mailbox full"
    assert got == [(False, bob), (True, "queue delivered")]


def test_system_trouble_counts_against_the_primary_and_user_errors_say_nothing() -> None:
    assert reported({"a@corp.test": Reply(421, "4.3.2", "shutting down")}) == [
        (False, "queue deferred: 421 4.3.2 shutting down")
    ]
    assert reported({"c@corp.test": Reply(550, "5.1.1", "no such user")}) == []
