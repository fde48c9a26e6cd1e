"""Every child the builders make from the quickstart objects, both serving backends."""

from __future__ import annotations

from typing import Any

from flywheel.serving.versions import ServedVersion
from flywheel_operator.builders import (
    dataset,
    driftmonitor,
    featureview,
    modeldeployment,
    trainingjob,
)
from flywheel_operator.settings import Settings
from tests.unit.operator.conftest import model, owners

V1 = ServedVersion("churn", "v1", "s3://ml/flywheel/models/churn/v1")
V2 = ServedVersion("churn", "v2", "s3://ml/flywheel/models/churn/v2")


def pod_specs(obj: Any) -> list[dict[str, Any]]:
    """Every pod spec inside a manifest, wherever it is nested."""
    found: list[dict[str, Any]] = []
    if isinstance(obj, dict):
        if "containers" in obj:
            found.append(obj)
        for value in obj.values():
            found += pod_specs(value)
    elif isinstance(obj, list):
        for value in obj:
            found += pod_specs(value)
    return found


def all_children(settings: Settings) -> list[dict[str, Any]]:
    o = owners()
    ds, fv = o["Dataset/customer-events"], o["FeatureView/customer-features"]
    tj, md, dm = (
        o["TrainingJob/churn-mlp"],
        o["ModelDeployment/churn"],
        o["DriftMonitor/churn-drift"],
    )
    triton = {**md, "spec": {**md["spec"], "backend": "triton"}}
    return [
        *dataset.build(ds, model(ds), settings),
        *featureview.build(fv, model(fv), settings, {"Dataset/customer-events": {"version": "a"}}),
        trainingjob.build(tj, model(tj), settings, {}),
        *modeldeployment.build(md, model(md), settings, [V1, V2], {"v1": 90, "v2": 10}),
        *modeldeployment.build(triton, model(triton), settings, [V1, V2], {"v1": 90, "v2": 10}),
        *driftmonitor.build(dm, model(dm), settings, {}),
    ]
