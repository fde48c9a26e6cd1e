"""The story of a run: timeline lines as events come, the summary's figures, the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flywheel.api import driftmonitor
from flywheel.api.common import ObjectMeta
from flywheel.api.driftmonitor import DriftMonitor, DriftMonitorStatus, FeatureScore
from flywheel.api.modeldeployment import ModelDeploymentStatus
from flywheel.api.trainingjob import TrainingJobStatus
from flywheel.local import story, storyreport


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def window(seconds: float, traffic: dict[str, float], acc: dict[str, float], **kw: Any) -> Any:
    labels = {v: 100 for v in acc}
    total = sum(acc[v] * labels[v] for v in acc) / sum(labels.values())
    return {
        "message": f"[{traffic}] analysis",
        "window": {
            "seconds": seconds,
            "traffic": traffic,
            "requests": 100 * len(acc),
            "failed": 0,
            "answered": labels,
            "accuracy": total,
            "accuracyByVersion": acc,
            "labelsByVersion": labels,
            "labels": sum(labels.values()),
            "dataTime": ["2026-04-30T01:00:00+00:00", "2026-04-30T20:00:00+00:00"],
            "final": False,
            **kw,
        },
    }


def monitor() -> DriftMonitor:
    return DriftMonitor.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "DriftMonitor",
            "metadata": {"name": "d", "annotations": {story.ONSET_ANNOTATION: "2026-04-11"}},
            "spec": {
                "deploymentRef": {"name": "churn"},
                "reference": {"trainingJobRef": {"name": "t"}},
            },
        }
    )


def drifted() -> DriftMonitorStatus:
    return DriftMonitorStatus(
        phase="Ready",
        samples=400,
        drifted_features=["monthly_charges"],
        scores=[
            FeatureScore(
                feature="monthly_charges",
                method=driftmonitor.TestMethod.KS,
                score=0.41,
                threshold=0.01,
            )
        ],
        max_score=0.41,
    )


def told(tmp_path: Path) -> tuple[story.Story, list[str]]:
    clock = Clock()
    s = story.Story({"DriftMonitor/d": monitor()}, clock=clock)
    lines: list[str | None] = []
    md = "ModelDeployment/churn"
    ok = {"status": TrainingJobStatus(phase="Succeeded", model_name="churn", model_version="v3")}
    for at, key, fields in [
        (1, md, {"step": "started", "dependsOn": []}),
        (2, md, window(30, {"v1": 50.0, "v2": 50.0}, {"v1": 0.7, "v2": 0.72})),
        (3, md, window(60, {"v2": 100.0}, {"v2": 0.72}, final=True)),
        (4, md, {"step": "finished", "status": ModelDeploymentStatus(phase="Promoted")}),
        (5, "DriftMonitor/d", {"step": "started", "dependsOn": [md]}),
        (6, "DriftMonitor/d", {"step": "finished", "status": drifted()}),
        (7, "TrainingJob/r", {"step": "started", "dependsOn": ["DriftMonitor/d"]}),
        (47, "TrainingJob/r", {"step": "finished", **ok}),
        (48, md, {"step": "started", "dependsOn": ["TrainingJob/r"]}),
        (49, md, window(30, {"v2": 50.0, "v3": 50.0}, {"v2": 0.70, "v3": 0.80})),
        (50, md, window(60, {"v3": 100.0}, {"v3": 0.81}, final=True)),
        (
            51,
            md,
            {
                "step": "finished",
                "status": ModelDeploymentStatus(phase="Promoted", stable_version="v3"),
            },
        ),
    ]:
        clock.now = at
        lines.append(s.record(key, fields))
    return s, [line for line in lines if line]


def test_one_timeline_line_per_step_and_analysis(tmp_path: Path) -> None:
    _, lines = told(tmp_path)
    text = "\n".join(lines)
    assert "drift detected: DriftMonitor/d: monthly_charges ks 0.41 (400 requests" in text
    assert "retrain started: TrainingJob/r (drift found by DriftMonitor/d)" in text
    assert "retrain finished: TrainingJob/r Succeeded -> churn v3" in text and "in 40.0s" in text
    assert text.count("canary promoted: ModelDeployment/churn") == 2
    assert "(accuracy 0.710)" in text
    assert lines[0].startswith("[  0m01s] rollout started")


def test_the_summary_has_delay_retrain_time_steps_and_accuracy_before_after(
    tmp_path: Path,
) -> None:
    s, _ = told(tmp_path)
    f = s.facts()
    assert f["driftedFeatures"] == ["monthly_charges"]
    # onset 2026-04-11, newest traffic the monitor had seen 2026-04-30T20:00.
    assert f["detectionDelayDataSeconds"] == (19 * 24 + 20) * 3600
    assert f["servedBeforeDetection"] == 300
    assert f["retrainSeconds"] == 40
    # Both on the retrain's rollout: the version serving before it on its share, the
    # retrained version on its share and then on all of the traffic.
    assert f["accuracyBefore"] == {"version": "v2", "accuracy": 0.70, "labels": 100}
    assert f["accuracyAfter"] == {"version": "v3", "accuracy": 0.805, "labels": 200}
    text = s.summary("/x/run-report.html")
    assert "quality:              restored: accuracy +0.105 on the same replayed traffic" in text
    assert "19.8 days of data time" in text and "report:               /x/run-report.html" in text


def test_the_report_is_one_file_of_inline_svg(tmp_path: Path) -> None:
    s, _ = told(tmp_path)
    path = storyreport.write(s, tmp_path)
    html = path.read_text()
    assert html.count("<svg") == 2 and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )
    assert "Accuracy over time" in html and "retrain finished" in html
    # v1, v2, v3 each get a traffic line; the monitor had no report file to embed.
    assert html.count("<polyline") >= 3 + 4
    assert "No DriftMonitor wrote a report" in html


def test_a_monitor_without_onset_still_gives_the_requests_before_detection() -> None:
    s = story.Story(
        {"DriftMonitor/d": monitor().model_copy(update={"metadata": ObjectMeta(name="d")})}
    )
    s.record("DriftMonitor/d", {"step": "finished", "status": drifted()})
    f = s.facts()
    assert "detectionDelayDataSeconds" not in f and f["servedBeforeDetection"] == 0
    assert "detection:" in s.summary()


def test_the_report_embeds_the_monitors_own_drift_report(tmp_path: Path) -> None:
    drift_html = tmp_path / "report.html"
    drift_html.write_text('<html><body><img alt="monthly_charges" src="data:x"></body></html>')
    status = drifted().model_copy(update={"report_uri": drift_html.as_uri()})
    s = story.Story()
    s.record("DriftMonitor/d", {"step": "finished", "status": status})
    html = storyreport.render(s)
    assert 'srcdoc="&lt;html&gt;&lt;body&gt;&lt;img alt=&quot;monthly_charges&quot;' in html
