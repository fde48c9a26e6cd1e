"""The router's Prometheus metrics, per model version, on a registry of its own.

Children are cached per label set, so recording a request costs a few dict lookups.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
)  # fmt: skip


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "flywheel_router_requests", "Requests answered, by version and code.",
            ["deployment", "version", "code"], registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "flywheel_router_errors", "Failed calls to a version (error or timeout).",
            ["deployment", "version", "kind"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "flywheel_router_latency_seconds", "Time to answer, by the version that answered.",
            ["deployment", "version"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.decisions = Counter(
            "flywheel_router_decisions", "Routing decisions: version chosen and why.",
            ["deployment", "version", "reason"], registry=r,
        )  # fmt: skip
        self.rewards = Counter(
            "flywheel_router_rewards", "Rewards received through feedback.",
            ["deployment", "version"], registry=r,
        )  # fmt: skip
        self.reward_sum = Counter(
            "flywheel_router_reward_sum", "Sum of rewards received through feedback.",
            ["deployment", "version"], registry=r,
        )  # fmt: skip
        self.rewarded = Counter(
            "flywheel_router_rewarded", "Feedback whose reward was above 0 (an A/B test's "
            "successes).", ["deployment", "version"], registry=r,
        )  # fmt: skip
        self.shadow = Counter(
            "flywheel_router_shadow", "Mirrored requests by outcome "
            "(agree, disagree, error, timeout, dropped).",
            ["deployment", "version", "outcome"], registry=r,
        )  # fmt: skip
        self.shadow_delta = Histogram(
            "flywheel_router_shadow_delta", "Mean absolute prediction delta, shadow vs primary.",
            ["deployment", "version"], buckets=(0.001, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0),
            registry=r,
        )  # fmt: skip
        self.shadow_latency = Histogram(
            "flywheel_router_shadow_latency_seconds", "Time the shadow version took.",
            ["deployment", "version"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.rejected = Counter(
            "flywheel_router_rejected", "Requests refused under overload (429 or 503).",
            ["deployment", "code"], registry=r,
        )  # fmt: skip
        self.ejections = Counter(
            "flywheel_router_ejections", "Times a version was ejected after consecutive errors.",
            ["deployment", "version"], registry=r,
        )  # fmt: skip
        self.config_errors = Counter(
            "flywheel_router_config_errors", "Config updates refused (the old one stays).",
            ["deployment"], registry=r,
        )  # fmt: skip
        self.config_reloads = Counter(
            "flywheel_router_config_reloads", "Config updates applied.", ["deployment"],
            registry=r,
        )  # fmt: skip
        self.logged = Counter(
            "flywheel_router_logged_requests", "Requests written to the request log.",
            ["deployment"], registry=r,
        )  # fmt: skip
        self._cache: dict[tuple[Any, ...], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = metric.labels(*labels)
        return found

    def add_gauges(self, name: str, doc: str, read: Callable[[], dict[str, float]]) -> None:
        """A gauge per version read at scrape time (weights, in-flight)."""
        self.registry.register(_Scraped(name, doc, read))


class _Scraped(Collector):
    def __init__(self, name: str, doc: str, read: Callable[[], dict[str, float]]) -> None:
        self.name, self.doc, self.read = name, doc, read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.doc, labels=["version"])
        for version, value in sorted(self.read().items()):
            family.add_metric([version], value)
        yield family


__all__ = ["Gauge", "RouterMetrics"]
