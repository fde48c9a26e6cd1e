"""DriftMonitor -> the monitor CronJob, and the n-th retrain TrainingJob."""

from __future__ import annotations

from flywheel_operator.builders import driftmonitor
from flywheel_operator.settings import Settings
from tests.unit.operator.conftest import model, owners


def test_driftmonitor_cronjob_and_retrain_job(settings: Settings) -> None:
    body = owners()["DriftMonitor/churn-drift"]
    [cron] = driftmonitor.build(body, model(body), settings, {})
    assert cron["spec"]["schedule"] == "*/10 * * * *"
    tj = driftmonitor.retrain_job(body, model(body), 3)
    assert tj["apiVersion"] == "flywheel.dev/v1alpha1"
    assert tj["kind"] == "TrainingJob" and tj["metadata"]["name"] == "churn-drift-retrain-3"
    assert tj["spec"]["evaluation"]["notWorseThanDeployed"]["deploymentRef"] == {"name": "churn"}
    assert tj["metadata"]["ownerReferences"][0]["kind"] == "DriftMonitor"
