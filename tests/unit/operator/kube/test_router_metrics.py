"""Reading the router's measurements: its rollout report, or Prometheus."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

from flywheel.serving.rollout import Metrics
from flywheel_operator.kube import router_metrics
from tests.unit.operator.status.helpers import T0

REPORT = {
    "strategy": "canary",
    "weights": {"v1": 0.9, "v2": 0.1},
    "candidate": {"version": "v2", "requests": 150, "errors": 3, "p99LatencyMs": 12.5,
                  "agreement": None, "candidateShare": None},
}  # fmt: skip
STEP = router_metrics.Step(
    "ml",
    "churn",
    "http://churn.ml.svc",
    "v2",
    T0,
    {"v1": 90.0, "v2": 10.0},
    T0 + timedelta(seconds=60),
)


def test_the_report_of_the_step_gives_the_candidate_s_metrics() -> None:
    asked: list[str] = []

    def fetch(url: str) -> Any:
        asked.append(url)
        return REPORT

    measured = router_metrics.RolloutReports(fetch=fetch)(STEP)
    assert measured == Metrics(requests=150, errors=3, p99_latency_ms=12.5)
    assert asked == ["http://churn.ml.svc/v1/models/churn/rollout"]
    at = router_metrics.RolloutReports("http://127.0.0.1:9/{namespace}", fetch=fetch)
    at(STEP)
    assert asked[-1] == "http://127.0.0.1:9/ml/v1/models/churn/rollout"


def test_a_report_of_an_earlier_split_or_candidate_measures_nothing() -> None:
    # The router has not read the new weights yet: its window is the last step's.
    stale = {**REPORT, "weights": {"v1": 0.75, "v2": 0.25}}
    assert router_metrics.from_report(stale, "v2", {"v1": 90, "v2": 10}) is None
    assert router_metrics.from_report(REPORT, "v3", {"v1": 90, "v2": 10}) is None
    assert router_metrics.from_report({"candidate": None}, "v2", {"v1": 100}) is None
    bandit = {**stale, "strategy": "bandit"}  # a bandit's weights are its own
    assert router_metrics.from_report(bandit, "v2", {"v1": 50, "v2": 50}) is not None


def test_an_unreachable_router_measures_nothing() -> None:
    def fetch(url: str) -> Any:
        raise OSError("connection refused")

    assert router_metrics.RolloutReports(fetch=fetch)(STEP) is None


def test_prometheus_sums_the_step_s_window() -> None:
    values = {"requests": "200", "errors": "4", "p99": "0.02", "agree": "0", "disagree": "0",
              "feedback": "0", "rewarded": "0"}  # fmt: skip
    asked: list[str] = []

    def fetch(url: str) -> Any:
        query = parse_qs(urlparse(url).query)["query"][0]
        asked.append(query)
        name = next(k for k, q in router_metrics.queries("churn", "v2", 60).items()
                    if q == query)  # fmt: skip
        return {"status": "success", "data": {"result": [{"value": [0, values[name]]}]}}

    measured = router_metrics.PrometheusQueries("http://prom:9090", fetch=fetch)(STEP)
    assert measured == Metrics(requests=200, errors=4, p99_latency_ms=20.0, agreement=None)
    assert all("[60s]" in q for q in asked)


def test_prometheus_without_data_measures_nothing() -> None:
    def fetch(url: str) -> Any:
        return {"status": "success", "data": {"result": []}}

    assert router_metrics.PrometheusQueries("http://prom", fetch=fetch)(STEP) is None


def test_prometheus_counts_both_arms_of_an_ab_test() -> None:
    import dataclasses

    from flywheel.serving.rollout import Counts

    per_version = {
        "v1": {"requests": "500", "errors": "5", "feedback": "400", "rewarded": "40"},
        "v2": {"requests": "480", "errors": "2", "feedback": "390", "rewarded": "62"},
    }

    def fetch(url: str) -> Any:
        query = parse_qs(urlparse(url).query)["query"][0]
        for version, values in per_version.items():
            for name, q in router_metrics.queries("churn", version, 60).items():
                if q == query:
                    found = values.get(name, "0")
                    return {"status": "success", "data": {"result": [{"value": [0, found]}]}}
        raise AssertionError(query)

    prom = router_metrics.PrometheusQueries("http://prom", fetch=fetch)
    step = dataclasses.replace(STEP, split={"v1": 50.0, "v2": 50.0}, ab_metric="reward")
    measured = prom(step)
    assert measured is not None
    assert (measured.control, measured.treatment) == (Counts(400, 40), Counts(390, 62))
    success = prom(dataclasses.replace(step, ab_metric="success"))
    assert success is not None
    assert (success.control, success.treatment) == (Counts(500, 495), Counts(480, 478))
