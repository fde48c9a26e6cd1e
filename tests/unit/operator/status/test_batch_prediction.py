"""status.batchPrediction and the BatchPredicted condition from the CronJob's runs."""

from __future__ import annotations

import json

from flywheel.api.modeldeployment import ModelDeployment, ModelDeploymentStatus
from flywheel.serving.versions import ServedVersion
from flywheel_operator.status import modeldeployment as decide
from flywheel_operator.status.observe import Run, RunState
from tests.unit.operator.status.helpers import T0, conds

RESULT = {
    "batchPrediction": {
        "lastRunTime": "2026-05-01T00:00:00Z",
        "modelVersion": "v1",
        "rows": 300,
        "outputVersion": "abc",
        "outputUri": "pvc://data/featureviews/ml/churn-predictions/offline/versions/abc/x",
        "view": "churn-predictions",
        "scoreName": "churn_score",
    }
}


def test_a_published_run_is_reported_and_a_failed_one_keeps_it() -> None:
    old = ModelDeploymentStatus(stable_version="v1")
    new = decide.batch_status(old, old, Run("", RunState.MISSING), T0)
    assert conds(new)[decide.BATCH_PREDICTED] == ("Unknown", "Scheduled")
    done = decide.batch_status(old, old, Run("j1", RunState.SUCCEEDED, RESULT), T0)
    assert done.batch_prediction is not None and done.batch_prediction.rows == 300
    assert conds(done)[decide.BATCH_PREDICTED] == ("True", "Published")
    failure = Run("j2", RunState.FAILED, {"error": "FeaturesMissing: ..."}, "FeaturesMissing: x")
    failed = decide.batch_status(done, done, failure, T0)
    assert conds(failed)[decide.BATCH_PREDICTED] == ("False", "BatchFailed")
    assert failed.batch_prediction == done.batch_prediction  # the last published stays
    assert "FeaturesMissing" in failed.conditions[-1].message
    # A run under way after a published one leaves the condition as it was.
    running = decide.batch_status(failed, failed, Run("j3", RunState.RUNNING), T0)
    assert conds(running)[decide.BATCH_PREDICTED] == ("False", "BatchFailed")
    assert json.loads(done.model_dump_json(by_alias=True))["batchPrediction"]["view"]
    # spec.batchPrediction removed: the status forgets it.
    assert decide.had_batch(running) and not decide.had_batch(old)
    gone = decide.without_batch(running)
    assert gone.batch_prediction is None and decide.BATCH_PREDICTED not in conds(gone)


def test_the_model_is_the_stable_served_now_unless_the_spec_names_one() -> None:
    md = ModelDeployment.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "churn"},
            "spec": {
                "stable": {"modelName": "churn", "version": "v1"},
                "candidate": {"modelName": "churn", "version": "v2"},
                "rollout": {"strategy": "shadow"},
                "batchPrediction": {"schedule": "@daily", "featureViewRef": {"name": "fv"}},
            },
        }
    )
    v1 = ServedVersion("churn", "v1", "s3://m/churn/versions/v1")
    v2 = ServedVersion("churn", "v2", "s3://m/churn/versions/v2")
    assert decide.batch_model(md.spec, [v1, v2], "v1", {}, "s3://m") == v1
    assert decide.batch_model(md.spec, [v1, v2], "v2", {}, "s3://m") == v2  # promoted
    assert md.spec.batch_prediction is not None
    md.spec.batch_prediction.model = md.spec.stable.model_copy(update={"version": "v0"})
    named = decide.batch_model(md.spec, [v1, v2], "v2", {}, "s3://root")
    assert named == ServedVersion("churn", "v0", "s3://root/models/churn/versions/v0")
