"""FeatureView: entities and declarative features over a Dataset, offline and online."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from flywheel.api import common, expressions
from flywheel.api.common import FlywheelModel


class Entity(FlywheelModel):
    """What features are keyed by, e.g. a customer, and the column that holds its id."""

    name: common.Identifier
    join_key: common.Identifier


class AggregationFunction(enum.StrEnum):
    SUM = "sum"
    MEAN = "mean"
    COUNT = "count"
    MIN = "min"
    MAX = "max"
    LAST = "last"


class Aggregation(FlywheelModel):
    """A value aggregated per entity over (t - window, t], t: the label or request time."""

    column: common.Identifier
    function: AggregationFunction
    window: common.Duration


class Feature(FlywheelModel):
    """One feature: a source column, a derived expression or a windowed aggregation."""

    name: common.Identifier
    column: common.Identifier | None = Field(default=None, description="Copy a source column.")
    expression: str | None = Field(
        default=None,
        max_length=expressions.MAX_LENGTH,
        description="A derived value, e.g. 'log1p(amount) / (tenure_days + 1)'.",
    )
    aggregation: Aggregation | None = None

    model_config = common.with_cel(
        {
            "rule": "(has(self.column) ? 1 : 0) + (has(self.expression) ? 1 : 0) + "
            "(has(self.aggregation) ? 1 : 0) == 1",
            "message": "a feature needs exactly one of column, expression or aggregation",
        }
    )

    @field_validator("expression")
    @classmethod
    def _expression_parses(cls, value: str | None) -> str | None:
        if value is not None:
            expressions.parse(value)
        return value

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Self:
        given = [x for x in (self.column, self.expression, self.aggregation) if x is not None]
        if len(given) != 1:
            raise ValueError("a feature needs exactly one of column, expression or aggregation")
        return self

    def input_columns(self) -> set[str]:
        if self.column is not None:
            return {self.column}
        if self.expression is not None:
            return expressions.columns(self.expression)
        assert self.aggregation is not None
        return {self.aggregation.column}


class FeatureSource(FlywheelModel):
    dataset_ref: common.LocalObjectReference


class OnlineStoreType(enum.StrEnum):
    SQLITE = "sqlite"
    REDIS = "redis"


class OnlineStore(FlywheelModel):
    enabled: bool = True
    type: OnlineStoreType = OnlineStoreType.SQLITE
    path: common.StorageURI | None = Field(
        default=None, description="sqlite: the database file; defaults under the artifact root."
    )
    connection_secret_ref: common.SecretKeySelector | None = Field(
        default=None, description="redis: a Secret key holding the redis:// URL."
    )

    model_config = common.with_cel(
        {
            "rule": "!self.enabled || self.type != 'redis' || has(self.connectionSecretRef)",
            "message": "a redis online store needs connectionSecretRef (a Secret key with the "
            "redis:// URL)",
        }
    )

    @model_validator(mode="after")
    def _redis_needs_secret(self) -> Self:
        if (
            self.enabled
            and self.type == OnlineStoreType.REDIS
            and self.connection_secret_ref is None
        ):
            raise ValueError(
                "a redis online store needs connectionSecretRef (a Secret key with the "
                "redis:// URL)"
            )
        return self


class OfflineStore(FlywheelModel):
    uri: common.StorageURI | None = Field(
        default=None,
        description="Where versioned Parquet is written; defaults under the artifact root.",
    )


class Materialization(FlywheelModel):
    schedule: common.Cron | None = Field(
        default=None, description="Incremental materialization schedule; none: once."
    )
    start_time: common.Timestamp | None = Field(
        default=None, description="Ignore source rows before this time."
    )


class FeatureViewSpec(FlywheelModel):
    entities: Annotated[list[Entity], common.unique_by("name", "entity names")] = Field(
        min_length=1, max_length=8, json_schema_extra=common.list_map("name")
    )
    source: FeatureSource
    timestamp_column: common.Identifier
    ttl: common.Duration = Field(
        description="How old an entity's latest feature row may be at the label time and "
        "still be used; older, every feature of the label is null."
    )
    features: Annotated[list[Feature], common.unique_by("name", "feature names")] = Field(
        min_length=1, max_length=256, json_schema_extra=common.list_map("name")
    )
    online_store: OnlineStore = Field(default_factory=OnlineStore)
    offline_store: OfflineStore = Field(default_factory=OfflineStore)
    materialization: Materialization = Field(default_factory=Materialization)

    model_config = common.with_cel(
        {
            "rule": "self.features.all(f, !self.entities.exists(e, e.joinKey == f.name))",
            "message": "a feature must not be named like an entity join key",
            "fieldPath": ".features",
        },
        {
            "rule": "self.features.all(f, f.name != self.timestampColumn)",
            "message": "a feature must not be named like the timestampColumn",
            "fieldPath": ".features",
        },
    )

    @model_validator(mode="after")
    def _features_not_keys(self) -> Self:
        keys = {e.join_key for e in self.entities}
        named = [f.name for f in self.features if f.name in keys]
        if named:
            raise ValueError(
                f"a feature must not be named like an entity join key (feature {named[0]!r})"
            )
        if any(f.name == self.timestamp_column for f in self.features):
            raise ValueError(
                f"a feature must not be named like the timestampColumn "
                f"(feature {self.timestamp_column!r}); rename the feature"
            )
        return self

    @property
    def join_keys(self) -> list[str]:
        return [e.join_key for e in self.entities]


class FeatureViewStatus(common.StatusBase):
    offline_version: common.ShortText | None = None
    offline_uri: common.ReportedURI | None = None
    source_version: common.ShortText | None = None
    online_rows: int | None = Field(default=None, ge=0)
    watermark: datetime | None = Field(
        default=None, description="Source rows up to this time are materialized and verified."
    )
    last_materialized: datetime | None = None


class FeatureView(common.Resource):
    """Features of entities over a Dataset, point-in-time correct, offline and online."""

    kind_name = "FeatureView"
    plural = "featureviews"
    short_names = ("fv",)
    printer_columns = (
        common.PHASE_COLUMN,
        {"name": "Online-Rows", "type": "integer", "jsonPath": ".status.onlineRows"},
        {"name": "Last-Materialized", "type": "date", "jsonPath": ".status.lastMaterialized"},
        common.AGE_COLUMN,
    )

    kind: Literal["FeatureView"] = "FeatureView"
    spec: FeatureViewSpec
    status: FeatureViewStatus | None = None

    def references(self) -> list[tuple[str, str]]:
        return [("Dataset", self.spec.source.dataset_ref.name)]
