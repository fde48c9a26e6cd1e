"""The router's configuration: what the operator writes (the Triton router's ConfigMap,
or the Ray Serve router's `user_config`), plus router-only settings with defaults.

    {"deployment": "churn", "stable": "v1", "candidate": "v2",
     "traffic": {"v1": 90, "v2": 10}, "strategy": "canary",
     "shadow": null, "bandit": null,
     "requestLogging": {"sampleRate": 0.1, "uri": "file:///logs"},
     "endpoints": {"v1": "http://churn-v1:8000", "v2": "http://churn-v2:8000"},
     # optional, router-only:
     "model": "churn",                 # the model name the version servers serve
     "backend": "http",                # http | triton-http | triton-grpc (for endpoints)
     "applications": {"v1": "churn-v1"},   # Ray Serve: version -> application
     "stickyHeader": "x-flywheel-key", "callTimeoutMs": 1000, "totalTimeoutMs": 3000,
     "maxConcurrency": 256, "maxQueue": 512, "queueTimeoutMs": 1000,
     "ejectAfterErrors": 5, "ejectSeconds": 10, "promoteHoldSeconds": 60,
     "rewards": "binary", "features": ["tenure", ...]}

`parse` never half-applies: it returns a complete `RouterConfig` or raises ValueError,
and the caller keeps the previous one.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from flywheel.api.common import duration_seconds
from flywheel.api.modeldeployment import BanditRollout, RequestLogging, ShadowRollout, Strategy

BACKENDS = ("http", "triton-http", "triton-grpc")


@dataclasses.dataclass(frozen=True)
class RouterConfig:
    deployment: str
    stable: str
    candidate: str | None = None
    traffic: Mapping[str, float] = dataclasses.field(default_factory=dict)
    strategy: str = Strategy.NONE.value
    shadow: ShadowRollout | None = None
    bandit: BanditRollout | None = None
    logging: RequestLogging = dataclasses.field(default_factory=RequestLogging)
    endpoints: Mapping[str, str] = dataclasses.field(default_factory=dict)
    applications: Mapping[str, str] = dataclasses.field(default_factory=dict)
    model: str | None = None
    backend: str = "http"
    sticky_header: str = "x-flywheel-key"
    call_timeout_s: float = 1.0
    total_timeout_s: float = 3.0
    max_concurrency: int = 256
    max_queue: int = 512
    queue_timeout_s: float = 1.0
    eject_after_errors: int = 5
    eject_seconds: float = 10.0
    promote_hold_s: float = 60.0
    rewards: str = "binary"
    features: tuple[str, ...] = ()

    @property
    def versions(self) -> list[str]:
        """Stable first, then the candidate, then any other version with traffic."""
        out = [self.stable] + ([self.candidate] if self.candidate else [])
        return out + [v for v in self.traffic if v not in out]

    @property
    def model_name(self) -> str:
        return self.model or self.deployment

    @property
    def reward_window_s(self) -> float:
        return duration_seconds(self.bandit.reward_window) if self.bandit else 3600.0

    def weights(self) -> dict[str, float]:
        """The user-traffic split; everything on stable when none is given."""
        weights = {v: float(w) for v, w in self.traffic.items() if w > 0}
        return weights or {self.stable: 100.0}


def parse(document: Any) -> RouterConfig:
    """A validated config from the JSON document (a dict, str or bytes)."""
    if isinstance(document, (str, bytes)):
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise ValueError(f"router config is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError("router config must be a JSON object")
    d = document
    try:
        stable = _text(d, "stable", required=True)
        assert stable is not None
        traffic = {str(k): float(v) for k, v in (d.get("traffic") or {}).items()}
        if any(w < 0 for w in traffic.values()):
            raise ValueError(f"traffic weights must not be negative: {traffic}")
        strategy = Strategy(d.get("strategy") or "none").value
        backend = str(d.get("backend") or "http")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        rewards = str(d.get("rewards") or "binary")
        if rewards not in ("binary", "continuous"):
            raise ValueError(f"rewards must be binary or continuous, not {rewards!r}")
        config = RouterConfig(
            deployment=_text(d, "deployment", required=True) or "",
            stable=stable,
            candidate=_text(d, "candidate"),
            traffic=traffic,
            strategy=strategy,
            shadow=ShadowRollout.model_validate(d["shadow"]) if d.get("shadow") else None,
            bandit=BanditRollout.model_validate(d["bandit"]) if d.get("bandit") else None,
            logging=RequestLogging.model_validate(d.get("requestLogging") or {}),
            endpoints={str(k): str(v) for k, v in (d.get("endpoints") or {}).items()},
            applications={str(k): str(v) for k, v in (d.get("applications") or {}).items()},
            model=_text(d, "model"),
            backend=backend,
            sticky_header=str(d.get("stickyHeader") or "x-flywheel-key").lower(),
            call_timeout_s=_positive(d, "callTimeoutMs", 1000) / 1000,
            total_timeout_s=_positive(d, "totalTimeoutMs", 3000) / 1000,
            max_concurrency=int(_positive(d, "maxConcurrency", 256)),
            max_queue=int(_positive(d, "maxQueue", 512, allow_zero=True)),
            queue_timeout_s=_positive(d, "queueTimeoutMs", 1000) / 1000,
            eject_after_errors=int(_positive(d, "ejectAfterErrors", 5)),
            eject_seconds=_positive(d, "ejectSeconds", 10, allow_zero=True),
            promote_hold_s=_positive(d, "promoteHoldSeconds", 60, allow_zero=True),
            rewards=rewards,
            features=tuple(str(f) for f in d.get("features") or ()),
        )
    except (ValidationError, KeyError, TypeError) as exc:
        raise ValueError(f"router config: {exc}") from None
    if config.strategy == Strategy.SHADOW and config.candidate is None:
        raise ValueError("router config: strategy shadow needs a candidate")
    if config.strategy == Strategy.BANDIT and config.candidate is None:
        raise ValueError("router config: strategy bandit needs a candidate")
    unknown = [v for v in config.traffic if v not in config.versions]
    if unknown:
        raise ValueError(f"router config: traffic names unknown versions {unknown}")
    unplaced = [v for v in config.versions if v not in config.endpoints]
    unplaced = [v for v in unplaced if v not in config.applications]
    if unplaced:
        raise ValueError(f"router config: versions {unplaced} have no endpoint or application")
    return config


def _text(d: Mapping[str, Any], key: str, required: bool = False) -> str | None:
    value = d.get(key)
    if value is None or value == "":
        if required:
            raise ValueError(f"router config: {key!r} is required")
        return None
    return str(value)


def _positive(d: Mapping[str, Any], key: str, default: float, allow_zero: bool = False) -> float:
    value = float(d.get(key, default))
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"router config: {key} must be {'>= 0' if allow_zero else '> 0'}")
    return value
