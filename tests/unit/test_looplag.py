"""The event-loop lag monitor: a loop held by CPU work shows in the histogram and the log."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mailstandby.looplag import LoopLagMonitor


def count(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("mailstandby_event_loop_lag_seconds_count") or 0.0


async def test_a_held_loop_is_measured_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry(auto_describe=True)
    monitor = LoopLagMonitor(registry, warn_after=0.1, interval=0.02)
    task = asyncio.create_task(monitor.run())
    try:
        async with asyncio.timeout(30):
            while count(registry) < 1:
                await asyncio.sleep(0.01)
        with caplog.at_level(logging.WARNING, logger="mailstandby.looplag"):
            time.sleep(0.3)  # CPU work on the loop, on purpose: the monitor's timer cannot fire meanwhile
            seen = count(registry)
            async with asyncio.timeout(30):
                while count(registry) <= seen:
                    await asyncio.sleep(0.01)
        # the timer was due at most `interval` after the loop was taken, and ran only after it was let go
        assert monitor.worst >= 0.3 - 0.02
        assert any("loop.lag" in r.getMessage() for r in caplog.records)
        assert b"mailstandby_event_loop_lag_seconds_bucket" in generate_latest(registry)
    finally:
        task.cancel()


def test_warnings_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    monitor = LoopLagMonitor(None, warn_after=0.1, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="mailstandby.looplag"):
        monitor.observe(0.2)
        monitor.observe(0.9)  # within WARN_EVERY: remembered, not logged
        monitor.observe(0.05)
        now[0] += 11
        monitor.observe(0.3)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and "0.200s" in messages[0] and "0.900s" in messages[1]
