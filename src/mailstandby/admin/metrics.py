"""Prometheus metrics, read from the live objects at scrape time.

One registry per application (no process-global state): the failover mode,
the health of the primary and of each watched address, probe latency, queue
depth, and counters of transitions and probe rounds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mailstandby.core.model import Mode

_STATUS_VALUE = {"up": 1.0, "down": 0.0, "unknown": -1.0}


class StandbyCollector(Collector):
    def __init__(
        self,
        failover: Callable[[], dict[str, Any]],
        health: Callable[[], dict[str, Any]],
        queue_depth: Callable[[], int],
        transitions: Callable[[], int],
    ) -> None:
        self.failover = failover
        self.health = health
        self.queue_depth = queue_depth
        self.transitions = transitions

    def collect(self) -> Iterator[Metric]:
        state = self.failover()
        mode = GaugeMetricFamily(
            "mailstandby_failover_mode", "1 for the current failover mode, 0 for the others", labels=["mode"]
        )
        for m in Mode:
            mode.add_metric([m.value], 1.0 if state["mode"] == m.value else 0.0)
        yield mode
        yield GaugeMetricFamily("mailstandby_failover_outage", "Number of the current or last outage", state["outage"])
        yield CounterMetricFamily(
            "mailstandby_failover_transitions", "Failover transitions since start", self.transitions()
        )
        health = self.health()
        primary = GaugeMetricFamily(
            "mailstandby_primary_up", "Health of the primary: 1 up, 0 down, -1 unknown", labels=["target"]
        )
        primary.add_metric(["primary"], _STATUS_VALUE[health["primary"]["status"]])
        yield primary
        yield from self._flaps(health)
        addresses = GaugeMetricFamily(
            "mailstandby_watched_address_up",
            "Health of each watched address: 1 up, 0 down, -1 unknown",
            labels=["address"],
        )
        for address, h in health["addresses"].items():
            addresses.add_metric([address], _STATUS_VALUE[h["status"]])
        yield addresses
        latency = GaugeMetricFamily(
            "mailstandby_probe_latency_seconds", "Latency of the last probe of each kind", labels=["probe"]
        )
        for probe, seconds in health["latency"].items():
            latency.add_metric([probe], seconds)
        yield latency
        yield CounterMetricFamily("mailstandby_probe_rounds", "Probe rounds since start", health["rounds"])
        yield CounterMetricFamily("mailstandby_probe_rcpts", "RCPT TO commands the probes sent", health["rcpts"])
        counts = GaugeMetricFamily("mailstandby_probed_addresses", "Probed addresses by status", labels=["status"])
        for status, n in health["counts"].items():
            counts.add_metric([status], n)
        yield counts
        yield GaugeMetricFamily("mailstandby_queue_depth", "Messages in the delivery queue", self.queue_depth())

    @staticmethod
    def _flaps(health: dict[str, Any]) -> Iterator[Metric]:
        """Flap damping of the primary (docs/failover.md): times it went down, and the penalty it carries."""
        outages = CounterMetricFamily(
            "mailstandby_primary_outages", "Times declared down since start", labels=["target"]
        )
        outages.add_metric(["primary"], health["primary"]["outages"])
        yield outages
        held = GaugeMetricFamily(
            "mailstandby_primary_flap_penalty_seconds",
            "Seconds added to min_dwell before the primary is trusted again",
            labels=["target"],
        )
        held.add_metric(["primary"], health["primary"]["flap_penalty"])
        yield held


def registry(collector: StandbyCollector) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
