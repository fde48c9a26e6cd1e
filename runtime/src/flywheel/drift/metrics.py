"""Prometheus metrics of drift, produced when they are read.

`DriftCollector` turns DriftMonitor statuses into gauges at scrape time (register it in
a process that can list the monitors, such as the operator's metrics endpoint);
`exposition` renders the same gauges as text, which a run writes beside its report for
a node exporter's textfile collector or a Pushgateway.

    flywheel_drift_score{namespace,monitor,feature,method}       the feature's score
    flywheel_drift_p_value{namespace,monitor,feature,method}     ks, chi2: corrected p-value
    flywheel_drift_threshold{namespace,monitor,feature,method}   alpha, or the threshold
    flywheel_drift_drifted{namespace,monitor,feature,method}     1 Drift, 0 NoDrift
    flywheel_drift_verdict{namespace,monitor,verdict}            1 for the run's verdict
    flywheel_drift_window_requests{namespace,monitor}            requests in the window
    flywheel_drift_last_run_timestamp_seconds{namespace,monitor}

A feature whose verdict is Insufficient has no score and no `drifted` sample: an alert
on `flywheel_drift_drifted == 1` never fires on missing data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from flywheel.api.driftmonitor import DriftMonitorStatus, Verdict

Monitors = Iterable[tuple[str, str, DriftMonitorStatus]]  # (namespace, name, status)

FEATURE_LABELS = ["namespace", "monitor", "feature", "method"]
MONITOR_LABELS = ["namespace", "monitor"]


class DriftCollector(Collector):
    """Gauges from the statuses `source` returns, read at every scrape."""

    def __init__(self, source: Callable[[], Monitors]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        score = GaugeMetricFamily(
            "flywheel_drift_score",
            "Drift score of a feature (see the method)",
            labels=FEATURE_LABELS,
        )
        p_value = GaugeMetricFamily(
            "flywheel_drift_p_value",
            "Corrected p-value of a feature (ks, chi2); drift when below the threshold",
            labels=FEATURE_LABELS,
        )
        threshold = GaugeMetricFamily(
            "flywheel_drift_threshold",
            "alpha (ks, chi2) or the score at which drift begins (psi, wasserstein, js)",
            labels=FEATURE_LABELS,
        )
        drifted = GaugeMetricFamily(
            "flywheel_drift_drifted",
            "1 when the feature drifted, 0 when not; absent when Insufficient",
            labels=FEATURE_LABELS,
        )
        verdict = GaugeMetricFamily(
            "flywheel_drift_verdict",
            "1 for the latest run's verdict",
            labels=[*MONITOR_LABELS, "verdict"],
        )
        requests = GaugeMetricFamily(
            "flywheel_drift_window_requests", "Requests in the latest window", labels=MONITOR_LABELS
        )
        last_run = GaugeMetricFamily(
            "flywheel_drift_last_run_timestamp_seconds",
            "When the latest run finished",
            labels=MONITOR_LABELS,
        )
        for namespace, name, status in self.source():
            for s in status.scores:
                labels = [namespace, name, s.feature, str(s.method)]
                threshold.add_metric(labels, s.threshold)
                if s.score is not None:
                    score.add_metric(labels, s.score)
                if s.p_value is not None:
                    p_value.add_metric(labels, s.p_value)
                if s.verdict in (Verdict.DRIFT, Verdict.NO_DRIFT):
                    drifted.add_metric(labels, 1.0 if s.verdict == Verdict.DRIFT else 0.0)
            if status.verdict is not None:
                for v in Verdict:
                    verdict.add_metric([namespace, name, v.value], float(status.verdict == v))
            if status.samples is not None:
                requests.add_metric([namespace, name], status.samples)
            if status.last_run is not None:
                last_run.add_metric([namespace, name], status.last_run.timestamp())
        yield from (score, p_value, threshold, drifted, verdict, requests, last_run)


def exposition(monitors: Monitors) -> bytes:
    """The gauges of these monitors in the Prometheus text format."""
    items = list(monitors)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DriftCollector(lambda: items))
    return generate_latest(registry)
