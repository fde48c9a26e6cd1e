"""TrainingJob: a model trained with Ray Train on a FeatureView's training set."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from flywheel.api import common
from flywheel.api.common import FlywheelModel


class LabelSource(FlywheelModel):
    """Where labels come from: one row per (entity, time) with the target column."""

    dataset_ref: common.LocalObjectReference
    column: common.Identifier
    entity_columns: list[common.Identifier] = Field(min_length=1, max_length=8)
    timestamp_column: common.Identifier


class SplitStrategy(enum.StrEnum):
    TIME = "time"
    RANDOM = "random"


class Split(FlywheelModel):
    strategy: SplitStrategy = Field(
        default=SplitStrategy.TIME,
        description="time: the latest rows are the test set (no look-ahead); random: shuffled.",
    )
    test_fraction: float = Field(default=0.2, gt=0, le=0.9)
    seed: int = Field(default=0, ge=0)
    stratify: bool = Field(
        default=False,
        description="random only: keep each class's share equal in train, validation and "
        "test (a rare class is not left out of the test set by chance).",
    )
    window: common.Duration | None = Field(
        default=None,
        description="Only the labels of this last stretch of time (back from the newest "
        "label) are split into train, validation and test; older labels are left out. A "
        "retrain after a change in the world learns from the labels after it, e.g. '20d'. "
        "Unset: every label.",
    )

    model_config = common.with_cel(
        {
            "rule": "!has(self.stratify) || !self.stratify || self.strategy == 'random'",
            "message": "stratify needs strategy random (a time split keeps the time order)",
        }
    )

    @model_validator(mode="after")
    def _stratify_needs_random(self) -> Self:
        if self.stratify and self.strategy != SplitStrategy.RANDOM:
            raise ValueError("stratify needs strategy random (a time split keeps the time order)")
        return self


class ClassWeights(enum.StrEnum):
    NONE = "none"
    BALANCED = "balanced"


class Loss(enum.StrEnum):
    CROSS_ENTROPY = "crossEntropy"
    FOCAL = "focal"


class Resampling(enum.StrEnum):
    NONE = "none"
    OVERSAMPLE = "oversample"
    UNDERSAMPLE = "undersample"


class Imbalance(FlywheelModel):
    """Class imbalance (0/1 label): resampling touches training rows only, never the test."""

    class_weights: ClassWeights = Field(
        default=ClassWeights.NONE,
        description="balanced: each class weighs rows/(2 x its rows) in the loss.",
    )
    loss: Loss = Field(
        default=Loss.CROSS_ENTROPY,
        description="focal: cross-entropy scaled by (1 - p_true)^focalGamma, so easy rows "
        "weigh less.",
    )
    focal_gamma: float | None = Field(
        default=None, ge=0, le=10, description="focal only; default 2."
    )
    resampling: Resampling = Field(
        default=Resampling.NONE,
        description="oversample: repeat minority rows at random; undersample: drop majority "
        "rows at random; until minority/majority reaches targetRatio.",
    )
    target_ratio: float = Field(default=1.0, gt=0, le=1)

    model_config = common.with_cel(
        {
            "rule": "self.loss == 'focal' || !has(self.focalGamma)",
            "message": "focalGamma is only allowed with loss focal",
        }
    )

    @model_validator(mode="after")
    def _gamma_with_focal(self) -> Self:
        if self.focal_gamma is not None and self.loss != Loss.FOCAL:
            raise ValueError("focalGamma is only allowed with loss focal")
        return self


class CalibrationMethod(enum.StrEnum):
    NONE = "none"
    PLATT = "platt"
    TEMPERATURE = "temperature"


class Calibration(FlywheelModel):
    """Calibration fitted on the validation split; calibration.json, applied when served."""

    method: CalibrationMethod = Field(
        default=CalibrationMethod.NONE,
        description="platt: sigmoid(a * logit + b); temperature: sigmoid(logit / T).",
    )


class HashedFeature(FlywheelModel):
    name: common.Identifier
    buckets: int = Field(ge=2, le=1_048_576, description="Hash buckets (one-hot width).")


class Preprocessing(FlywheelModel):
    hashed: Annotated[list[HashedFeature], common.unique_by("name", "hashed features")] = Field(
        default_factory=list,
        max_length=64,
        description="Categorical features taken by the hashing trick instead of a "
        "vocabulary: a category unseen in training still lands in one of the buckets.",
        json_schema_extra=common.list_map("name"),
    )


class ModelType(enum.StrEnum):
    LOGISTIC = "logistic"
    MLP = "mlp"
    CUSTOM = "custom"


IMPORT_PATH = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"


class ModelSpec(FlywheelModel):
    type: ModelType = ModelType.LOGISTIC
    import_path: Annotated[str, StringConstraints(max_length=256, pattern=IMPORT_PATH)] | None = (
        Field(default=None, description="custom: 'package.module:build_model'.")
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Model constructor arguments, e.g. {hiddenUnits: [64, 32], dropout: 0.1}.",
    )

    model_config = common.with_cel(
        {
            "rule": "self.type == 'custom' ? has(self.importPath) : !has(self.importPath)",
            "message": "importPath is required for model type custom and only allowed there",
        }
    )

    @model_validator(mode="after")
    def _import_path_iff_custom(self) -> Self:
        if (self.type == ModelType.CUSTOM) != (self.import_path is not None):
            raise ValueError("importPath is required for model type custom and only allowed there")
        return self


class Optimizer(enum.StrEnum):
    ADAM = "adam"
    ADAMW = "adamw"
    SGD = "sgd"


class Hyperparameters(FlywheelModel):
    epochs: int = Field(default=10, ge=1, le=10_000)
    batch_size: int = Field(default=256, ge=1, le=1_048_576)
    learning_rate: float = Field(default=1e-3, gt=0, le=10)
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    optimizer: Optimizer = Optimizer.ADAM
    early_stopping_patience: int | None = Field(default=None, ge=1, le=1000)


class Scaling(FlywheelModel):
    """Ray Train workers; GPU workers get nvidia.com/gpu, tolerations and node selectors."""

    num_workers: int = Field(default=1, ge=1, le=256)
    resources_per_worker: common.ResourceRequirements = Field(
        default_factory=common.ResourceRequirements
    )


# The Ray of the runtime image; the operator's RayServices run it too.
DEFAULT_RAY_VERSION = "2.60.0"


class RayRuntime(FlywheelModel):
    image: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = Field(
        default=None,
        description="Image of the Ray head and workers; it must carry Flywheel and Ray. "
        "Default: the operator's runtime image.",
    )
    version: Annotated[
        str, StringConstraints(max_length=32, pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")
    ] = DEFAULT_RAY_VERSION


class Metric(enum.StrEnum):
    AUC = "auc"
    ACCURACY = "accuracy"
    LOGLOSS = "logloss"
    F1 = "f1"
    PR_AUC = "pr_auc"
    FLIP_RATE = "flip_rate"
    PRECISION = "precision"
    RECALL = "recall"
    RMSE = "rmse"
    MAE = "mae"


class Gate(FlywheelModel):
    """A bar the trained model must clear before it is published as ready to deploy."""

    metric: Metric
    min: float | None = None
    max: float | None = None

    model_config = common.with_cel(
        {"rule": "has(self.min) || has(self.max)", "message": "a gate needs min or max"},
        {
            "rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
            "message": "a gate's min must not be greater than its max",
        },
    )

    @model_validator(mode="after")
    def _has_bound(self) -> Self:
        if self.min is None and self.max is None:
            raise ValueError("a gate needs min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("a gate's min must not be greater than its max")
        return self


class BaselineGate(FlywheelModel):
    """Not worse than the model the referenced deployment serves as stable."""

    deployment_ref: common.LocalObjectReference
    metric: Metric = Metric.AUC
    tolerance: float = Field(default=0.0, ge=0, le=1, description="Allowed shortfall.")


class FeatureNoise(FlywheelModel):
    name: common.Identifier
    scale: float = Field(
        gt=0,
        description="Standard deviation of the Gaussian noise added, in the feature's own units.",
    )


class Perturbation(FlywheelModel):
    """How often the predicted class flips under small declared changes of the inputs
    (metric flip_rate; bound it with a gate such as {metric: flip_rate, max: 0.05})."""

    noise: Annotated[list[FeatureNoise], common.unique_by("name", "noisy features")] = Field(
        default_factory=list, max_length=64, json_schema_extra=common.list_map("name")
    )
    category_swap_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of test rows whose every categorical feature is swapped for "
        "another category of the test rows.",
    )
    seed: int = Field(default=0, ge=0)

    model_config = common.with_cel(
        {
            "rule": "size(self.noise) > 0 || self.categorySwapRate > 0.0",
            "message": "a perturbation needs noise or a categorySwapRate above 0",
        }
    )

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.noise and self.category_swap_rate == 0:
            raise ValueError("a perturbation needs noise or a categorySwapRate above 0")
        return self


class Evaluation(FlywheelModel):
    metrics: list[Metric] = Field(
        default_factory=lambda: [Metric.AUC, Metric.ACCURACY, Metric.LOGLOSS],
        min_length=1,
        max_length=8,
    )
    slice_columns: list[common.Identifier] = Field(default_factory=list, max_length=8)
    gates: list[Gate] = Field(default_factory=list, max_length=16)
    not_worse_than_deployed: BaselineGate | None = None
    perturbation: Perturbation | None = None


class Output(FlywheelModel):
    model_name: Annotated[
        str,
        StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
    ]
    registry_uri: common.StorageURI | None = Field(
        default=None, description="Model registry root; defaults under the artifact root."
    )


class QuantizationMode(enum.StrEnum):
    DYNAMIC_INT8 = "dynamicInt8"


class Quantization(FlywheelModel):
    """Post-training quantization for CPU serving: the version carries an int8 copy
    beside the float model and the model server serves the int8 copy."""

    mode: QuantizationMode = Field(
        default=QuantizationMode.DYNAMIC_INT8,
        description="dynamicInt8: Linear weights stored as int8, activations quantized per "
        "batch at run time (torch.ao.quantization.quantize_dynamic).",
    )
    metric: Metric | None = Field(
        default=None,
        description="The metric compared on the test split. Default: the primary metric "
        "of the evaluation.",
    )
    max_metric_drop: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="The quantization gate: how far the int8 model's metric may fall "
        "behind the float model's on the same test split.",
    )


RegistryName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
]
RegistryToken = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]


class WarmStart(FlywheelModel):
    """Fine-tune a registered version on this job's training window instead of training
    from scratch: its weights are the starting point and its preprocessing is kept (so the
    input layout matches). A forgetting gate compares the new and the base version on the
    base version's own test window."""

    model_name: RegistryName | None = Field(
        default=None,
        description="The registered model to start from (same registry as the output). "
        "Default: output.modelName.",
    )
    version: RegistryToken | None = Field(default=None, description="A registered version.")
    alias: RegistryToken | None = Field(
        default=None, description="A registry alias, e.g. champion."
    )
    deployment_ref: common.LocalObjectReference | None = Field(
        default=None,
        description="The version this ModelDeployment serves as stable (else the "
        "champion alias when the deployment serves nothing yet).",
    )
    forgetting_metric: Metric | None = Field(
        default=None,
        description="The metric of the forgetting check. Default: the primary metric of "
        "the evaluation.",
    )
    forgetting_tolerance: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="How far the new version may fall behind the base version on the base "
        "version's test window before the forgetting gate fails.",
    )

    model_config = common.with_cel(
        {
            "rule": "(has(self.version) ? 1 : 0) + (has(self.alias) ? 1 : 0) + "
            "(has(self.deploymentRef) ? 1 : 0) == 1",
            "message": "warmStart needs exactly one of version, alias or deploymentRef",
        }
    )

    @model_validator(mode="after")
    def _one_base(self) -> Self:
        given = [x for x in (self.version, self.alias, self.deployment_ref) if x is not None]
        if len(given) != 1:
            raise ValueError("warmStart needs exactly one of version, alias or deploymentRef")
        return self

    def describe(self) -> str:
        if self.deployment_ref is not None:
            return f"the stable version of md/{self.deployment_ref.name}"
        return f"alias {self.alias}" if self.alias else f"version {self.version}"


class TrainingJobSpec(FlywheelModel):
    feature_view_refs: list[common.LocalObjectReference] = Field(min_length=1, max_length=8)
    label: LabelSource
    split: Split = Field(default_factory=Split)
    imbalance: Imbalance = Field(default_factory=Imbalance)
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    calibration: Calibration = Field(default_factory=Calibration)
    model: ModelSpec = Field(default_factory=ModelSpec)
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    scaling: Scaling = Field(default_factory=Scaling)
    ray: RayRuntime = Field(default_factory=RayRuntime)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    output: Output
    backoff_limit: int = Field(default=2, ge=0, le=10)
    active_deadline_seconds: int | None = Field(default=None, ge=60)
    ttl_seconds_after_finished: int = Field(default=3600, ge=0)
    quantization: Quantization | None = Field(
        default=None,
        description="Quantize the trained model for CPU serving (gated on the metric's "
        "drop against the float model).",
    )
    warm_start: WarmStart | None = Field(
        default=None,
        description="Start from a registered version's weights (stateful retraining) "
        "instead of from scratch.",
    )


class TrainingJobStatus(common.StatusBase):
    start_time: datetime | None = None
    completion_time: datetime | None = None
    progress: common.ShortText | None = Field(default=None, description="e.g. 'epoch 7/10'.")
    metrics: dict[str, float] = Field(default_factory=dict, max_length=64)
    primary_metric: common.ShortText | None = Field(default=None, description="e.g. 'auc=0.871'.")
    model_name: common.ShortText | None = Field(
        default=None, description="The registry name of the model (spec.output.modelName)."
    )
    model_version: common.ShortText | None = None
    aliases: list[common.ShortText] = Field(
        default_factory=list,
        max_length=8,
        description="Registry aliases the version got when it was registered: `champion` "
        "for a model's first version, `candidate` for a later one that passed its gates. "
        "The operator resolves a ModelDeployment's alias references from these.",
    )
    artifact_uri: common.ReportedURI | None = None
    model_card_uri: common.ReportedURI | None = None
    warm_started_from: common.ShortText | None = Field(
        default=None, description="model:version a warm start fine-tuned (spec.warmStart)."
    )


class TrainingJob(common.Resource):
    """A model trained with Ray Train on a FeatureView, evaluated and versioned."""

    kind_name = "TrainingJob"
    plural = "trainingjobs"
    short_names = ("tj",)
    printer_columns = (
        common.PHASE_COLUMN,
        {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
        {"name": "Metric", "type": "string", "jsonPath": ".status.primaryMetric"},
        {"name": "Model-Version", "type": "string", "jsonPath": ".status.modelVersion"},
        common.AGE_COLUMN,
    )

    kind: Literal["TrainingJob"] = "TrainingJob"
    spec: TrainingJobSpec
    status: TrainingJobStatus | None = None

    def references(self) -> list[tuple[str, str]]:
        refs = [("FeatureView", r.name) for r in self.spec.feature_view_refs]
        refs.append(("Dataset", self.spec.label.dataset_ref.name))
        baseline = self.spec.evaluation.not_worse_than_deployed
        if baseline is not None:
            refs.append(("ModelDeployment", baseline.deployment_ref.name))
        warm = self.spec.warm_start
        if warm is not None and warm.deployment_ref is not None:
            refs.append(("ModelDeployment", warm.deployment_ref.name))
        return list(dict.fromkeys(refs))
