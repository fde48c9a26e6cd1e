"""Operator settings: the one place that reads the environment."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from flywheel.api.trainingjob import DEFAULT_RAY_VERSION
from flywheel_operator import labels

DEFAULT_RUNTIME_IMAGE = "flywheel/runtime:0.1.0"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What builders need besides the spec. Passed in, never read from the environment."""

    runtime_image: str = DEFAULT_RUNTIME_IMAGE
    artifact_root: str = "pvc://flywheel-artifacts/"
    # Runtime pods get no API token unless a service account is named: results travel
    # back as the pod's termination message, so they need no API access.
    runtime_service_account: str | None = None
    # The safety resync: every object is reconciled once per period, at a random moment
    # of it, besides the reconciles its own and its children's changes cause.
    resync_seconds: float = 600.0
    # Reconciles run at once (threads), each making its API calls one after another;
    # sized to what one API server answers without queueing.
    workers: int = 8
    field_manager: str = labels.FIELD_MANAGER
    image_pull_policy: str = "IfNotPresent"
    # Ray clusters run Flywheel code (the Serve app, `flywheel train run`), so their image
    # is the runtime image unless set; a TrainingJob may name its own.
    ray_image: str | None = None
    ray_version: str = DEFAULT_RAY_VERSION
    pvc_root: str = "/mnt/pvc"
    # Rollout analyses read Prometheus when set, else each router's rollout report at
    # its Service, or at `router_url` (a template with {name} and {namespace}).
    prometheus_url: str | None = None
    router_url: str | None = None
    # A child's change reconciles its owner this much later: the burst of changes a Job
    # and its Pod go through (created, scheduled, started, finished) is one reconcile and
    # one status write, not one each. An owner's own change is reconciled at once.
    child_delay_seconds: float = 0.5
    # How often a rollout under way is analysed, whatever the resync interval.
    rollout_seconds: float = 5.0
    # How often a running training's progress is read from the Ray dashboard.
    progress_seconds: float = 60.0

    @property
    def ray_cluster_image(self) -> str:
        return self.ray_image or self.runtime_image


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    defaults = Settings()
    return Settings(
        runtime_image=env.get("FLYWHEEL_RUNTIME_IMAGE", defaults.runtime_image),
        artifact_root=env.get("FLYWHEEL_ARTIFACT_ROOT", defaults.artifact_root),
        runtime_service_account=env.get("FLYWHEEL_SERVICE_ACCOUNT") or None,
        resync_seconds=float(env.get("FLYWHEEL_RESYNC_SECONDS", defaults.resync_seconds)),
        workers=int(env.get("FLYWHEEL_WORKERS", defaults.workers)),
        image_pull_policy=env.get("FLYWHEEL_IMAGE_PULL_POLICY", defaults.image_pull_policy),
        ray_image=env.get("FLYWHEEL_RAY_IMAGE") or None,
        ray_version=env.get("FLYWHEEL_RAY_VERSION", defaults.ray_version),
        prometheus_url=env.get("FLYWHEEL_PROMETHEUS_URL") or None,
        router_url=env.get("FLYWHEEL_ROUTER_URL") or None,
        child_delay_seconds=float(
            env.get("FLYWHEEL_CHILD_DELAY_SECONDS", defaults.child_delay_seconds)
        ),
        rollout_seconds=float(env.get("FLYWHEEL_ROLLOUT_SECONDS", defaults.rollout_seconds)),
        progress_seconds=float(env.get("FLYWHEEL_PROGRESS_SECONDS", defaults.progress_seconds)),
    )
