"""DriftMonitor: live traffic against the training reference; alerts or retrains."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from flywheel.api import common
from flywheel.api.common import FlywheelModel
from flywheel.api.trainingjob import TrainingJobSpec


class Reference(FlywheelModel):
    """What live traffic is compared with: exactly one of the three."""

    dataset_ref: common.LocalObjectReference | None = None
    feature_view_ref: common.LocalObjectReference | None = None
    training_job_ref: common.LocalObjectReference | None = None

    model_config = common.with_cel(
        {
            "rule": "(has(self.datasetRef) ? 1 : 0) + (has(self.featureViewRef) ? 1 : 0) + "
            "(has(self.trainingJobRef) ? 1 : 0) == 1",
            "message": "reference needs exactly one of datasetRef, featureViewRef or "
            "trainingJobRef",
        }
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [r for r in (self.dataset_ref, self.feature_view_ref, self.training_job_ref) if r]
        if len(given) != 1:
            raise ValueError(
                "reference needs exactly one of datasetRef, featureViewRef or trainingJobRef"
            )
        return self

    def target(self) -> tuple[str, str]:
        if self.dataset_ref is not None:
            return ("Dataset", self.dataset_ref.name)
        if self.feature_view_ref is not None:
            return ("FeatureView", self.feature_view_ref.name)
        assert self.training_job_ref is not None
        return ("TrainingJob", self.training_job_ref.name)


class TestMethod(enum.StrEnum):
    KS = "ks"
    PSI = "psi"
    CHI2 = "chi2"
    WASSERSTEIN = "wasserstein"
    JS = "js"


NUMERICAL_METHODS = frozenset(
    {TestMethod.KS, TestMethod.PSI, TestMethod.WASSERSTEIN, TestMethod.JS}
)
CATEGORICAL_METHODS = frozenset({TestMethod.CHI2, TestMethod.PSI, TestMethod.JS})


class DriftTest(FlywheelModel):
    method: TestMethod
    threshold: float = Field(
        gt=0,
        description="Drift when the score passes it (for ks and chi2 the score is 1 - p-value).",
    )


class FeatureOverride(FlywheelModel):
    feature: common.Identifier
    method: TestMethod
    threshold: float = Field(gt=0)


def _numerical_default() -> DriftTest:
    return DriftTest(method=TestMethod.PSI, threshold=0.2)


def _categorical_default() -> DriftTest:
    return DriftTest(method=TestMethod.CHI2, threshold=0.95)


class DriftTests(FlywheelModel):
    numerical: DriftTest = Field(default_factory=_numerical_default)
    categorical: DriftTest = Field(default_factory=_categorical_default)
    overrides: Annotated[
        list[FeatureOverride], common.unique_by("feature", "overrides for features")
    ] = Field(default_factory=list, max_length=256, json_schema_extra=common.list_map("feature"))

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
    size: int | None = Field(default=None, ge=10, le=10_000_000, description="Latest N requests.")
    duration: common.Duration | None = Field(
        default=None, description="Requests of the last period."
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


class DriftMonitorSpec(FlywheelModel):
    deployment_ref: common.LocalObjectReference
    reference: Reference
    features: list[common.Identifier] = Field(
        default_factory=list, max_length=256, description="Features to watch; empty means all."
    )
    tests: DriftTests = Field(default_factory=DriftTests)
    window: Window = Field(default_factory=lambda: Window(size=1000))
    schedule: common.Cron = "*/15 * * * *"
    min_samples: int = Field(default=100, ge=1, description="Fewer live rows: no verdict.")
    action: Action = Field(default_factory=Action)


class FeatureScore(FlywheelModel):
    feature: common.Identifier
    method: TestMethod
    score: float
    threshold: float
    drifted: bool


class DriftMonitorStatus(common.StatusBase):
    last_run: datetime | None = None
    samples: int | None = Field(default=None, ge=0)
    scores: list[FeatureScore] = Field(default_factory=list, max_length=256)
    drifted_features: list[Annotated[str, StringConstraints(max_length=128)]] = Field(
        default_factory=list, max_length=256
    )
    max_score: float | None = None
    retrains_triggered: int = Field(default=0, ge=0)
    last_retrain: datetime | None = None
    last_retrain_job: common.ShortText | None = None


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
        {"name": "Max-Score", "type": "number", "jsonPath": ".status.maxScore"},
        {"name": "Last-Run", "type": "date", "jsonPath": ".status.lastRun"},
        common.AGE_COLUMN,
    )

    kind: Literal["DriftMonitor"] = "DriftMonitor"
    spec: DriftMonitorSpec
    status: DriftMonitorStatus | None = None

    def references(self) -> list[tuple[str, str]]:
        refs = [("ModelDeployment", self.spec.deployment_ref.name), self.spec.reference.target()]
        retrain = self.spec.action.retrain
        if retrain is not None:
            refs += [("FeatureView", r.name) for r in retrain.template.spec.feature_view_refs]
        return refs
