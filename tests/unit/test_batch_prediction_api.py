"""spec.batchPrediction in the api and the plan: which FeatureView it scores, what it
refers to, and the names predictions are looked up under."""

from __future__ import annotations

from typing import Any

from flywheel import plan
from flywheel.api.modeldeployment import ModelDeployment, predictions_view, score_name
from flywheel.manifests import Loaded
from tests.unit.operator.conftest import owners


def deployment(**spec: Any) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "churn-eu"},
            "spec": {"stable": {"modelName": "churn", "version": "v1"}, **spec},
        }
    )


def test_the_scored_view_defaults_to_the_one_the_router_looks_entities_up_in() -> None:
    md = deployment(
        backend="triton",
        featureViewRef={"name": "customer-features"},
        batchPrediction={"schedule": "@daily", "entities": {"datasetRef": {"name": "active"}}},
    )
    assert md.spec.batch_feature_view == "customer-features"
    assert md.batch_references() == [
        ("spec.featureViewRef", "FeatureView", "customer-features"),
        ("spec.batchPrediction.entities.datasetRef", "Dataset", "active"),
    ]
    own = deployment(batchPrediction={"schedule": "@daily", "featureViewRef": {"name": "fv"}})
    assert own.spec.batch_feature_view == "fv"
    assert score_name("churn-eu") == "churn_eu_score" and score_name("9x") == "md_9x_score"


def test_the_predictions_view_keeps_the_entities_and_store_of_the_scored_view() -> None:
    from flywheel.api import FeatureView

    view = FeatureView.model_validate(owners()["FeatureView/customer-features"])
    md = deployment(batchPrediction={"schedule": "@daily", "featureViewRef": {"name": "x"},
                                     "output": {"uri": "s3://ml/predictions"}})  # fmt: skip
    out = predictions_view(md, view)
    assert out.name == "churn-eu-predictions"
    assert [f.name for f in out.spec.features] == ["churn_eu_score"]
    assert out.spec.entities == view.spec.entities and out.spec.ttl == view.spec.ttl
    assert out.spec.online_store == view.spec.online_store
    assert out.spec.offline_store.uri == "s3://ml/predictions"


def test_the_plan_runs_batch_inputs_first_and_names_missing_ones() -> None:
    md = deployment(batchPrediction={"schedule": "@daily", "featureViewRef": {"name": "absent"}})
    loaded = [Loaded("md.yaml", md)]
    _, errors = plan.order(loaded)
    assert [(e.field, e.message) for e in errors] == [
        ("spec.batchPrediction.featureViewRef", "refers to FeatureView/absent, which is not in "
         "the manifests"),
    ]  # fmt: skip
