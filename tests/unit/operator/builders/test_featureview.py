"""FeatureView -> a materialization Job per (spec, source version), and a CronJob."""

from __future__ import annotations

from flywheel_operator.builders import featureview
from flywheel_operator.settings import Settings
from tests.unit.operator.conftest import model, owners


def test_featureview_rematerializes_on_a_new_source_version(settings: Settings) -> None:
    body = owners()["FeatureView/customer-features"]
    a = featureview.build(
        body, model(body), settings, {"Dataset/customer-events": {"version": "a"}}
    )
    b = featureview.build(
        body, model(body), settings, {"Dataset/customer-events": {"version": "b"}}
    )
    assert a[0]["metadata"]["name"] != b[0]["metadata"]["name"]
    cron = a[1]
    assert cron["kind"] == "CronJob" and cron["spec"]["schedule"] == "0 * * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert len(cron["metadata"]["name"]) <= 52
    cron_args = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert cron_args[:3] == ["features", "materialize", "--incremental"]
