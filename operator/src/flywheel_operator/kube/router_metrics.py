"""The router's measurements of a rollout step: what canary, shadow and bandit analyses read.

Two sources, chosen by the operator's settings:

- the router's own rollout report (`GET /v1/models/<name>/rollout`), counted since the
  router last changed its split, so it is exactly the current step. It is used only once
  the router serves the split of the step being analysed: a report from before the new
  weights arrived belongs to the last step. (The Triton path's router watches its
  ConfigMap, so that is a fraction of a second; Ray Serve applies a `user_config` in
  about as long.)
- Prometheus (`prometheusURL`): `increase(...)` of the router's counters over the time
  since the step began, summed over every router replica.

Either way "nothing measured" is None, and an analysis of None is Inconclusive: it never
promotes. `not_exported` is the reader that measures nothing (strategy `none` needs none).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from flywheel.serving import rollout
from flywheel.serving.rollout import Counts, Metrics

log = logging.getLogger(__name__)

# url -> parsed JSON; raises OSError or ValueError when nothing usable answered.
Fetch = Callable[[str], Any]
TIMEOUT_SECONDS = 5.0
SPLIT_TOLERANCE = 0.001  # shares the router reports are floats


@dataclasses.dataclass(frozen=True)
class Step:
    """The rollout step whose measurements are asked for."""

    namespace: str
    deployment: str
    router_url: str  # where clients reach the router (the builders' `url`)
    candidate: str
    since: datetime | None  # when the step began
    split: Mapping[str, float]  # percent per version the step serves
    now: datetime
    ab_metric: str | None = None  # strategy abtest: reward or success, counted per arm


class RouterMetrics(Protocol):
    def __call__(self, step: Step, /) -> Metrics | None:
        """The router's counts for the candidate since the step began, or None when
        nothing was measured."""
        ...


def not_exported(step: Step, /) -> Metrics | None:
    return None


def fetch_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as reply:
        return json.loads(reply.read())


@dataclasses.dataclass(frozen=True)
class RolloutReports:
    """Reads the router's rollout report at the router's Service, or at `base_url` (a
    template with `{name}` and `{namespace}`) when one is set."""

    base_url: str | None = None
    fetch: Fetch = fetch_json

    def __call__(self, step: Step, /) -> Metrics | None:
        base = step.router_url
        if self.base_url:
            base = self.base_url.format(name=step.deployment, namespace=step.namespace)
        name = urllib.parse.quote(step.deployment)
        url = f"{base.rstrip('/')}/v1/models/{name}/rollout"
        try:
            report = self.fetch(url)
        except (OSError, ValueError) as exc:
            where = f"{step.namespace}/{step.deployment}"
            log.info("%s: no rollout report from %s: %s", where, url, exc)
            return None
        return from_report(report, step.candidate, step.split, step.ab_metric)


def from_report(
    report: Any, candidate: str, split: Mapping[str, float], ab_metric: str | None = None
) -> Metrics | None:
    """The candidate's Metrics from a rollout report, or None when the report is of
    another candidate or of a split other than `split` (the router has not caught up).

    >>> from_report({"strategy": "canary", "weights": {"v1": 0.9, "v2": 0.1},
    ...     "candidate": {"version": "v2", "requests": 120, "errors": 1}},
    ...     "v2", {"v1": 90, "v2": 10}).requests
    120
    """
    if not isinstance(report, dict):
        return None
    c = report.get("candidate")
    if not isinstance(c, dict) or c.get("version") != candidate:
        return None
    # A bandit's weights are its own: only the split of fixed strategies is checked.
    if report.get("strategy") != "bandit" and not same_split(report.get("weights"), split):
        return None
    counts = rollout.ab_counts(report, candidate, ab_metric) if ab_metric else None
    return Metrics(
        requests=int(c.get("requests") or 0),
        errors=int(c.get("errors") or 0),
        p99_latency_ms=_number(c.get("p99LatencyMs")),
        agreement=_number(c.get("agreement")),
        candidate_share=_number(c.get("candidateShare")),
        control=counts[0] if counts else None,
        treatment=counts[1] if counts else None,
    )


def same_split(shares: Any, split: Mapping[str, float]) -> bool:
    """Whether the router's shares (fractions) are the percent split wanted."""
    if not isinstance(shares, dict):
        return False
    total = sum(w for w in split.values() if w > 0)
    wanted = {v: w / total for v, w in split.items() if w > 0} if total else {}
    live = {str(v): float(w) for v, w in shares.items() if float(w) > 0}
    return live.keys() == wanted.keys() and all(
        math.isclose(live[v], wanted[v], abs_tol=SPLIT_TOLERANCE) for v in wanted
    )


@dataclasses.dataclass(frozen=True)
class PrometheusQueries:
    """Reads the router's counters from Prometheus (the standalone router's metrics)."""

    url: str
    fetch: Fetch = fetch_json

    def __call__(self, step: Step, /) -> Metrics | None:
        if step.since is None:
            return None
        seconds = int((step.now - step.since).total_seconds())
        if seconds < 1:
            return None
        q = queries(step.deployment, step.candidate, seconds)
        try:
            values = {k: self.scalar(v) for k, v in q.items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            where = f"{step.namespace}/{step.deployment}"
            log.info("%s: Prometheus at %s: %s", where, self.url, exc)
            return None
        requests = values["requests"]
        if requests is None or requests < 1:
            return None
        agree, disagree = values["agree"] or 0.0, values["disagree"] or 0.0
        p99 = values["p99"]
        arms = self.ab_arms(step, seconds) if step.ab_metric else None
        return Metrics(
            requests=round(requests),
            errors=round(values["errors"] or 0),
            p99_latency_ms=None if p99 is None else p99 * 1000,
            agreement=agree / (agree + disagree) if agree + disagree else None,
            control=arms[0] if arms else None,
            treatment=arms[1] if arms else None,
        )

    def ab_arms(self, step: Step, seconds: int) -> tuple[Counts, Counts] | None:
        """(stable, candidate) outcomes of an A/B test over the step (its one fixed
        split): feedback and rewards above 0, or requests and those without an error."""
        stable = next((v for v in step.split if v != step.candidate), None)
        if stable is None:
            return None
        found = []
        for version in (stable, step.candidate):
            q = queries(step.deployment, version, seconds)
            try:
                if step.ab_metric == "reward":
                    n, good = self.scalar(q["feedback"]) or 0.0, self.scalar(q["rewarded"]) or 0.0
                else:
                    n = self.scalar(q["requests"]) or 0.0
                    good = n - (self.scalar(q["errors"]) or 0.0)
            except (OSError, ValueError, KeyError, TypeError):
                return None
            found.append(Counts(round(n), round(good)))
        return found[0], found[1]

    def scalar(self, query: str) -> float | None:
        url = f"{self.url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        body = self.fetch(url)
        if body.get("status") != "success":
            raise ValueError(f"query {query!r}: {body.get('error', body)}")
        result = body["data"]["result"]
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value


def queries(deployment: str, version: str, seconds: int) -> dict[str, str]:
    """PromQL over the router's metrics (flywheel.serving.metrics) for one step.

    >>> queries("churn", "v2", 60)["requests"]
    'sum(increase(flywheel_router_requests_total{deployment="churn",version="v2"}[60s]))'
    """
    sel = f'deployment="{_label(deployment)}",version="{_label(version)}"'
    window = f"[{seconds}s]"
    return {
        "requests": f"sum(increase(flywheel_router_requests_total{{{sel}}}{window}))",
        "errors": f"sum(increase(flywheel_router_errors_total{{{sel}}}{window}))",
        "p99": "histogram_quantile(0.99, sum by (le) "
        f"(increase(flywheel_router_latency_seconds_bucket{{{sel}}}{window})))",
        "feedback": f"sum(increase(flywheel_router_rewards_total{{{sel}}}{window}))",
        "rewarded": f"sum(increase(flywheel_router_rewarded_total{{{sel}}}{window}))",
        "agree": f'sum(increase(flywheel_router_shadow_total{{{sel},outcome="agree"}}{window}))',
        "disagree": "sum(increase(flywheel_router_shadow_total"
        f'{{{sel},outcome="disagree"}}{window}))',
    }


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _number(value: Any) -> float | None:
    return None if value is None else float(value)
