"""A ModelDeployment on one machine: the versions served, real traffic replayed through the
router, and the rollout walked to its end by the same policy the operator runs.

    stable, candidate ─► Flywheel's v2 model server per version (127.0.0.1)
                              ▲
    replayed rows ─► router (the standalone ASGI router, 127.0.0.1) ─► request log
      + labels            │ /v1/models/<md>/rollout
                          ▼
              flywheel.serving.rollout.step ─► new weights ─► router.apply

The rows are the newest of the newest version's training set (its test split: rows
neither version trained on when the candidate is a retrain on newer labels), sent as
production would send them, many at once, with their labels fed back once a window's
answers are in; the router's reward counters then give each version's accuracy per
window. Time is simulated: each analysis interval of the spec is one window of replayed
requests, so a canary with a 5-minute pause finishes in seconds, through the same
decisions. Every request is real: the routing, errors,
latencies and the sampled request log the DriftMonitor then reads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from flywheel.api import conditions
from flywheel.api.common import duration_seconds
from flywheel.api.modeldeployment import (
    AnalysisDecision,
    AnalysisResult,
    ModelDeployment,
    ModelDeploymentStatus,
    ModelRef,
    Rollout,
    Strategy,
)
from flywheel.api.trainingjob import TrainingJob, TrainingJobStatus
from flywheel.drift import window as drift_window
from flywheel.entrypoints import RunContext
from flywheel.local.servers import EventLoop, LocalServer
from flywheel.serving import config as router_config
from flywheel.serving import httpclient, modelserver, predictor, rollout, routerapp
from flywheel.serving.router import Router
from flywheel.serving.state import StateStore
from flywheel.serving.versions import ServedVersion
from flywheel.storage import uris
from flywheel.training import registry, trainset

READY = "Ready"
PROGRESSING = "Progressing"
PROMOTED = "Promoted"
ROLLED_BACK = "RolledBack"

# Replayed requests per analysis window when the spec asks for none in particular.
DEFAULT_WINDOW = 100
MAX_WINDOW = 5000
MAX_ANALYSES = 200  # a rollout that never decides stops here, as its deadline would


class Unresolved(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def run_modeldeployment(md: ModelDeployment, context: RunContext) -> ModelDeploymentStatus:
    now = datetime.now(UTC)
    status = ModelDeploymentStatus(observed_generation=md.metadata.generation)
    try:
        stable = resolve(md.spec.stable, "spec.stable", context)
        candidate = resolve_candidate(md, stable, context)
        rows = traffic_rows(md, context, stable, candidate)
    except Unresolved as exc:
        status.phase = "Failed"
        status.conditions = conditions.set_condition(
            status.conditions, READY, False, exc.reason, str(exc), now
        )
        return status
    report = Progress(md, context.progress)
    with LocalDeployment(md, stable, candidate, context) as served:
        return walk(md, served, stable, candidate, rows, report)


# --- what serves ---------------------------------------------------------------------


def resolve(ref: ModelRef, field: str, context: RunContext) -> ServedVersion:
    """A model reference -> the registry version it names (its directory must exist)."""
    if ref.training_job_ref is not None:
        name = ref.training_job_ref.name
        job = context.input_status("TrainingJob", name)
        if not isinstance(job, TrainingJobStatus) or not job.model_version:
            raise Unresolved(
                "ModelNotTrained",
                f"{field}.trainingJobRef: TrainingJob {name!r} has registered no model "
                "version in this run (is it in the files given, and did it succeed?)",
            )
        uri = job.artifact_uri or ""
        return ServedVersion(job.model_name or "", job.model_version, uri)
    if ref.alias is not None:
        return by_alias(ref, field, context)
    assert ref.model_name is not None and ref.version is not None
    directory = context.artifact_root / "models" / ref.model_name / "versions" / ref.version
    if not (directory / "manifest.json").is_file():
        raise Unresolved(
            "ModelVersionNotFound",
            f"{field}: no registered version {ref.version!r} of model {ref.model_name!r} "
            f"under {directory.parent}",
        )
    return ServedVersion(ref.model_name, ref.version, str(directory))


def by_alias(ref: ModelRef, field: str, context: RunContext) -> ServedVersion:
    """The version that holds a registry alias now (the registry under the artifact root)."""
    assert ref.model_name is not None and ref.alias is not None
    root = context.artifact_root / "models" / ref.model_name
    version = registry.alias(uris.resolve(str(root)), ref.alias)
    if version is None:
        raise Unresolved(
            "AliasNotFound",
            f"{field}.alias: no version of model {ref.model_name!r} has the alias "
            f"{ref.alias!r} under {root}",
        )
    return ServedVersion(ref.model_name, version, str(root / "versions" / version))


def resolve_candidate(
    md: ModelDeployment, stable: ServedVersion, context: RunContext
) -> ServedVersion | None:
    """The candidate; one named by alias that no version holds, or that names the stable
    version (a promotion moved champion to it), is none: stable serves alone."""
    ref = md.spec.candidate
    if ref is None:
        return None
    if ref.alias is None:
        return resolve(ref, "spec.candidate", context)
    try:
        found = by_alias(ref, "spec.candidate", context)
    except Unresolved:
        return None
    return None if found.version == stable.version else found


# A replayed request: its features, its label (sent back as feedback), and its time in the
# data (the label's timestamp: when, in the data's own calendar, the request came).
Row = tuple[dict[str, Any], Any, datetime | None]


def traffic_rows(
    md: ModelDeployment,
    context: RunContext,
    stable: ServedVersion | None = None,
    candidate: ServedVersion | None = None,
) -> list[Row]:
    """Rows to replay: the newest version's newest labelled rows (its test split), the
    candidate's when there is one. A candidate trained on newer labels than the stable
    version (a retrain) is then measured, against the stable version, on labels neither
    of them trained on; a candidate trained on the same labels has the same test split."""
    by_candidate = md.spec.candidate.training_job_ref if md.spec.candidate else None
    name = (by_candidate.name if by_candidate else _trained_by(candidate, context)) or (
        md.spec.stable.training_job_ref.name
        if md.spec.stable.training_job_ref
        else _trained_by(stable, context)
    )
    job = context.input_resource("TrainingJob", name) if name else None
    if not isinstance(job, TrainingJob):
        raise Unresolved(
            "NoTrafficSource",
            "flywheel run replays the labelled rows of a TrainingJob given in the same "
            "files: name one in spec.stable.trainingJobRef",
        )
    ts = trainset.load(job, context)
    s = job.spec.split
    split = trainset.split(ts, s.strategy, s.test_fraction, s.seed, s.stratify)
    table = ts.table.take(split.test)
    columns = {n: table[n].to_pylist() for n in ts.features}
    labels = table[ts.label].to_pylist()
    times = table[ts.time_column].to_pylist() if ts.time_column in table.column_names else []
    if not labels:  # found before any server starts, and reported as the status says
        raise Unresolved("NoTrafficSource", "the training set has no test rows to replay")
    return [
        (
            {n: _plain(columns[n][i]) for n in ts.features},
            labels[i],
            times[i] if i < len(times) and isinstance(times[i], datetime) else None,
        )
        for i in range(len(labels))
    ]


def _trained_by(version: ServedVersion | None, context: RunContext) -> str | None:
    """The TrainingJob that registered a version, as the registry's index records it; if
    it is not in this run's files (a version an earlier run promoted), one that trains
    the same model here: its labelled rows are the same kind of traffic."""
    if version is None:
        return None
    root = uris.resolve(str(context.artifact_root / "models" / version.model_name))
    entry = registry.read_index(root)["versions"].get(version.version) or {}
    found = entry.get("trainingJob")
    if found and context.input_resource("TrainingJob", str(found)) is not None:
        return str(found)
    same = (
        r.name
        for r in context.resources.values()
        if isinstance(r, TrainingJob) and r.spec.output.model_name == version.model_name
    )
    return next(same, None)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class LocalDeployment:
    """One v2 model server per version and the router in front, all on 127.0.0.1."""

    def __init__(
        self,
        md: ModelDeployment,
        stable: ServedVersion,
        candidate: ServedVersion | None,
        context: RunContext,
    ) -> None:
        self.md = md
        self.versions = [v for v in (stable, candidate) if v is not None]
        # The router writes under <uri>/<deployment>/; the DriftMonitor reads every file
        # below its log location, which is that directory when no uri is given.
        log = drift_window.log_location(md.name, context, context.namespace).uri
        self.log_uri = log if md.spec.request_logging.uri else log.rstrip("/").rsplit("/", 1)[0]
        self.state_dir = context.artifact_root / "router-state" / context.namespace / md.name
        self.servers: list[LocalServer] = []

    def __enter__(self) -> LocalDeployment:
        self.loop = EventLoop()
        try:
            endpoints = {}
            names: list[str] = []
            for v in self.versions:
                model = predictor.load_predictor(v.artifact_uri)
                server = modelserver.ModelServer(self.md.name, v.version, model)
                self.servers.append(LocalServer(self.loop, modelserver.app(server)))
                endpoints[v.version] = self.servers[-1].url
                names += [n for n in model.feature_names or [] if n not in names]
            self.base = {
                "deployment": self.md.name,
                "model": self.md.name,
                "endpoints": endpoints,
                "features": names,
                "requestLogging": {
                    "sampleRate": self.md.spec.request_logging.sample_rate,
                    "uri": self.log_uri,
                },
            }
            stable = self.versions[0].version
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self.router = Router(
                router_config.parse(self.config(stable, None, {stable: 100.0})),
                store=StateStore(self.state_dir / "state.db"),
            )
            self.servers.append(LocalServer(self.loop, routerapp.app(self.router)))
            self.url = self.servers[-1].url
        except BaseException:
            self.__exit__()
            raise
        return self

    def config(self, stable: str, candidate: str | None, split: Mapping[str, float]) -> str:
        spec = self.md.spec.rollout
        doc: dict[str, Any] = {
            **self.base,
            "stable": stable,
            "candidate": candidate,
            "traffic": dict(split),
            "strategy": Strategy(spec.strategy).value if candidate else Strategy.NONE.value,
        }
        if candidate and spec.shadow is not None:
            doc["shadow"] = spec.shadow.model_dump(by_alias=True, mode="json")
        if candidate and spec.bandit is not None:
            doc["bandit"] = spec.bandit.model_dump(by_alias=True, mode="json")
        return json.dumps(doc)

    def apply(self, stable: str, candidate: str | None, split: Mapping[str, float]) -> None:
        cfg = self.config(stable, candidate, split)
        if not self.loop.run(_apply(self.router, cfg)):
            raise RuntimeError(f"the router refused its config: {self.router.config_error}")

    def __exit__(self, *exc: object) -> None:
        # The router first: closing it flushes the request log.
        for server in reversed(self.servers):
            server.stop()
        self.loop.close()


async def _apply(router: Router, cfg: str) -> bool:
    return router.apply(cfg)


# --- the rollout ---------------------------------------------------------------------


@dataclasses.dataclass
class Progress:
    """Reports each analysis as a line (`message`) and, for a timeline or a report, what
    served in its window (`window`: simulated seconds, traffic split, answers, accuracy)."""

    md: ModelDeployment
    sink: Callable[[str, Mapping[str, Any]], None] | None

    def __call__(self, message: str, window: Mapping[str, Any] | None = None) -> None:
        if self.sink is not None:
            fields: dict[str, Any] = {"message": message}
            if window is not None:
                fields["window"] = dict(window)
            self.sink(self.md.key, fields)


def window_record(
    served: Served, split: Mapping[str, float], elapsed: timedelta, final: bool = False
) -> dict[str, Any]:
    """One window as the timeline and the report take it (plain JSON types)."""
    return {
        "seconds": elapsed.total_seconds(),
        "traffic": dict(split),
        "requests": served.requests,
        "failed": served.failed,
        "answered": dict(served.answered),
        "accuracy": served.accuracy(),
        "accuracyByVersion": {v: served.accuracy(v) for v in served.labelled},
        "labels": sum(n for n, _ in served.labelled.values()),
        "labelsByVersion": {v: n for v, (n, _) in served.labelled.items()},
        "dataTime": [t.isoformat() if t else None for t in served.data_time],
        "final": final,
    }


def window_size(md: ModelDeployment, candidate_percent: float, analyses: int = 1) -> int:
    """Replayed requests per analysis interval: a real service at the rate that gives the
    candidate its share of the analysis's minimum by the step's last analysis (the
    router counts a step's requests from its start; earlier analyses find too few and
    are inconclusive, which never promotes). At least `DEFAULT_WINDOW`, at most
    `MAX_WINDOW`."""
    r = md.spec.rollout
    needed = DEFAULT_WINDOW
    if r.strategy == Strategy.CANARY and r.canary is not None:
        needed = r.canary.analysis.min_requests
    elif r.strategy == Strategy.BANDIT and r.bandit is not None:
        needed = r.bandit.min_samples
    elif r.strategy == Strategy.ABTEST and r.abtest is not None:
        # A tenth of the planned sample per interval on the smaller arm: the sequential
        # test is read about ten times before the plan is reached.
        share = min(r.abtest.split, 100 - r.abtest.split)
        needed = math.ceil(rollout.planned(r.abtest) / 10 * 100 / share)
    if r.strategy == Strategy.CANARY and 0 < candidate_percent < 100:
        needed = math.ceil(needed * 1.2 * 100 / candidate_percent / max(1, analyses))
    return max(DEFAULT_WINDOW, min(needed, MAX_WINDOW))


def analyses_in_step(md: ModelDeployment, state: rollout.State) -> int:
    """How many analyses a canary's current step has: one per interval of its pause, and
    the one that ends it."""
    r = md.spec.rollout
    if r.strategy != Strategy.CANARY or r.canary is None or state.step >= len(r.canary.steps):
        return 1
    pause = r.canary.steps[state.step].pause
    seconds = duration_seconds(pause) if pause else 0.0
    return int(seconds // max(interval_seconds(md), 1.0)) + 1


def interval_seconds(md: ModelDeployment) -> float:
    r = md.spec.rollout
    if r.strategy == Strategy.CANARY and r.canary is not None:
        return duration_seconds(r.canary.analysis.interval)
    if r.strategy == Strategy.SHADOW and r.shadow is not None:
        # A shadow decides once, at the end of its duration.
        return duration_seconds(r.shadow.duration)
    return 60.0


def walk(
    md: ModelDeployment,
    served: LocalDeployment,
    stable: ServedVersion,
    candidate: ServedVersion | None,
    rows: list[Row],
    progress: Progress,
) -> ModelDeploymentStatus:
    spec = md.spec.rollout
    cand = candidate.version if candidate else None
    start = clock = datetime.now(UTC)
    deadline = start + timedelta(seconds=duration_seconds(md.spec.progress_deadline))
    interval = timedelta(seconds=interval_seconds(md))
    state = rollout.State()
    decision = rollout.Decision(state, AnalysisDecision.CONTINUE, "serving")
    # Every window's labels go back as feedback: a bandit's rewards, an A/B test's
    # outcomes, everyone's accuracy.
    replay = Replay(served.url, md.name, rows, served.loop)
    report: dict[str, Any] = {}
    try:
        for _ in range(MAX_ANALYSES):
            split = rollout.traffic(spec, state, stable.version, cand)
            served.apply(stable.version, cand, split)
            share = split.get(cand, 0.0) if cand else 0.0
            window = replay.send(window_size(md, share, analyses_in_step(md, state)))
            report = replay.report()
            clock += interval
            record = window_record(window, split, clock - start)
            if cand is None:
                decision = rollout.Decision(state, AnalysisDecision.CONTINUE, "no candidate")
                progress(describe(split, decision, clock - start), record)
                break
            if clock > deadline and not state.finished:
                done = dataclasses.replace(state, outcome=AnalysisDecision.ROLLBACK)
                decision = rollout.Decision(
                    done, AnalysisDecision.ROLLBACK, "the progress deadline passed"
                )
            else:
                decision = rollout.step(spec, state, metrics_of(report, spec), clock)
            progress(describe(split, decision, clock - start), record)
            state = decision.state
            if state.finished:
                break
        final = rollout.traffic(spec, state, stable.version, cand)
        served.apply(stable.version, cand, final)
        window = replay.send(DEFAULT_WINDOW)  # the final split serves too: the log shows it
        after = f"[{rollout.summary(final)}] serving after the rollout"
        progress(after, window_record(window, final, clock + interval - start, final=True))
    finally:
        replay.close()
    return status_of(md, stable.version, cand, state, decision, final, replay, clock, report)


def metrics_of(report: Mapping[str, Any], spec: Rollout | None = None) -> rollout.Metrics | None:
    c = report.get("candidate")
    if not c:
        return None
    counts = None
    if spec is not None and spec.abtest is not None:
        counts = rollout.ab_counts(report, str(c["version"]), spec.abtest.metric)
    return rollout.Metrics(
        requests=int(c["requests"]),
        errors=int(c["errors"]),
        p99_latency_ms=c.get("p99LatencyMs"),
        agreement=c.get("agreement"),
        candidate_share=c.get("candidateShare"),
        control=counts[0] if counts else None,
        treatment=counts[1] if counts else None,
    )


def describe(split: Mapping[str, float], decision: rollout.Decision, elapsed: timedelta) -> str:
    seconds = int(elapsed.total_seconds())
    return (
        f"[{rollout.summary(dict(split))}] t+{seconds // 60}m{seconds % 60:02d}s: "
        f"{decision.decision.value}: {decision.message}"
    )


# Requests in flight at once while replaying. The client, the router and the version
# servers share one event loop in one process: more in flight was measured no faster
# (the work is Python on one core's worth of the GIL) and only queues requests inside the
# servers, which the router measures as latency and the canary's p99 gate judges (at 8
# in flight on a busy machine, p99 went from about 190 ms to 840 ms). Servers elsewhere
# (a cluster) can take more.
CONCURRENCY = 1

# A replayed call's whole answer, from asking for a connection to its last byte.
REQUEST_TIMEOUT = 30.0
_JSON = {"content-type": "application/json"}


@dataclasses.dataclass(frozen=True)
class Served:
    """One window of replayed traffic, and what the labels said of it."""

    requests: int
    failed: int
    answered: dict[str, int]  # version -> requests it answered
    # version -> (labels fed back, rewards): the router rewards a label 1 when the
    # prediction it answered with matched it, so rewards / labels is the accuracy.
    labelled: dict[str, tuple[int, float]]
    data_time: tuple[datetime | None, datetime | None]  # the oldest and newest row sent

    def accuracy(self, version: str | None = None) -> float | None:
        pairs = [p for v, p in self.labelled.items() if version in (None, v)]
        labels = sum(n for n, _ in pairs)
        return sum(r for _, r in pairs) / labels if labels else None


class Replay:
    """Sends rows to the router's JSON predict endpoint, `CONCURRENCY` at a time, and,
    once a window's answers are in, their labels to its feedback endpoint (labels come
    late in production too). The coroutines run on `loop`, the servers' event loop, so
    the calls go over the router's own keep-alive client: the CPU they take is taken
    from the servers being measured."""

    def __init__(
        self,
        url: str,
        name: str,
        rows: list[Row],
        loop: EventLoop,
        concurrency: int = CONCURRENCY,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.url = url
        self.name = name
        self.rows = rows
        self.loop = loop
        self.concurrency = concurrency
        self.timeout = timeout
        self.client: httpclient.HttpClient | None = None
        self.at = 0
        self.sent = 0
        self.failed = 0
        self.versions: dict[str, int] = {}

    def send(self, count: int) -> Served:
        served: Served = self.loop.run(self._send(count), timeout=max(60.0, count / 5))
        return served

    async def _send(self, count: int) -> Served:
        batch = [self.rows[(self.at + i) % len(self.rows)] for i in range(count)]
        self.at += count
        gate = asyncio.Semaphore(self.concurrency)

        async def predict(features: dict[str, Any]) -> dict[str, Any] | None:
            async with gate:
                reply = await self._call(
                    "POST", f"/v1/models/{self.name}/predict", {"instances": [features]}
                )
            if reply.status != 200:
                return None
            body: dict[str, Any] = json.loads(reply.body)
            return body

        async def feedback(request_id: str, label: Any) -> None:
            async with gate:
                await self._call(
                    "POST",
                    f"/v1/models/{self.name}/feedback",
                    {"id": request_id, "label": float(label)},
                )

        answers = await asyncio.gather(*(predict(f) for f, _, _ in batch))
        answered: dict[str, int] = {}
        for body in answers:
            if body is not None:
                answered[body["version"]] = answered.get(body["version"], 0) + 1
        failed = sum(body is None for body in answers)
        self.sent += count
        self.failed += failed
        for v, n in answered.items():
            self.versions[v] = self.versions.get(v, 0) + n
        before = await self._rewards()
        await asyncio.gather(
            *(
                feedback(body["id"], label)
                for body, (_, label, _) in zip(answers, batch, strict=True)
                if body is not None and label is not None
            )
        )
        after = await self._rewards()
        labelled = {
            v: (n - before.get(v, (0, 0.0))[0], r - before.get(v, (0, 0.0))[1])
            for v, (n, r) in after.items()
            if n > before.get(v, (0, 0.0))[0]
        }
        times = [t for _, _, t in batch if t is not None]
        data_time = (min(times), max(times)) if times else (None, None)
        return Served(count, failed, answered, labelled, data_time)

    async def _call(self, method: str, path: str, doc: Any = None) -> httpclient.Reply:
        """The router's answer to one call, with `doc` as its JSON body when given; an
        unreachable router or no answer in time raises (httpclient.HttpError)."""
        if self.client is None:
            # One connection per call in flight: the gate above never waits for the pool.
            self.client = httpclient.HttpClient(self.url, max_connections=self.concurrency)
        if doc is None:
            return await self.client.request(method, path, timeout=self.timeout)
        # Non-finite numbers are refused, not sent as JSON no parser reads back.
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return await self.client.request(method, path, body.encode(), _JSON, timeout=self.timeout)

    async def _rewards(self) -> dict[str, tuple[int, float]]:
        """version -> (labels, rewards) so far, from the router's Prometheus metrics."""
        text = (await self._call("GET", "/metrics")).text
        counts: dict[str, float] = {}
        sums: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("deployment") != self.name:
                    continue
                if sample.name == "flywheel_router_rewards_total":
                    counts[sample.labels["version"]] = sample.value
                elif sample.name == "flywheel_router_reward_sum_total":
                    sums[sample.labels["version"]] = sample.value
        return {v: (int(n), sums.get(v, 0.0)) for v, n in counts.items()}

    def report(self) -> dict[str, Any]:
        return self.loop.run(self._report())

    async def _report(self) -> dict[str, Any]:
        reply = await self._call("GET", f"/v1/models/{self.name}/rollout")
        result: dict[str, Any] = json.loads(reply.body)
        return result

    def close(self) -> None:
        if self.client is not None:
            self.loop.run(self.client.close())
            self.client = None


def status_of(
    md: ModelDeployment,
    stable: str,
    candidate: str | None,
    state: rollout.State,
    decision: rollout.Decision,
    split: dict[str, float],
    replay: Replay,
    clock: datetime,
    last_report: Mapping[str, Any],
) -> ModelDeploymentStatus:
    """The status the operator writes for the same outcome (conditions, columns)."""
    now = datetime.now(UTC)
    s = ModelDeploymentStatus(observed_generation=md.metadata.generation)
    steps = md.spec.rollout.canary.steps if md.spec.rollout.canary else []
    s.traffic = split
    s.traffic_summary = rollout.summary(split)
    s.step = state.step
    s.step_summary = f"{state.step + 1}/{len(steps)}" if steps and candidate else None
    s.failed_analyses = state.failures
    s.stable_version, s.candidate_version = stable, candidate
    measured = metrics_of(last_report)
    s.ab_test = decision.ab_test
    s.last_analysis = AnalysisResult(
        time=clock,
        decision=decision.decision,
        message=decision.message[:1000],
        requests=measured.requests if measured else 0,
        error_rate=measured.error_rate if measured else None,
        p99_latency_ms=measured.p99_latency_ms if measured else None,
        agreement=measured.agreement if measured else None,
    )
    served = f"{replay.sent} requests replayed, {replay.failed} failed"
    c = s.conditions
    ready = replay.failed == 0
    c = conditions.set_condition(
        c, READY, ready, "Served" if ready else "RequestsFailed", served, now
    )
    if state.outcome == AnalysisDecision.PROMOTE and candidate:
        s.stable_version, s.candidate_version = candidate, None
        c = conditions.set_condition(c, PROMOTED, True, "AnalysisPassed", decision.message, now)
        c = conditions.set_condition(c, ROLLED_BACK, False, "Promoted", "", now)
        c = conditions.set_condition(c, PROGRESSING, False, "RolloutFinished", "", now)
        s.phase = "Promoted"
    elif state.outcome == AnalysisDecision.ROLLBACK and candidate:
        c = conditions.set_condition(c, ROLLED_BACK, True, "AnalysisFailed", decision.message, now)
        c = conditions.set_condition(c, PROMOTED, False, "RolledBack", "", now)
        c = conditions.set_condition(c, PROGRESSING, False, "RolloutFinished", "", now)
        s.phase = "RolledBack"
    elif candidate:
        c = conditions.set_condition(
            c, PROGRESSING, True, decision.decision.value, decision.message, now
        )
        s.phase = "Progressing"
    else:
        c = conditions.set_condition(c, PROGRESSING, False, "NoCandidate", "", now)
        s.phase = "Ready" if ready else "Failed"
    s.conditions = c
    return s
