"""The router's measurements of a rollout step: what canary, shadow and bandit analyses read.

The router does not export its measurements yet. Until it does, the operator reads them
with `not_exported`, which has none: every canary, shadow and bandit analysis is
Inconclusive, so a rollout holds its first step and nothing is promoted or rolled back
(strategy `none` needs no measurements). A reader of the router's counters for the current
step, made through the API server like every other call in this package, replaces it as
`handlers.reconciliation.Context.router_metrics`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from flywheel.serving.rollout import Metrics


class RouterMetrics(Protocol):
    def __call__(
        self, namespace: str, deployment: str, candidate: str, since: datetime | None, /
    ) -> Metrics | None:
        """The router's counts for `candidate` since the current step began (`since`),
        or None when nothing was measured."""
        ...


def not_exported(
    namespace: str, deployment: str, candidate: str, since: datetime | None, /
) -> Metrics | None:
    return None
