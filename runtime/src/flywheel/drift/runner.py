"""The DriftMonitor entrypoint: one run of the monitor, as `flywheel drift run` does it.

    reference (prepared, cached per version) ─┐
    request log ─► window ─► live features ───┼─► checks ─► corrected ─► verdicts
    model version's first window of predictions ┘        └─► status, report, metrics

A run that cannot read its reference or whose tests do not fit the features returns
phase `Failed` with the reason; too few requests is a finished run with verdict
`Insufficient`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from flywheel.api import conditions
from flywheel.api.common import ConditionStatus
from flywheel.api.driftmonitor import (
    SKEWED,
    Correction,
    DriftMonitor,
    DriftMonitorStatus,
    FeatureScore,
    RunWindow,
    SkewResult,
    TestMethod,
    Verdict,
)
from flywheel.data import profile
from flywheel.drift import compare, reference, skew, window
from flywheel.drift.compare import NUMERIC, Check, ColumnReference, LiveColumn
from flywheel.entrypoints import RunContext
from flywheel.storage import uris

DRIFT_DETECTED = "DriftDetected"
READY = "Ready"


@dataclasses.dataclass(frozen=True)
class Run:
    """What one run found, before it becomes a status."""

    time: datetime
    reference_version: str
    live: window.Live
    checks: list[Check]
    verdict: Verdict
    model_version: str | None
    references: dict[str, ColumnReference]
    live_columns: dict[str, LiveColumn]
    log_uri: str
    skew: SkewResult | None = None


def run_driftmonitor(
    monitor: DriftMonitor, context: RunContext, now: datetime | None = None
) -> DriftMonitorStatus:
    now = now or datetime.now(UTC)
    previous = monitor.status or DriftMonitorStatus()
    generation = monitor.metadata.generation
    try:
        run = monitor_once(monitor, context, now)
    except (reference.ReferenceError, window.LogError, compare.MethodMismatch) as exc:
        reason = getattr(exc, "reason", "MethodMismatch")
        failed = previous.model_copy(deep=True)
        failed.phase = "Failed"
        failed.observed_generation = generation
        failed.conditions = conditions.set_condition(
            previous.conditions, READY, False, reason, str(exc), now, generation
        )
        return failed
    directory = output_directory(monitor, context)
    report_uri = write_outputs(monitor, run, directory)
    return status_of(monitor, run, previous, report_uri)


def monitor_once(monitor: DriftMonitor, context: RunContext, now: datetime) -> Run:
    spec = monitor.spec
    namespace = monitor.metadata.namespace or context.namespace
    location = window.log_location(spec.deployment_ref.name, context, namespace)
    wanted = [window.TIME, window.MODEL_VERSION, window.PREDICTION, *spec.features]
    # Skew needs the entity keys and every served feature: all columns then.
    listed = wanted if spec.features and spec.skew is None else None
    live = window.read_window(location, spec.window, now, listed)
    model_version = live.main_version()
    if model_version is None and spec.reference.serving_version is not None:
        # Nothing served yet, so no version to compare with: too few samples, no verdict.
        return _nothing_served(monitor, now, live, location.uri)
    ref = reference.load(monitor, context, model_version)
    # Without a list: what the model received (the log's features) that the reference has.
    names = spec.features or [n for n in live.features if n in ref.columns]
    references = {n: ref.columns[n] for n in names if n in ref.columns}
    live_columns = {
        n: live_column(references[n], live.table.column(n))
        for n in names
        if n in references and n in live.table.column_names
    }
    checks = compare.check_all(references, live_columns, spec.tests, spec.min_samples)
    # A watched feature missing on either side is named, never silently skipped.
    checks += [_missing(monitor, n, references.get(n)) for n in names if n not in live_columns]
    if spec.prediction:
        predicted = prediction_check(monitor, location, live, model_version, now)
        if predicted is not None:
            check, ref_column, live_col = predicted
            checks.append(check)
            references[window.PREDICTION] = ref_column
            live_columns[window.PREDICTION] = live_col
    return Run(
        time=now,
        reference_version=ref.version,
        live=live,
        checks=checks,
        verdict=compare.overall(checks),
        model_version=model_version,
        references=references,
        live_columns=live_columns,
        log_uri=location.uri,
        skew=skew.check(monitor, context, live) if spec.skew is not None else None,
    )


def _nothing_served(monitor: DriftMonitor, now: datetime, live: window.Live, log: str) -> Run:
    checks = [_missing(monitor, n, None) for n in monitor.spec.features]
    return Run(
        time=now,
        reference_version="servingVersion (no version has served yet)",
        live=live,
        checks=checks,
        verdict=Verdict.INSUFFICIENT,
        model_version=None,
        references={},
        live_columns={},
        log_uri=log,
    )


def live_column(ref: ColumnReference, column: Any) -> LiveColumn:
    kind = profile.column_kind(column.type)
    if kind != ref.kind:
        raise compare.MethodMismatch(
            f"feature {ref.name!r} is {ref.kind} in the reference but {column.type} in the log"
        )
    if kind == NUMERIC:
        return LiveColumn(values=reference.numbers(column))
    return LiveColumn(counts=window.column_counts(column))


def _missing(monitor: DriftMonitor, name: str, ref: ColumnReference | None) -> Check:
    kind = ref.kind if ref is not None else NUMERIC
    test = compare.choose_test(monitor.spec.tests, name, kind)
    return Check(
        feature=name,
        method=TestMethod(test.method),
        level=test.level(),
        verdict=Verdict.INSUFFICIENT,
        samples=0,
        reference_samples=ref.count if ref is not None else 0,
    )


def prediction_check(
    monitor: DriftMonitor,
    location: uris.Location,
    live: window.Live,
    model_version: str | None,
    now: datetime,
) -> tuple[Check, ColumnReference, LiveColumn] | None:
    """The window's predictions against the first window the same model version logged.

    Only requests after that first window count as live, so the two never overlap; a
    version that has served for less than two windows is Insufficient.
    """
    if model_version is None:
        return None
    columns = [window.TIME, window.MODEL_VERSION, window.PREDICTION]
    spec = monitor.spec
    baseline = window.read_window(location, spec.window, now, columns, model_version, first=True)
    if window.PREDICTION not in baseline.table.column_names:
        return None
    prepared = reference.prepare(baseline.table.select([window.PREDICTION]))
    ref = prepared.get(window.PREDICTION)
    if ref is None:  # not a number or a category (e.g. a vector): not tested
        return None
    recent = live.table  # has the prediction column: the baseline, from the same log, had it
    keep = pc.equal(recent.column(window.MODEL_VERSION), model_version)
    if baseline.end is not None:
        keep = pc.and_(keep, pc.greater(recent.column(window.TIME), baseline.end))
    current = recent.filter(keep).column(window.PREDICTION)
    live_col = live_column(ref, current)
    test = compare.choose_test(spec.tests, window.PREDICTION, ref.kind)
    check = compare.check_feature(ref, live_col, test, spec.min_samples)
    # The prediction is a test of its own, not one more feature of the family.
    return compare.correct([check], Correction.NONE)[0], ref, live_col


# --- results ---------------------------------------------------------------------------


def score_of(check: Check) -> FeatureScore:
    return FeatureScore(
        feature=check.feature,
        method=check.method,
        score=_finite(check.score),
        p_value=_finite(check.p_value),
        threshold=check.level,
        verdict=check.verdict,
        drifted=check.drifted,
        samples=check.samples,
    )


def _finite(value: float | None) -> float | None:
    return None if value is None or value != value else round(value, 6)


def status_of(
    monitor: DriftMonitor, run: Run, previous: DriftMonitorStatus, report_uri: str | None
) -> DriftMonitorStatus:
    generation = monitor.metadata.generation
    drifted = [c.feature for c in run.checks if c.drifted]
    status = previous.model_copy(deep=True)
    status.observed_generation = generation
    status.phase = "Ready"
    status.last_run = run.time
    status.verdict = run.verdict
    status.samples = run.live.rows
    status.window = RunWindow(start=run.live.start, end=run.live.end)
    status.reference_version = run.reference_version[:256]
    status.model_version = run.model_version
    status.scores = [score_of(c) for c in run.checks]
    status.scores_omitted = 0
    status.drifted_features = drifted
    status.max_score = compare.max_score(run.checks)
    status.report_uri = report_uri
    insufficient = [c.feature for c in run.checks if c.verdict == Verdict.INSUFFICIENT]
    summary = f"{run.live.rows} requests, {len(run.checks)} tests against {run.reference_version}"
    status.conditions = conditions.set_condition(
        previous.conditions, READY, True, "Checked", summary, run.time, generation
    )
    if run.verdict == Verdict.DRIFT:
        detected, reason, message = ConditionStatus.TRUE, "Drift", ", ".join(drifted)
    elif run.verdict == Verdict.NO_DRIFT:
        detected, reason, message = ConditionStatus.FALSE, "NoDrift", ""
    else:
        detected, reason = ConditionStatus.UNKNOWN, "Insufficient"
        if run.live.rows == 0:
            message = f"no requests logged yet under {run.log_uri}"
        else:
            message = f"fewer than {monitor.spec.min_samples} values: " + ", ".join(insufficient)
    status.conditions = conditions.set_condition(
        status.conditions, DRIFT_DETECTED, detected, reason, message, run.time, generation
    )
    status.skew = run.skew
    if run.skew is not None:
        status.conditions = conditions.set_condition(
            status.conditions, SKEWED, *run.skew.condition(), run.time, generation
        )
    return status


def output_directory(monitor: DriftMonitor, context: RunContext) -> Path:
    namespace = monitor.metadata.namespace or context.namespace
    return context.artifact_root / "drift" / "monitors" / namespace / monitor.name


def write_outputs(monitor: DriftMonitor, run: Run, directory: Path) -> str:
    """report.html, report.json (every score) and metrics.prom; the report's URI."""
    from flywheel.drift import metrics, report

    directory.mkdir(parents=True, exist_ok=True)
    status = status_of(monitor, run, DriftMonitorStatus(), None)
    _replace(directory / "report.json", json.dumps(status.to_wire(), indent=2).encode())
    namespace = monitor.metadata.namespace or "default"
    _replace(directory / "metrics.prom", metrics.exposition([(namespace, monitor.name, status)]))
    html = report.render(monitor, run)
    _replace(directory / "report.html", html.encode())
    return uris.local_uri(directory / "report.html")


def _replace(path: Path, data: bytes) -> None:
    # Readers (a textfile collector, a browser) see the old file or the new one.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def fit_result(
    status: DriftMonitorStatus, fits: Callable[[DriftMonitorStatus], bool]
) -> DriftMonitorStatus:
    """The status with the fewest scores dropped so that it `fits` (a termination message).

    Drifted features are kept first, then the others by verdict; the full list is in
    the report (`reportUri`).
    """
    if fits(status):
        return status
    order = {Verdict.DRIFT: 0, Verdict.NO_DRIFT: 1, Verdict.INSUFFICIENT: 2, None: 3}
    ranked = sorted(range(len(status.scores)), key=lambda i: order[status.scores[i].verdict])

    def keeping(k: int) -> DriftMonitorStatus:
        kept = sorted(ranked[:k])
        return status.model_copy(
            update={
                "scores": [status.scores[i] for i in kept],
                "scores_omitted": len(status.scores) - k,
            }
        )

    low, high = 0, len(ranked)  # the most scores that fit, by bisection
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(keeping(mid)) else (low, mid - 1)
    return keeping(low)
