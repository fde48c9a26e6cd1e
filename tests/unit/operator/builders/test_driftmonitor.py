"""DriftMonitor -> the monitor CronJob, and the n-th retrain TrainingJob."""

from __future__ import annotations

from flywheel.api.driftmonitor import DRIFT_EVENT_ANNOTATION, DriftEvent
from flywheel_operator.builders import driftmonitor
from flywheel_operator.settings import Settings
from tests.unit.operator.conftest import model, owners
from tests.unit.operator.status.helpers import T0


def test_driftmonitor_cronjob_and_retrain_job(settings: Settings) -> None:
    body = owners()["DriftMonitor/churn-drift"]
    [cron] = driftmonitor.build(body, model(body), settings, {})
    assert cron["spec"]["schedule"] == "*/10 * * * *"
    cause = DriftEvent(monitor="churn-drift", time=T0, drifted_features=["plan"])
    tj = driftmonitor.retrain_job(body, model(body), 3, cause)
    assert tj["apiVersion"] == "flywheel.dev/v1alpha1"
    assert tj["kind"] == "TrainingJob" and tj["metadata"]["name"] == "churn-drift-retrain-3"
    assert tj["spec"]["evaluation"]["notWorseThanDeployed"]["deploymentRef"] == {"name": "churn"}
    # The template's window travels too: the retrain learns from the newest labels of
    # the Datasets' newest versions, as `flywheel run`'s retrain does.
    assert tj["spec"]["split"]["window"] == "20d"
    assert tj["metadata"]["ownerReferences"][0]["kind"] == "DriftMonitor"
    # The drift event that caused it travels with it, to its model card.
    noted = DriftEvent.from_annotations(tj["metadata"]["annotations"])
    assert noted == cause
    assert tj["metadata"]["annotations"][DRIFT_EVENT_ANNOTATION] == (
        '{"driftedFeatures":["plan"],"monitor":"churn-drift","time":"2026-05-01T00:00:00Z"}'
    )
