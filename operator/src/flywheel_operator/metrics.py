"""Prometheus metrics of the operator itself: reconciles, their time, their failures."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECONCILE_SECONDS = Histogram(
    "flywheel_reconcile_seconds",
    "Time of one reconcile of one object.",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RECONCILE_ERRORS = Counter("flywheel_reconcile_errors_total", "Reconciles that raised.", ["kind"])
API_SECONDS = Histogram(
    "flywheel_api_request_seconds",
    "Time of one request to the API server, retries included.",
    ["method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
API_REQUESTS = Counter(
    "flywheel_api_requests_total",
    "Requests to the API server (each retry counted), by verb and resource: where the "
    "calls of a reconcile go.",
    ["verb", "resource"],
)
