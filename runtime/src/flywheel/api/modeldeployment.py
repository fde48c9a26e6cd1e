"""ModelDeployment: model versions served on Ray Serve or Triton behind a rollout router."""

from __future__ import annotations

import enum
import itertools
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import Field, StringConstraints, field_validator, model_validator

from flywheel.api import common
from flywheel.api.common import FlywheelModel, ObjectMeta
from flywheel.api.featureview import Feature, FeatureView, Materialization, OfflineStore


class Backend(enum.StrEnum):
    RAYSERVE = "rayserve"
    TRITON = "triton"


ModelVersion = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]


# A registry alias: `candidate` (a version that passed its gates, the retrain's) and
# `champion` (the version a promotion made stable) are the ones Flywheel moves.
Alias = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
]

REF_EXACTLY_ONE = "give exactly one of trainingJobRef, version or alias"
REF_MODEL_NAME = "modelName goes with version or alias, and not with trainingJobRef"


class ModelRef(FlywheelModel):
    """A model version: the output of a TrainingJob, a registry name + version, or a
    registry name + alias (`{modelName: churn, alias: candidate}`), which the operator
    resolves to the version that holds the alias now."""

    model_name: Annotated[str, StringConstraints(min_length=1, max_length=63)] | None = None
    version: ModelVersion | None = None
    alias: Alias | None = Field(
        default=None,
        description="A registry alias of modelName: `candidate` names the newest version "
        "that passed its gates (a retrain's), `champion` the version promoted last.",
    )
    training_job_ref: common.LocalObjectReference | None = None

    model_config = common.with_cel(
        {
            "rule": "[has(self.trainingJobRef), has(self.version), has(self.alias)]"
            ".filter(x, x).size() == 1",
            "message": REF_EXACTLY_ONE,
        },
        {
            "rule": "has(self.modelName) == (has(self.version) || has(self.alias))",
            "message": REF_MODEL_NAME,
        },
    )

    @model_validator(mode="after")
    def _one_way_to_name_it(self) -> Self:
        given = [self.training_job_ref, self.version, self.alias]
        if sum(v is not None for v in given) != 1:
            raise ValueError(REF_EXACTLY_ONE)
        if (self.model_name is not None) != (self.version is not None or self.alias is not None):
            raise ValueError(REF_MODEL_NAME)
        return self

    def describe(self) -> str:
        """How status and messages name the reference.

        >>> ModelRef(model_name="churn", alias="candidate").describe()
        'churn@candidate'
        """
        if self.training_job_ref is not None:
            return f"tj/{self.training_job_ref.name}"
        if self.alias is not None:
            return f"{self.model_name}@{self.alias}"
        return f"{self.model_name}:{self.version}"


class InstanceKind(enum.StrEnum):
    CPU = "KIND_CPU"
    GPU = "KIND_GPU"


class DynamicBatching(FlywheelModel):
    preferred_batch_sizes: list[int] = Field(default_factory=list, max_length=8)
    max_queue_delay_microseconds: int = Field(default=100, ge=0, le=10_000_000)


class TritonOptions(FlywheelModel):
    """Triton model configuration: instance_group and dynamic batching."""

    instance_count: int = Field(default=1, ge=1, le=16)
    instance_kind: InstanceKind = InstanceKind.CPU
    max_batch_size: int = Field(default=64, ge=0, le=65536)
    dynamic_batching: DynamicBatching | None = Field(default_factory=DynamicBatching)
    image: Annotated[str, StringConstraints(min_length=1, max_length=512)] = (
        "nvcr.io/nvidia/tritonserver:25.10-py3"
    )


class ServingResources(common.ReplicaResources):
    """What one serving replica asks for. Ray Serve allows a fraction of a GPU."""

    gpu: float = Field(
        default=0, ge=0, le=8, description="GPUs per replica; fractional only on rayserve."
    )


class Autoscaling(FlywheelModel):
    min_replicas: int = Field(default=1, ge=0, le=1000)
    max_replicas: int = Field(default=1, ge=1, le=1000)
    target_ongoing_requests: float = Field(default=2, gt=0, le=10_000)

    model_config = common.with_cel(
        {
            "rule": "self.minReplicas <= self.maxReplicas",
            "message": "minReplicas must not exceed maxReplicas",
        }
    )

    @model_validator(mode="after")
    def _min_le_max(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must not exceed maxReplicas")
        return self


class Strategy(enum.StrEnum):
    NONE = "none"
    SHADOW = "shadow"
    CANARY = "canary"
    BANDIT = "bandit"
    ABTEST = "abtest"


class ShadowRollout(FlywheelModel):
    percent: float = Field(default=100, gt=0, le=100, description="Share of requests mirrored.")
    duration: common.Duration = "1h"
    agreement_threshold: common.Probability = Field(
        default=0.95,
        description="Promote when the candidate agrees with stable at least this often.",
    )
    queue_size: int = Field(default=1000, ge=1, le=1_000_000)
    timeout_ms: int = Field(default=1000, ge=1, le=600_000)


class CanaryStep(FlywheelModel):
    weight: int = Field(gt=0, le=100, description="Percent of traffic to the candidate.")
    pause: common.Duration | None = Field(default=None, description="How long to hold this step.")


class Analysis(FlywheelModel):
    """The check run at every canary step over the router's metrics."""

    interval: common.Duration = "1m"
    max_error_rate: common.Probability = 0.01
    max_p99_latency_ms: float = Field(default=500, gt=0)
    min_agreement: common.Probability | None = None
    min_requests: int = Field(default=100, ge=1, description="Fewer is inconclusive, never a pass.")
    failure_limit: int = Field(default=2, ge=0, le=100)


class CanaryRollout(FlywheelModel):
    steps: list[CanaryStep] = Field(min_length=1, max_length=20)
    analysis: Analysis = Field(default_factory=Analysis)

    model_config = common.with_cel(
        {
            "rule": "self.steps.map(s, s.weight).isSorted() && self.steps.all(s, "
            "self.steps.map(t, t.weight).indexOf(s.weight) == "
            "self.steps.map(t, t.weight).lastIndexOf(s.weight))",
            "message": "canary step weights must be strictly increasing",
            "fieldPath": ".steps",
        }
    )

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[CanaryStep]) -> list[CanaryStep]:
        weights = [s.weight for s in steps]
        if any(b <= a for a, b in itertools.pairwise(weights)):
            raise ValueError("canary step weights must be strictly increasing")
        return steps


class BanditAlgorithm(enum.StrEnum):
    THOMPSON = "thompson"
    EPSILON_GREEDY = "epsilon-greedy"
    UCB = "ucb"


class BanditRollout(FlywheelModel):
    algorithm: BanditAlgorithm = BanditAlgorithm.THOMPSON
    epsilon: common.Probability = Field(default=0.1, description="epsilon-greedy: explore share.")
    floor: float = Field(
        default=0.05, ge=0, le=0.5, description="Least traffic share stable keeps."
    )
    promote_threshold: float = Field(
        default=0.95, gt=0.5, le=1, description="Promote an arm once its share passes this."
    )
    reward_window: common.Duration = "1h"
    min_samples: int = Field(default=200, ge=1)


class AbTestMetric(enum.StrEnum):
    REWARD = "reward"
    SUCCESS = "success"


class AbTestRollout(FlywheelModel):
    """A fixed split and a sequential test (mSPRT, always-valid p-value) of one rate per
    arm: it stops early only once the p-value falls below alpha (promote a better
    candidate, roll back a worse one), else once both arms reach the planned sample
    without an effect of the declared size (stable stays)."""

    split: float = Field(
        default=50, gt=0, lt=100, description="Percent of requests to the candidate, fixed."
    )
    metric: AbTestMetric = Field(
        default=AbTestMetric.REWARD,
        description="reward: share of feedback (the router's feedback endpoint) with a "
        "reward above 0; success: share of requests answered without an error.",
    )
    baseline_rate: float = Field(
        gt=0, lt=1, description="The rate stable is expected to have; sets the sample size."
    )
    minimum_detectable_effect: float = Field(
        gt=0,
        lt=1,
        description="The smallest absolute change of the rate worth detecting; also the "
        "scale of the test's mixture.",
    )
    alpha: float = Field(default=0.05, gt=0, le=0.2, description="False-positive rate.")
    power: float = Field(default=0.8, ge=0.5, lt=1)
    min_sample_size: int | None = Field(
        default=None,
        ge=100,
        le=100_000_000,
        description="Observations per arm planned. Default: from baselineRate, "
        "minimumDetectableEffect, alpha and power.",
    )

    model_config = common.with_cel(
        {
            "rule": "self.baselineRate + self.minimumDetectableEffect < 1.0",
            "message": "baselineRate + minimumDetectableEffect must stay below 1",
        }
    )

    @model_validator(mode="after")
    def _rate_below_one(self) -> Self:
        if self.baseline_rate + self.minimum_detectable_effect >= 1:
            raise ValueError("baselineRate + minimumDetectableEffect must stay below 1")
        return self


class Rollout(FlywheelModel):
    strategy: Strategy = Strategy.NONE
    shadow: ShadowRollout | None = None
    canary: CanaryRollout | None = None
    bandit: BanditRollout | None = None
    abtest: AbTestRollout | None = None

    model_config = common.with_cel(
        {
            "rule": "self.strategy != 'canary' || has(self.canary)",
            "message": "strategy canary needs rollout.canary with its steps",
        },
        {
            "rule": "(!has(self.shadow) || self.strategy == 'shadow') && "
            "(!has(self.canary) || self.strategy == 'canary') && "
            "(!has(self.bandit) || self.strategy == 'bandit') && "
            "(!has(self.abtest) || self.strategy == 'abtest')",
            "message": "only the settings of the chosen strategy may be given",
        },
        {
            "rule": "self.strategy != 'abtest' || has(self.abtest)",
            "message": "strategy abtest needs rollout.abtest with its baselineRate and "
            "minimumDetectableEffect",
        },
    )

    @model_validator(mode="after")
    def _settings_match_strategy(self) -> Self:
        if self.strategy == Strategy.CANARY and self.canary is None:
            raise ValueError("strategy canary needs rollout.canary with its steps")
        if self.strategy == Strategy.ABTEST and self.abtest is None:
            raise ValueError(
                "strategy abtest needs rollout.abtest with its baselineRate and "
                "minimumDetectableEffect"
            )
        given = {
            Strategy.SHADOW: self.shadow,
            Strategy.CANARY: self.canary,
            Strategy.BANDIT: self.bandit,
            Strategy.ABTEST: self.abtest,
        }
        if any(v is not None and k != self.strategy for k, v in given.items()):
            raise ValueError("only the settings of the chosen strategy may be given")
        return self


class RequestLogging(FlywheelModel):
    sample_rate: common.Probability = 0.1
    uri: common.StorageURI | None = Field(
        default=None, description="Where sampled requests go; defaults under the artifact root."
    )


class RouterStateType(enum.StrEnum):
    SQLITE = "sqlite"
    REDIS = "redis"


class RouterState(FlywheelModel):
    """Where the router keeps a bandit's counts."""

    type: RouterStateType = RouterStateType.SQLITE
    connection_secret_ref: common.SecretKeySelector | None = Field(
        default=None, description="redis: a Secret key holding the redis:// URL."
    )

    model_config = common.with_cel(
        {
            "rule": "self.type != 'redis' || has(self.connectionSecretRef)",
            "message": "a redis router state needs connectionSecretRef (a Secret key with the "
            "redis:// URL)",
        }
    )

    @model_validator(mode="after")
    def _redis_needs_secret(self) -> Self:
        if self.type == RouterStateType.REDIS and self.connection_secret_ref is None:
            raise ValueError(
                "a redis router state needs connectionSecretRef (a Secret key with the "
                "redis:// URL)"
            )
        return self


BATCH_NEEDS_VIEW = (
    "batchPrediction needs a FeatureView to score: batchPrediction.featureViewRef, or the "
    "deployment's featureViewRef"
)
BATCH_OUTPUT_SOMEWHERE = "batchPrediction.output must write to the online store, Parquet or both"
BATCH_URI_NEEDS_PARQUET = "batchPrediction.output.uri is where Parquet goes; it needs parquet: true"


class BatchPredictionOutput(FlywheelModel):
    """Where a batch run's predictions go."""

    online: bool = Field(
        default=True,
        description="Write each entity's prediction into the online store, where "
        "`<deployment>-predictions` answers the same lookup as features.",
    )
    parquet: bool = Field(
        default=True, description="Publish every run's predictions as a Parquet version."
    )
    uri: common.StorageURI | None = Field(
        default=None,
        description="The root of the Parquet versions (the offline store of the view "
        "`<deployment>-predictions`); defaults to <artifact root>/featureviews/<namespace>/"
        "<deployment>-predictions/offline.",
    )

    model_config = common.with_cel(
        {"rule": "self.online || self.parquet", "message": BATCH_OUTPUT_SOMEWHERE},
        {"rule": "!has(self.uri) || self.parquet", "message": BATCH_URI_NEEDS_PARQUET},
    )

    @model_validator(mode="after")
    def _writes_somewhere(self) -> Self:
        if not (self.online or self.parquet):
            raise ValueError(BATCH_OUTPUT_SOMEWHERE)
        if self.uri is not None and not self.parquet:
            raise ValueError(BATCH_URI_NEEDS_PARQUET)
        return self


class BatchEntities(FlywheelModel):
    """Which entities a batch run scores: all of the FeatureView's (the default), or
    those whose join keys a Dataset's current snapshot holds."""

    dataset_ref: common.LocalObjectReference | None = Field(
        default=None,
        description="A Dataset with columns named like the FeatureView's join keys; none: "
        "every entity the online store holds features for now.",
    )


class BatchPrediction(FlywheelModel):
    """Score a FeatureView's entities on a schedule and store the predictions where an
    application looks features up: the online store (a view named
    `<deployment>-predictions`, feature `<deployment>_score`) and versioned Parquet."""

    schedule: common.Cron
    feature_view_ref: common.LocalObjectReference | None = Field(
        default=None,
        description="Whose entities are scored, with their latest online features; "
        "default: spec.featureViewRef, the FeatureView the router looks entities up in.",
    )
    entities: BatchEntities = Field(default_factory=BatchEntities)
    model: ModelRef | None = Field(
        default=None,
        description="The version that scores; default: the version the deployment serves "
        "as stable (it follows promotions).",
    )
    output: BatchPredictionOutput = Field(default_factory=BatchPredictionOutput)


class ModelDeploymentSpec(FlywheelModel):
    backend: Backend = Backend.RAYSERVE
    stable: ModelRef
    candidate: ModelRef | None = None
    resources: ServingResources = Field(default_factory=ServingResources)
    triton: TritonOptions | None = None
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    rollout: Rollout = Field(default_factory=Rollout)
    router_state: RouterState = Field(
        default_factory=RouterState,
        description="Where the router keeps a bandit's counts. sqlite: a file in the router's "
        "Pod, so one router replica serves a bandit rollout and a restart starts it over. "
        "redis: every replica adds its counts to totals in Redis and routes on the totals, so "
        "a bandit runs on two router replicas (triton) or on every Ray Serve router replica "
        "and survives their restarts.",
    )
    progress_deadline: common.Duration = "10m"
    scale_down_delay: common.Duration = Field(
        default="30s",
        description="How long a rolled-back candidate keeps its servers (no traffic), so a "
        "retry or an investigation finds it warm.",
    )
    previous_stable_window: common.Duration = Field(
        default="10m",
        description="How long the stable of before a promotion keeps its servers (no "
        "traffic), so `kubectl flywheel rollout undo` is instant.",
    )
    request_logging: RequestLogging = Field(default_factory=RequestLogging)
    feature_view_ref: common.LocalObjectReference | None = Field(
        default=None,
        description="Entity lookups: the router answers a predict request that gives "
        '{"entities": [{<join key>: ...}]} with this FeatureView\'s online features (the '
        "transform training used), and logs the keys for a DriftMonitor's skew check. On "
        "both backends: the view's online store Secret or claim is mounted where the router "
        "runs (its Pod on triton, the Ray pods on rayserve).",
    )
    batch_prediction: BatchPrediction | None = Field(
        default=None,
        description="Also score a FeatureView's entities on a schedule, into the online "
        "store and Parquet.",
    )

    model_config = common.with_cel(
        {
            "rule": "!has(self.batchPrediction) || has(self.batchPrediction.featureViewRef) || "
            "has(self.featureViewRef)",
            "message": BATCH_NEEDS_VIEW,
            "fieldPath": ".batchPrediction",
        },
        {
            "rule": "!has(self.rollout) || self.rollout.strategy == 'none' || has(self.candidate)",
            "message": "a candidate is required when rollout.strategy is not none",
            "fieldPath": ".candidate",
        },
        {
            "rule": "self.backend != 'triton' || !has(self.resources) || "
            "!has(self.resources.gpu) || self.resources.gpu == double(int(self.resources.gpu))",
            "message": "triton needs whole GPUs in resources.gpu; fractions are for rayserve",
            "fieldPath": ".resources.gpu",
        },
        {
            "rule": "!has(self.triton) || self.backend == 'triton'",
            "message": "triton options are only allowed with backend triton",
        },
        {
            "rule": "!has(self.candidate) || !("
            "(has(self.candidate.trainingJobRef) && has(self.stable.trainingJobRef) && "
            "self.candidate.trainingJobRef.name == self.stable.trainingJobRef.name) || "
            "(has(self.candidate.modelName) && has(self.stable.modelName) && "
            "has(self.candidate.version) && has(self.stable.version) && "
            "self.candidate.modelName == self.stable.modelName && "
            "self.candidate.version == self.stable.version) || "
            "(has(self.candidate.modelName) && has(self.stable.modelName) && "
            "has(self.candidate.alias) && has(self.stable.alias) && "
            "self.candidate.modelName == self.stable.modelName && "
            "self.candidate.alias == self.stable.alias))",
            "message": "the candidate must differ from stable",
            "fieldPath": ".candidate",
        },
    )

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        if self.rollout.strategy != Strategy.NONE and self.candidate is None:
            raise ValueError("a candidate is required when rollout.strategy is not none")
        if self.backend == Backend.TRITON and self.resources.gpu != int(self.resources.gpu):
            raise ValueError("triton needs whole GPUs in resources.gpu; fractions are for rayserve")
        if self.triton is not None and self.backend != Backend.TRITON:
            raise ValueError("triton options are only allowed with backend triton")
        if self.candidate is not None and self.candidate == self.stable:
            raise ValueError(
                f"the candidate must differ from stable (both are {self.stable.describe()})"
            )
        if self.batch_prediction is not None and self.batch_feature_view is None:
            raise ValueError(BATCH_NEEDS_VIEW)
        return self

    @property
    def batch_feature_view(self) -> str | None:
        """The FeatureView batch prediction scores: its own, else the deployment's."""
        if self.batch_prediction is None:
            return None
        ref = self.batch_prediction.feature_view_ref or self.feature_view_ref
        return ref.name if ref is not None else None


class AnalysisDecision(enum.StrEnum):
    PROMOTE = "Promote"
    CONTINUE = "Continue"
    ROLLBACK = "Rollback"
    INCONCLUSIVE = "Inconclusive"


class AnalysisResult(FlywheelModel):
    time: datetime
    decision: AnalysisDecision
    requests: int = Field(default=0, ge=0)
    error_rate: float | None = None
    p99_latency_ms: float | None = None
    agreement: float | None = None
    message: common.LongText = ""


# `kubectl flywheel rollout promote|abort|undo` write "<action>@<time>" here; the operator
# acts once per value and records it in status.lastAction.
ROLLOUT_ACTION_ANNOTATION = "flywheel.dev/rollout-action"


class RolloutAction(enum.StrEnum):
    PROMOTE = "promote"  # skip the remaining steps: the candidate becomes stable now
    ABORT = "abort"  # back to stable now, as a failed analysis would
    UNDO = "undo"  # after a promotion: the previous stable serves again


class AbTestStatus(FlywheelModel):
    """The A/B test so far (strategy abtest): counts per arm and the sequential test."""

    metric: AbTestMetric
    planned_per_arm: int = Field(ge=0, description="Observations per arm planned.")
    control_observations: int = Field(default=0, ge=0)
    control_successes: int = Field(default=0, ge=0)
    candidate_observations: int = Field(default=0, ge=0)
    candidate_successes: int = Field(default=0, ge=0)
    effect: float | None = Field(default=None, description="Candidate rate minus stable's.")
    interval: list[float] = Field(
        default_factory=list,
        max_length=2,
        description="Always-valid (1 - alpha) interval of the effect.",
    )
    p_value: float = Field(
        default=1.0, ge=0, le=1, description="Always-valid p-value (never rises)."
    )
    verdict: common.ShortText = Field(
        default="Insufficient",
        description="Insufficient, Continue, CandidateBetter, CandidateWorse or NoDifference.",
    )


class BatchPredictionStatus(FlywheelModel):
    """The last batch prediction run that published."""

    last_run_time: datetime | None = None
    model_version: common.ShortText | None = Field(default=None, description="What scored.")
    rows: int | None = Field(default=None, ge=0, description="Entities scored.")
    output_version: common.ShortText | None = Field(
        default=None, description="The Parquet version published (content-addressed)."
    )
    output_uri: common.ReportedURI | None = None
    view: common.ShortText | None = Field(
        default=None, description="The online view to look predictions up in."
    )
    score_name: common.ShortText | None = Field(
        default=None, description="The feature the prediction is stored as."
    )


class ModelDeploymentStatus(common.StatusBase):
    stable_version: common.ShortText | None = None
    candidate_version: common.ShortText | None = None
    traffic: dict[str, float] = Field(
        default_factory=dict,
        max_length=16,
        description="Version -> percent of requests (or arm weight).",
    )
    traffic_summary: common.ShortText | None = Field(
        default=None, description="e.g. 'v1=90 v2=10'."
    )
    step: int | None = Field(default=None, ge=0, description="Canary step index, from 0.")
    step_summary: common.ShortText | None = Field(default=None, description="e.g. '2/4'.")
    step_started: datetime | None = Field(default=None, description="When the step began.")
    failed_analyses: int = Field(default=0, ge=0)
    last_analysis: AnalysisResult | None = None
    url: common.ShortText | None = None
    previous_stable_version: common.ShortText | None = Field(
        default=None, description="The stable before the last promotion (what undo returns to)."
    )
    previous_stable_model: common.ShortText | None = Field(
        default=None, description="The registry model of previousStableVersion."
    )
    previous_stable_artifact: common.ReportedURI | None = Field(
        default=None,
        description="Where previousStableVersion's model is: what keeps it warm and what "
        "undo serves again, whatever the spec names now (a promotion by alias moves "
        "`champion` off it).",
    )
    finished_at: datetime | None = Field(
        default=None, description="When the rollout was last promoted or rolled back."
    )
    last_action: common.ShortText | None = Field(
        default=None,
        description="The last rollout action handled: the value of the "
        "flywheel.dev/rollout-action annotation.",
    )
    ab_test: AbTestStatus | None = Field(default=None, description="strategy abtest only.")
    batch_prediction: BatchPredictionStatus | None = Field(
        default=None, description="spec.batchPrediction only: its last published run."
    )


class ModelDeployment(common.Resource):
    """Model versions served behind a router with shadow, canary or bandit rollout."""

    kind_name = "ModelDeployment"
    plural = "modeldeployments"
    short_names = ("md",)
    printer_columns = (
        common.PHASE_COLUMN,
        {"name": "Stable", "type": "string", "jsonPath": ".status.stableVersion"},
        {"name": "Candidate", "type": "string", "jsonPath": ".status.candidateVersion"},
        {"name": "Strategy", "type": "string", "jsonPath": ".spec.rollout.strategy"},
        {"name": "Traffic", "type": "string", "jsonPath": ".status.trafficSummary"},
        {"name": "Step", "type": "string", "jsonPath": ".status.stepSummary"},
        common.AGE_COLUMN,
    )

    kind: Literal["ModelDeployment"] = "ModelDeployment"
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None

    def references(self) -> list[tuple[str, str]]:
        refs = [self.spec.stable] + ([self.spec.candidate] if self.spec.candidate else [])
        out = [("TrainingJob", r.training_job_ref.name) for r in refs if r.training_job_ref]
        if self.spec.feature_view_ref is not None:
            out.append(("FeatureView", self.spec.feature_view_ref.name))
        return out

    def batch_references(self) -> list[tuple[str, str, str]]:
        """(field, kind, name) of what batch prediction reads: its FeatureView, the
        Dataset of its entities and a TrainingJob that names its model."""
        batch = self.spec.batch_prediction
        if batch is None:
            return []
        prefix = "spec.batchPrediction"
        view = self.spec.batch_feature_view
        assert view is not None  # the spec requires one
        field = f"{prefix}.featureViewRef" if batch.feature_view_ref else "spec.featureViewRef"
        out = [(field, "FeatureView", view)]
        entities = batch.entities.dataset_ref
        if entities is not None:
            out.append((f"{prefix}.entities.datasetRef", "Dataset", entities.name))
        if batch.model is not None and batch.model.training_job_ref is not None:
            name = batch.model.training_job_ref.name
            out.append((f"{prefix}.model.trainingJobRef", "TrainingJob", name))
        return out


PREDICTIONS_SUFFIX = "-predictions"


def predictions_view_name(deployment: str) -> str:
    """The online view an application looks a deployment's batch predictions up in.

    >>> predictions_view_name("churn")
    'churn-predictions'
    """
    return deployment + PREDICTIONS_SUFFIX


def score_name(deployment: str) -> str:
    """The feature a deployment's batch prediction is stored as: its name made an
    identifier, then `_score`.

    >>> score_name("churn-v2.eu")
    'churn_v2_eu_score'
    """
    name = deployment.replace("-", "_").replace(".", "_") + "_score"
    return name if name[0].isalpha() else f"md_{name}"


def predictions_view(deployment: ModelDeployment, view: FeatureView) -> FeatureView:
    """The view holding a deployment's batch predictions: the scored FeatureView's
    entities, ttl and online store type, and one feature, `score_name`. Any lookup of
    features (Python, `flywheel features get-online`, the feature server) reads it."""
    name = predictions_view_name(deployment.name)
    score = score_name(deployment.name)
    batch = deployment.spec.batch_prediction
    spec = view.spec.model_copy(
        update={
            "features": [Feature(name=score, column=score)],
            # Its online store: a default path of its own, or its own table in a given
            # file. Its offline store is the Parquet the runs publish.
            "offline_store": OfflineStore(uri=batch.output.uri if batch else None),
            "materialization": Materialization(),
        }
    )
    return FeatureView(
        metadata=ObjectMeta(name=name, namespace=deployment.metadata.namespace),
        spec=spec,
    )
