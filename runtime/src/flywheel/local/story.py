"""The story of one `flywheel run`: a timeline line per step as it happens, then a summary.

    executor: a step started / finished ─┐
    deployment: each analysis window ────┼─► Story.record ─► a timeline line (or None)
                                          │
                                          └─► Story.summary() ─► detection delay, retrain
                                              time, rollout steps, accuracy before/after

`record` takes what `RunContext.progress` carries (the key "Kind/name", and fields) and
keeps it; the summary and the HTML report (`flywheel.local.storyreport`) read the kept
events. Times are seconds since the run began (wall clock), or, for a rollout's windows,
the simulated time of the deployment (`seconds`) and the data's own time (`dataTime`).

The drift onset is known only where the data says when it began: the DriftMonitor's
annotation `flywheel.dev/drift-onset` (an ISO date; the quickstart's generator raises
prices from that day). Without it the summary leaves the detection delay out.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from flywheel.api.common import Resource, StatusBase
from flywheel.api.dataset import DatasetStatus
from flywheel.api.driftmonitor import DriftMonitorStatus
from flywheel.api.featureview import FeatureViewStatus
from flywheel.api.modeldeployment import ModelDeploymentStatus
from flywheel.api.trainingjob import TrainingJobStatus

ONSET_ANNOTATION = "flywheel.dev/drift-onset"


@dataclasses.dataclass(frozen=True)
class Event:
    at: float  # seconds since the run began
    key: str  # "Kind/name"
    what: str  # started | finished | window
    fields: Mapping[str, Any]


@dataclasses.dataclass
class Rollout:
    """One run of a ModelDeployment: its windows, in order, and how it ended."""

    key: str
    started: float
    windows: list[Mapping[str, Any]] = dataclasses.field(default_factory=list)
    status: ModelDeploymentStatus | None = None

    @property
    def analyses(self) -> int:
        return sum(not w.get("final") for w in self.windows)

    def serving_accuracy(self, version: str | None) -> tuple[float | None, int]:
        """Accuracy of `version` over the windows it answered (labels fed back)."""
        labels = correct = 0.0
        for w in self.windows:
            acc = (w.get("accuracyByVersion") or {}).get(version)
            n = (w.get("labelsByVersion") or {}).get(version, 0)
            if acc is not None and n:
                labels += n
                correct += acc * n
        return (correct / labels if labels else None), int(labels)

    def final_accuracy(self) -> tuple[float | None, int]:
        final = [w for w in self.windows if w.get("final")]
        if not final:
            return None, 0
        return final[-1].get("accuracy"), int(final[-1].get("labels") or 0)


class Story:
    """Keeps a run's events; `record` returns the timeline line an event makes, if any."""

    def __init__(
        self,
        resources: Mapping[str, Resource] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.resources = dict(resources or {})
        self.clock = clock
        self.start = clock()
        self.events: list[Event] = []
        self.rollouts: list[Rollout] = []
        self.lines: list[str] = []  # the timeline, as printed

    # --- as it goes ----------------------------------------------------------------

    def record(self, key: str, fields: Mapping[str, Any]) -> str | None:
        at = self.clock() - self.start
        if fields.get("step") == "started":
            self.events.append(Event(at, key, "started", fields))
            if key.startswith("ModelDeployment/"):
                self.rollouts.append(Rollout(key, at))
            text = started_line(key, fields)
            return None if text is None else self._line(at, text)
        if fields.get("step") == "finished":
            self.events.append(Event(at, key, "finished", fields))
            status = fields.get("status")
            if isinstance(status, ModelDeploymentStatus) and self.rollouts:
                self.rollouts[-1].status = status
            line = finished_line(key, status, fields.get("error"), self._retrain(key))
            if isinstance(status, TrainingJobStatus):
                started = self._started(key)
                if started is not None:
                    line += f" in {_duration(at - started)}"
            return self._line(at, line)
        if "window" in fields:
            window = dict(fields["window"])
            self.events.append(Event(at, key, "window", window))
            if not self.rollouts or self.rollouts[-1].key != key:
                self.rollouts.append(Rollout(key, at))
            self.rollouts[-1].windows.append(window)
            accuracy = window.get("accuracy")
            extra = "" if accuracy is None else f" (accuracy {accuracy:.3f})"
            return self._line(at, f"{key}: {fields.get('message', '')}{extra}")
        if "message" in fields:
            return self._line(at, f"{key}: {fields['message']}")
        return None

    def _line(self, at: float, text: str) -> str:
        line = f"[{_clock(at)}] {text}"
        self.lines.append(line)
        return line

    def _started(self, key: str) -> float | None:
        found = [e.at for e in self.events if e.key == key and e.what == "started"]
        return found[-1] if found else None

    def _retrain(self, key: str) -> bool:
        found = [e for e in self.events if e.key == key and e.what == "started"]
        return bool(found) and any(
            d.startswith("DriftMonitor/") for d in found[-1].fields.get("dependsOn", ())
        )

    # --- at the end ----------------------------------------------------------------

    def finished(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.what == "finished" and e.key.startswith(kind + "/")]

    def facts(self) -> dict[str, Any]:
        """The summary's figures (None where the run did not get that far)."""
        facts: dict[str, Any] = {"wallSeconds": self.clock() - self.start}
        drift = next(
            (
                e
                for e in self.finished("DriftMonitor")
                if isinstance(e.fields.get("status"), DriftMonitorStatus)
                and e.fields["status"].drifted_features
            ),
            None,
        )
        facts["driftDetected"] = drift is not None
        if drift is not None:
            status: DriftMonitorStatus = drift.fields["status"]
            facts["driftedFeatures"] = list(status.drifted_features)
            facts["detectedAt"] = drift.at
            facts["reportUri"] = status.report_uri
            facts.update(self._detection_delay(drift))
        retrain = [e for e in self.finished("TrainingJob") if self._retrain(e.key)]
        if retrain:
            started = self._started(retrain[0].key)
            facts["retrainSeconds"] = retrain[0].at - started if started is not None else None
            trained = retrain[0].fields.get("status")
            facts["retrain"] = {
                "key": retrain[0].key,
                "phase": getattr(trained, "phase", None) or "Failed",
                "version": getattr(trained, "model_version", None),
                "metric": getattr(trained, "primary_metric", None),
            }
        facts["rollouts"] = [self._rollout_facts(r) for r in self.rollouts]
        if len(self.rollouts) >= 2:
            # Both on the last rollout's traffic: the same replayed rows, split between
            # the version serving before (stable) and the retrained one (the candidate).
            before, after = self.rollouts[-2], self.rollouts[-1]
            serving = after.windows[0]["traffic"] if after.windows else {}
            stable = max(serving, key=lambda v: serving[v]) if serving else None
            acc, n = after.serving_accuracy(stable)
            if acc is None:  # the last rollout never kept the old version serving
                acc, n = before.final_accuracy()
            facts["accuracyBefore"] = {"version": stable, "accuracy": acc, "labels": n}
            version = (facts.get("retrain") or {}).get("version") or (
                after.status.stable_version if after.status else None
            )
            if version == stable:
                version = after.status.stable_version if after.status else None
            final, m = after.serving_accuracy(version)
            if final is None:
                final, m = after.final_accuracy()
            facts["accuracyAfter"] = {"version": version, "accuracy": final, "labels": m}
        return facts

    def _detection_delay(self, drift: Event) -> dict[str, Any]:
        """Onset (annotation, data time) -> the newest traffic the monitor had seen."""
        monitor = self.resources.get(drift.key)
        onset_text = monitor.metadata.annotations.get(ONSET_ANNOTATION) if monitor else None
        served = [w for r in self.rollouts for w in r.windows if r.started <= drift.at]
        times = [_when(w["dataTime"][1]) for w in served if w.get("dataTime")]
        newest = max((t for t in times if t is not None), default=None)
        out: dict[str, Any] = {
            "servedBeforeDetection": sum(int(w.get("requests", 0)) for w in served),
            "servingSecondsBeforeDetection": sum(
                r.windows[-1]["seconds"]
                for r in self.rollouts
                if r.windows and r.started <= drift.at
            ),
        }
        onset = _when(onset_text) if onset_text else None
        if onset is not None:
            out["onset"] = onset.isoformat()
        if newest is not None:
            out["trafficDataTime"] = newest.isoformat()
        if onset is not None and newest is not None:
            out["detectionDelayDataSeconds"] = (newest - onset).total_seconds()
        return out

    def _rollout_facts(self, r: Rollout) -> dict[str, Any]:
        s = r.status
        return {
            "key": r.key,
            "analyses": r.analyses,
            "requests": sum(int(w.get("requests", 0)) for w in r.windows),
            "simulatedSeconds": r.windows[-1]["seconds"] if r.windows else 0.0,
            "phase": s.phase if s else None,
            "stable": s.stable_version if s else None,
            "steps": s.step_summary if s else None,
        }

    def summary(self, report_path: str | None = None) -> str:
        f = self.facts()
        lines = ["Summary:"]
        if f["driftDetected"]:
            features = ", ".join(f["driftedFeatures"])
            lines.append(f"  drift detected:       {features}")
            if "detectionDelayDataSeconds" in f:
                lines.append(
                    f"  detection delay:      {_days(f['detectionDelayDataSeconds'])} of data time "
                    f"(onset {f['onset'][:10]}, newest traffic {f['trafficDataTime'][:10]}); "
                    f"{f['servedBeforeDetection']} requests and "
                    f"{_duration(f['servingSecondsBeforeDetection'])} of simulated serving "
                    "before the monitor ran"
                )
            else:
                lines.append(
                    f"  detection:            after {f['servedBeforeDetection']} requests "
                    f"({_duration(f['servingSecondsBeforeDetection'])} of simulated serving)"
                )
        else:
            lines.append("  drift detected:       no")
        if "retrain" in f:
            r = f["retrain"]
            seconds = f.get("retrainSeconds")
            took = f" in {_duration(seconds)}" if seconds is not None else ""
            lines.append(
                f"  retrain:              {r['key']} {r['phase']} {r['version'] or ''}"
                f"{took} {r['metric'] or ''}".rstrip()
            )
        for r in f["rollouts"]:
            lines.append(
                f"  rollout:              {r['key']} {r['phase']} ({r['steps'] or '-'} steps, "
                f"{r['analyses']} analyses, {r['requests']} requests, "
                f"{_duration(r['simulatedSeconds'])} simulated) -> serving {r['stable']}"
            )
        for label, name in (
            ("before retrain", "accuracyBefore"),
            ("after retrain", "accuracyAfter"),
        ):
            a = f.get(name)
            if a:
                value = "-" if a["accuracy"] is None else f"{a['accuracy']:.3f}"
                lines.append(
                    f"  accuracy {label}: {value} ({a['version']}, "
                    f"{a['labels']} labelled post-drift requests)"
                )
        restored = quality(f.get("accuracyBefore"), f.get("accuracyAfter"))
        if restored:
            lines.append(f"  quality:              {restored}")
        lines.append(f"  wall time:            {_duration(f['wallSeconds'])}")
        if report_path:
            lines.append(f"  report:               {report_path}")
        return "\n".join(lines)


def quality(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str | None:
    """Whether the retrain restored quality, in the summary's words (None: nothing to say).

    >>> quality({"accuracy": 0.65}, {"accuracy": 0.73})
    'restored: accuracy +0.080 on the same replayed traffic'
    """
    if not before or not after or before["accuracy"] is None or after["accuracy"] is None:
        return None
    gain = after["accuracy"] - before["accuracy"]
    word = "restored" if gain > 0 else "not restored"
    return f"{word}: accuracy {gain:+.3f} on the same replayed traffic"


# --- lines -----------------------------------------------------------------------------


def started_line(key: str, fields: Mapping[str, Any]) -> str | None:
    """The long steps say when they start; the quick ones only how they ended."""
    depends = [d for d in fields.get("dependsOn", ()) if d.startswith("DriftMonitor/")]
    if key.startswith("TrainingJob/") and depends:
        return f"retrain started: {key} (drift found by {depends[0]})"
    if key.startswith("TrainingJob/"):
        return f"training started: {key}"
    if key.startswith("ModelDeployment/"):
        return f"rollout started: {key}"
    return None


def finished_line(key: str, status: StatusBase | None, error: str | None, retrain: bool) -> str:
    if error or status is None:
        return f"failed: {key}: {error or 'no status'}"
    if isinstance(status, DatasetStatus):
        bad = f", {status.bad_rows} bad rows quarantined" if status.bad_rows else ""
        return f"ingested {key}: {status.version}, {status.rows} rows{bad}"
    if isinstance(status, FeatureViewStatus):
        return (
            f"materialized {key}: offline {status.offline_version}, "
            f"{status.online_rows} entities online"
        )
    if isinstance(status, TrainingJobStatus):
        what = "retrain finished" if retrain else "trained"
        metric = status.primary_metric or ", ".join(
            f"{k}={v:.3f}" for k, v in sorted(status.metrics.items())[:2]
        )
        return (
            f"{what}: {key} {status.phase} -> {status.model_name} {status.model_version}, {metric}"
        )
    if isinstance(status, ModelDeploymentStatus):
        if status.phase == "Promoted":
            return f"canary promoted: {key} serves {status.stable_version}"
        if status.phase == "RolledBack":
            return f"canary rolled back: {key} keeps {status.stable_version}"
        return f"{key}: {status.phase}, serving {status.stable_version}"
    if isinstance(status, DriftMonitorStatus):
        if status.drifted_features:
            scores = {s.feature: s for s in status.scores}
            parts = []
            for name in status.drifted_features:
                s = scores.get(name)
                score = "" if s is None or s.score is None else f" {s.method} {s.score:.3g}"
                parts.append(f"{name}{score}")
            return (
                f"drift detected: {key}: {', '.join(parts)} "
                f"({status.samples} requests, max score {status.max_score or 0:.3g})"
            )
        return f"{key}: {status.verdict or status.phase} ({status.samples or 0} requests)"
    return f"{key}: {status.phase}"


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60:3d}m{s % 60:02d}s"


def _duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{seconds:.1f}s"


def _days(seconds: float) -> str:
    return f"{timedelta(seconds=seconds).total_seconds() / 86400:.1f} days"
