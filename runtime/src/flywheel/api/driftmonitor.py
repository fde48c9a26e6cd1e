"""DriftMonitor: live traffic against the training reference; alerts or retrains."""

from __future__ import annotations

import enum
import json
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from flywheel.api import common
from flywheel.api.common import ConditionStatus, FlywheelModel
from flywheel.api.trainingjob import TrainingJobSpec


class ServingVersionReference(FlywheelModel):
    """The training set of the model version that serves (no fields: `servingVersion: {}`)."""


class Reference(FlywheelModel):
    """What live traffic is compared with: exactly one of the four."""

    dataset_ref: common.LocalObjectReference | None = None
    feature_view_ref: common.LocalObjectReference | None = None
    training_job_ref: common.LocalObjectReference | None = Field(
        default=None,
        description="The current offline versions of the FeatureViews the TrainingJob names "
        "(all their rows, not only its training split). servingVersion follows the exact "
        "training set of whatever version serves.",
    )
    serving_version: ServingVersionReference | None = Field(
        default=None,
        description="The training set of the model version that answered most of the "
        "window's requests, found through the registry (its reference.parquet: the training "
        "split's features as the model received them). After a promotion the monitor "
        "compares with the new version's training data, with no change to the spec. "
        "Write servingVersion: {}.",
    )

    model_config = common.with_cel(
        {
            "rule": "(has(self.datasetRef) ? 1 : 0) + (has(self.featureViewRef) ? 1 : 0) + "
            "(has(self.trainingJobRef) ? 1 : 0) + (has(self.servingVersion) ? 1 : 0) == 1",
            "message": "reference needs exactly one of datasetRef, featureViewRef, "
            "trainingJobRef or servingVersion",
        }
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        refs = (self.dataset_ref, self.feature_view_ref, self.training_job_ref)
        given = [r for r in (*refs, self.serving_version) if r is not None]
        if len(given) != 1:
            raise ValueError(
                "reference needs exactly one of datasetRef, featureViewRef, trainingJobRef "
                "or servingVersion"
            )
        return self

    def target(self) -> tuple[str, str] | None:
        """The object the reference names; None for servingVersion (found per run)."""
        if self.dataset_ref is not None:
            return ("Dataset", self.dataset_ref.name)
        if self.feature_view_ref is not None:
            return ("FeatureView", self.feature_view_ref.name)
        if self.training_job_ref is not None:
            return ("TrainingJob", self.training_job_ref.name)
        return None


class TestMethod(enum.StrEnum):
    """How live values are compared with the reference.

    ks, chi2: hypothesis tests with a p-value; drift when the p-value, after the
    correction for many features, is below `alpha`. psi, wasserstein, js: distances with
    no p-value; drift when the score is at least `threshold`.
    """

    KS = "ks"
    PSI = "psi"
    CHI2 = "chi2"
    WASSERSTEIN = "wasserstein"
    JS = "js"


NUMERICAL_METHODS = frozenset(
    {TestMethod.KS, TestMethod.PSI, TestMethod.WASSERSTEIN, TestMethod.JS}
)
CATEGORICAL_METHODS = frozenset({TestMethod.CHI2, TestMethod.PSI, TestMethod.JS})
# Methods whose verdict comes from a p-value compared with `alpha`.
P_VALUE_METHODS = frozenset({TestMethod.KS, TestMethod.CHI2})

DEFAULT_ALPHA = 0.05
# psi: 0.1 is a small shift and 0.25 a large one by the usual reading; 0.2 alarms on
# shifts a model notices. wasserstein (in reference standard deviations) and js: 0.1.
DEFAULT_THRESHOLDS = {
    TestMethod.PSI: 0.2,
    TestMethod.WASSERSTEIN: 0.1,
    TestMethod.JS: 0.1,
}

_LEVEL_RULE = "self.method in ['ks', 'chi2'] ? !has(self.threshold) : !has(self.alpha)"
_LEVEL_MESSAGE = (
    "ks and chi2 take alpha (drift when the p-value is below it); "
    "psi, wasserstein and js take threshold (drift when the score reaches it)"
)

METHOD_DESCRIPTION = (
    "ks: Kolmogorov-Smirnov, score = D (largest CDF gap, 0-1), p-value; numbers. "
    "chi2: chi-square homogeneity test of the category counts, score = Cramer's V (0-1), "
    "p-value; categories. psi: population stability index over the reference's deciles "
    "(numbers) or categories, score >= 0, no p-value. wasserstein: earth mover's distance "
    "in reference standard deviations, score >= 0, no p-value; numbers. js: Jensen-Shannon "
    "distance (base 2) over the same bins as psi, score 0-1, no p-value."
)


class DriftTest(FlywheelModel):
    """A test and the level at which it calls drift: alpha for ks and chi2, else threshold."""

    method: TestMethod = Field(description=METHOD_DESCRIPTION)
    alpha: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="ks and chi2 only: drift when the p-value (after the correction for "
        "many features) is below alpha; smaller means fewer alarms. Default 0.05.",
    )
    threshold: float | None = Field(
        default=None,
        gt=0,
        description="psi, wasserstein and js only: drift when the score is at least this; "
        "larger means fewer alarms. Defaults: psi 0.2, wasserstein 0.1, js 0.1.",
    )

    model_config = common.with_cel({"rule": _LEVEL_RULE, "message": _LEVEL_MESSAGE})

    @model_validator(mode="after")
    def _level_fits_method(self) -> Self:
        if self.method in P_VALUE_METHODS and self.threshold is not None:
            raise ValueError(_LEVEL_MESSAGE)
        if self.method not in P_VALUE_METHODS and self.alpha is not None:
            raise ValueError(_LEVEL_MESSAGE)
        return self

    @property
    def uses_p_value(self) -> bool:
        return self.method in P_VALUE_METHODS

    def level(self) -> float:
        """alpha for ks and chi2, the threshold for the others; defaults filled in."""
        if self.uses_p_value:
            return self.alpha if self.alpha is not None else DEFAULT_ALPHA
        if self.threshold is not None:
            return self.threshold
        return DEFAULT_THRESHOLDS[TestMethod(self.method)]


class FeatureOverride(DriftTest):
    """The test of one feature, instead of its type's default."""

    feature: common.Identifier

    model_config = common.with_cel({"rule": _LEVEL_RULE, "message": _LEVEL_MESSAGE})


def _numerical_default() -> DriftTest:
    return DriftTest(method=TestMethod.KS)


def _categorical_default() -> DriftTest:
    return DriftTest(method=TestMethod.CHI2)


class Correction(enum.StrEnum):
    """How the p-values of many features are adjusted before they meet alpha."""

    NONE = "none"
    BONFERRONI = "bonferroni"
    BENJAMINI_HOCHBERG = "benjamini-hochberg"


class DriftTests(FlywheelModel):
    numerical: DriftTest = Field(
        default_factory=_numerical_default,
        description="The test of numeric features (default ks, alpha 0.05).",
    )
    categorical: DriftTest = Field(
        default_factory=_categorical_default,
        description="The test of categorical features (default chi2, alpha 0.05).",
    )
    overrides: Annotated[
        list[FeatureOverride], common.unique_by("feature", "overrides for features")
    ] = Field(default_factory=list, max_length=256, json_schema_extra=common.list_map("feature"))
    correction: Correction = Field(
        default=Correction.BENJAMINI_HOCHBERG,
        description="Adjusts the p-values of ks and chi2 over the features of one run: "
        "bonferroni bounds the chance of any false alarm; benjamini-hochberg (default) "
        "bounds the share of false alarms among alarms, the same bound when nothing "
        "drifted, with more power when something did; none tests each feature alone.",
    )

    model_config = common.with_cel(
        {
            "rule": "!has(self.numerical) || "
            "self.numerical.method in ['ks', 'psi', 'wasserstein', 'js']",
            "message": "numerical.method must be one of ks, psi, wasserstein, js",
            "fieldPath": ".numerical.method",
        },
        {
            "rule": "!has(self.categorical) || self.categorical.method in ['chi2', 'psi', 'js']",
            "message": "categorical.method must be one of chi2, psi, js",
            "fieldPath": ".categorical.method",
        },
    )

    @model_validator(mode="after")
    def _methods_fit_types(self) -> Self:
        if self.numerical.method not in NUMERICAL_METHODS:
            raise ValueError("numerical.method must be one of ks, psi, wasserstein, js")
        if self.categorical.method not in CATEGORICAL_METHODS:
            raise ValueError("categorical.method must be one of chi2, psi, js")
        return self


class Window(FlywheelModel):
    """The live requests a run tests: the latest `size`, of the last `duration`, or both
    (the latest `size` among those of the last `duration`)."""

    size: int | None = Field(
        default=None, ge=10, le=10_000_000, description="The latest N logged requests."
    )
    duration: common.Duration | None = Field(
        default=None, description="The requests logged in this period before the run."
    )

    model_config = common.with_cel(
        {"rule": "has(self.size) || has(self.duration)", "message": "window needs size or duration"}
    )

    @model_validator(mode="after")
    def _has_bound(self) -> Self:
        if self.size is None and self.duration is None:
            raise ValueError("window needs size or duration")
        return self


class ActionType(enum.StrEnum):
    ALERT = "alert"
    RETRAIN = "retrain"


class TrainingJobTemplate(FlywheelModel):
    spec: TrainingJobSpec


class RetrainAction(FlywheelModel):
    template: TrainingJobTemplate
    cooldown: common.Duration = "24h"


class Action(FlywheelModel):
    type: ActionType = ActionType.ALERT
    retrain: RetrainAction | None = None

    model_config = common.with_cel(
        {
            "rule": "self.type == 'retrain' ? has(self.retrain) : !has(self.retrain)",
            "message": "action retrain needs action.retrain with a TrainingJob template, "
            "and only retrain may have it",
        }
    )

    @model_validator(mode="after")
    def _retrain_needs_template(self) -> Self:
        if (self.type == ActionType.RETRAIN) != (self.retrain is not None):
            raise ValueError(
                "action retrain needs action.retrain with a TrainingJob template, "
                "and only retrain may have it"
            )
        return self


class SkewCheck(FlywheelModel):
    """Training/serving skew: logged requests' features recomputed offline and compared."""

    feature_view_ref: common.LocalObjectReference = Field(
        description="The FeatureView whose point-in-time join recomputes the features of "
        "logged requests that name its join keys (as entity lookups do)."
    )
    max_requests: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="The newest logged requests with keys that are checked per run.",
    )
    tolerance: float = Field(
        default=1e-6,
        ge=0,
        le=1,
        description="Numbers match when they differ by at most this, relative to the "
        "offline value (absolute below 1); text must be equal.",
    )
    max_mismatch_share: common.Probability = Field(
        default=0.0,
        description="The condition Skewed is True when a feature mismatches in more than "
        "this share of the checked requests.",
    )


class DriftMonitorSpec(FlywheelModel):
    deployment_ref: common.LocalObjectReference
    reference: Reference
    features: list[common.Identifier] = Field(
        default_factory=list, max_length=256, description="Features to watch; empty means all."
    )
    tests: DriftTests = Field(default_factory=DriftTests)
    window: Window = Field(default_factory=lambda: Window(size=1000))
    schedule: common.Cron = "*/15 * * * *"
    min_samples: int = Field(
        default=100,
        ge=1,
        description="Fewer live (or reference) values of a feature: verdict Insufficient.",
    )
    prediction: bool = Field(
        default=True,
        description="Also test the logged predictions: the window against the first "
        "window the serving model version logged.",
    )
    action: Action = Field(default_factory=Action)
    skew: SkewCheck | None = None


class Verdict(enum.StrEnum):
    DRIFT = "Drift"
    NO_DRIFT = "NoDrift"
    # Too few live or reference values to say either: never a verdict of drift or not.
    INSUFFICIENT = "Insufficient"


class FeatureScore(FlywheelModel):
    """One feature's test in the latest run (`prediction` is the model's output)."""

    feature: common.Identifier
    method: TestMethod
    score: float | None = Field(
        default=None, description="See tests.*.method; absent when Insufficient."
    )
    p_value: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="ks and chi2 only: after the correction; drift when below threshold.",
    )
    threshold: float = Field(
        description="alpha for ks and chi2 (drift when pValue < alpha); for psi, "
        "wasserstein and js the score at which drift begins (drift when score >= it)."
    )
    verdict: Verdict | None = None
    drifted: bool = Field(default=False, description="verdict is Drift.")
    samples: int | None = Field(default=None, ge=0, description="Live values tested.")


class RunWindow(FlywheelModel):
    """The times of the first and last request a run tested."""

    start: datetime | None = None
    end: datetime | None = None


# On a retrain TrainingJob: the drift event that caused it, as JSON (`DriftEvent`). The
# training runner copies it into the new version's model card and lineage.
DRIFT_EVENT_ANNOTATION = "flywheel.dev/drift-event"


class DriftEvent(FlywheelModel):
    """The drift that caused a retrain: which monitor, the run that saw it, what drifted."""

    monitor: common.ObjectName
    time: datetime | None = Field(default=None, description="The monitor run that saw it.")
    drifted_features: list[Annotated[str, StringConstraints(max_length=128)]] = Field(
        default_factory=list, max_length=256
    )

    def to_annotation(self) -> str:
        return json.dumps(self.to_wire(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_annotations(cls, annotations: dict[str, str]) -> DriftEvent | None:
        """The event in an object's annotations, or None (not a retrain, or unreadable:
        a model card without its cause beats a training that fails over a note)."""
        text = annotations.get(DRIFT_EVENT_ANNOTATION)
        if not text:
            return None
        try:
            return cls.model_validate_json(text)
        except ValueError:
            return None


class FeatureSkew(FlywheelModel):
    feature: common.Identifier
    mismatches: int = Field(ge=0, description="Checked requests whose value differs.")
    share: float = Field(ge=0, le=1, description="mismatches / checked.")
    example: common.ShortText | None = Field(
        default=None, description="One mismatch: the served and the offline value."
    )


class SkewResult(FlywheelModel):
    requests: int = Field(default=0, ge=0, description="Logged requests that named keys.")
    checked: int = Field(default=0, ge=0, description="Of those, the ones checked.")
    features: list[FeatureSkew] = Field(
        default_factory=list, max_length=64, description="Features that mismatched, worst first."
    )
    skewed_features: list[common.Identifier] = Field(
        default_factory=list,
        max_length=64,
        description="Features mismatching in more than spec.skew.maxMismatchShare of the "
        "checked requests: the condition Skewed is True when there is one.",
    )

    def condition(self) -> tuple[ConditionStatus, str, str]:
        """(status, reason, message) of the condition Skewed."""
        if self.checked == 0:
            if self.requests:
                said = f"none of {self.requests} logged requests named the FeatureView's keys"
            else:
                said = "no logged request named the FeatureView's keys"
            return ConditionStatus.UNKNOWN, "NoKeyedRequests", said
        if self.skewed_features:
            worst = self.features[0]
            return (
                ConditionStatus.TRUE,
                "Skewed",
                (
                    f"{', '.join(self.skewed_features)} differ from the offline features; worst "
                    f"{worst.feature} in {worst.mismatches} of {self.checked} requests "
                    f"({worst.example})"
                ),
            )
        return ConditionStatus.FALSE, "NoSkew", f"{self.checked} requests match offline"


SKEWED = "Skewed"


class DriftMonitorStatus(common.StatusBase):
    last_run: datetime | None = None
    verdict: Verdict | None = Field(
        default=None,
        description="Drift if any feature drifted; NoDrift if every tested feature had a "
        "verdict and none drifted; Insufficient otherwise.",
    )
    samples: int | None = Field(default=None, ge=0, description="Requests in the window.")
    window: RunWindow | None = None
    reference_version: common.ShortText | None = Field(
        default=None, description="The reference snapshot compared with, e.g. Dataset/x@v."
    )
    model_version: common.ShortText | None = Field(
        default=None, description="The model version that served most of the window."
    )
    scores: list[FeatureScore] = Field(default_factory=list, max_length=256)
    scores_omitted: int = Field(
        default=0, ge=0, description="Scores left out to fit the result; see reportUri."
    )
    drifted_features: list[Annotated[str, StringConstraints(max_length=128)]] = Field(
        default_factory=list, max_length=256
    )
    max_score: float | None = Field(
        default=None,
        description="The largest psi, wasserstein or js score, else the largest ks or "
        "chi2 score, of this run.",
    )
    report_uri: common.StorageURI | None = Field(
        default=None, description="The HTML report with reference and live histograms."
    )
    skew: SkewResult | None = Field(
        default=None, description="spec.skew only: the latest run's training/serving skew."
    )
    retrains_triggered: int = Field(default=0, ge=0)
    last_retrain: datetime | None = None
    last_retrain_job: common.ShortText | None = None
    last_retrain_version: common.ShortText | None = Field(
        default=None, description="The model version the last retrain registered, if any."
    )


class DriftMonitor(common.Resource):
    """Live traffic compared with the training reference; alerts or retrains."""

    kind_name = "DriftMonitor"
    plural = "driftmonitors"
    short_names = ("dm",)
    printer_columns = (
        common.PHASE_COLUMN,
        # From the condition, not the list: kubectl prints an empty list as "[]".
        {
            "name": "Drifted",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="DriftDetected")].status',
        },
        {
            "name": "Features",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="DriftDetected")].message',
            "priority": 1,
        },
        {"name": "Verdict", "type": "string", "jsonPath": ".status.verdict"},
        {"name": "Samples", "type": "integer", "jsonPath": ".status.samples"},
        {"name": "Max-Score", "type": "number", "jsonPath": ".status.maxScore"},
        {"name": "Last-Run", "type": "date", "jsonPath": ".status.lastRun"},
        common.AGE_COLUMN,
    )

    kind: Literal["DriftMonitor"] = "DriftMonitor"
    spec: DriftMonitorSpec
    status: DriftMonitorStatus | None = None

    def references(self) -> list[tuple[str, str]]:
        refs = [("ModelDeployment", self.spec.deployment_ref.name)]
        target = self.spec.reference.target()
        refs += [target] if target is not None else []
        if self.spec.skew is not None:
            refs.append(("FeatureView", self.spec.skew.feature_view_ref.name))
        retrain = self.spec.action.retrain
        if retrain is not None:
            refs += [("FeatureView", r.name) for r in retrain.template.spec.feature_view_refs]
        return refs
