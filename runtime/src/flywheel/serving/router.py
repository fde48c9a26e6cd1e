"""The router core: one request in, one version's answer out; the same on the standalone
router (routerapp.py) and inside Ray Serve (rayserve.py).

    admit (bounded concurrency + queue: 429 when the queue is full, 503 after waiting)
      -> choose a version (policy: split | bandit; ejected versions skipped; sticky key)
      -> call it within min(call timeout, what is left of the total deadline)
      -> on a candidate's failure, answer from stable if time is left
      -> record: metrics, the rollout window, the request id (for feedback), the log
      -> mirror to the shadow (queue, never awaited)

Everything that can block (the shadow, the request log, saving bandit state) runs off
the request path. `apply(config)` swaps the configuration in one assignment and keeps
the state of every policy whose versions did not change; it never raises.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from flywheel.serving import config as config_mod
from flywheel.serving import oip
from flywheel.serving.backends import Backend, BackendError
from flywheel.serving.config import RouterConfig
from flywheel.serving.metrics import RouterMetrics
from flywheel.serving.policies import bandit as bandit_mod
from flywheel.serving.policies import ejection, shadow, split, stats
from flywheel.serving.requestlog import RequestLog
from flywheel.serving.service import ServiceError
from flywheel.serving.state import PolicyStore

log = logging.getLogger(__name__)

BackendFactory = Callable[[RouterConfig, str], Backend]
PENDING_LIMIT = 200_000  # request ids kept for delayed feedback
SHADOW_WORKERS = 16


def default_backend(config: RouterConfig, version: str) -> Backend:
    """A version's backend: a Ray Serve application, or an endpoint URL."""
    from flywheel.serving import backends

    if version in config.applications:
        return backends.RayServeBackend(version, config.applications[version])
    url = config.endpoints.get(version)
    if url is None:
        raise ValueError(f"version {version!r} has neither an endpoint nor an application")
    try:
        if config.backend == "http":
            return backends.HttpBackend(version, url, config.model_name)
        protocol = config.backend.removeprefix("triton-")
        return backends.TritonBackend(version, url, config.model_name, protocol)
    except ValueError as exc:
        raise ValueError(f"router config: endpoints.{version}: {exc}") from None


class FeatureLookup(Protocol):
    """Online features of entities (a FeatureView's online store)."""

    @property
    def feature_names(self) -> list[str]: ...

    def get(self, entities: Sequence[Mapping[str, Any]]) -> list[dict[str, Any] | None]: ...


class Admission:
    """At most `limit` requests in flight and `queue` waiting; a waiter gives up after
    `timeout` seconds. Over the queue: 429; waited too long: 503. Both say Retry-After."""

    def __init__(self, limit: int, queue: int, timeout: float) -> None:
        self.limit, self.queue, self.timeout = limit, queue, timeout
        self.waiting = 0
        self._slots = asyncio.Semaphore(limit)

    @property
    def in_flight(self) -> int:
        return self.limit - self._slots._value

    async def acquire(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()
            return
        if self.waiting >= self.queue:
            raise ServiceError(429, "overloaded: the request queue is full", retry_after=1)
        self.waiting += 1
        try:
            # Not wait_for: on Python 3.11 it can time out a wait that already got its
            # slot, and that slot would never be released.
            waiter = asyncio.ensure_future(self._slots.acquire())
            done, _ = await asyncio.wait({waiter}, timeout=self.timeout)
            if not done:
                waiter.cancel()
                try:
                    await waiter
                except asyncio.CancelledError:
                    raise ServiceError(
                        503, "overloaded: no capacity within the queue timeout", 1
                    ) from None
        finally:
            self.waiting -= 1

    def release(self) -> None:
        self._slots.release()


@dataclasses.dataclass
class Window:
    """One version's outcomes since the current rollout step began."""

    requests: int = 0
    errors: int = 0
    latency: stats.LatencyWindow = dataclasses.field(default_factory=stats.LatencyWindow)
    feedback: int = 0  # rewards credited to this version in the step
    rewarded: int = 0  # of them, rewards above 0 (an A/B test's successes)

    def to_dict(self) -> dict[str, Any]:
        p50, p99 = self.latency.quantile(0.5), self.latency.quantile(0.99)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "feedback": self.feedback,
            "rewarded": self.rewarded,
            "errorRate": self.errors / self.requests if self.requests else None,
            "p50LatencyMs": None if p50 is None else p50 * 1000,
            "p99LatencyMs": None if p99 is None else p99 * 1000,
        }


@dataclasses.dataclass
class Routed:
    response: oip.InferResponse
    version: str
    request_id: str
    chosen: str  # the version the policy chose (differs from `version` after a fallback)


@dataclasses.dataclass
class _Pending:
    version: str
    time: float
    scores: np.ndarray | None


class Router:
    def __init__(
        self,
        config: RouterConfig,
        *,
        metrics: RouterMetrics | None = None,
        backend_factory: BackendFactory = default_backend,
        store: PolicyStore | None = None,
        features: FeatureLookup | None = None,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        self.metrics = metrics or RouterMetrics()
        self.backend_factory = backend_factory
        self.store = store
        self.features = features
        self.clock = clock
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.backends: dict[str, Backend] = {}
        self._backend_keys: dict[str, tuple[str, ...]] = {}
        self.windows: dict[str, Window] = {}
        # Calls under way per version: a removed version is drained when it reaches 0.
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.window_since = clock()
        self.shadow_stats = shadow.ShadowStats()
        self.pending: collections.OrderedDict[str, _Pending] = collections.OrderedDict()
        self._request_ids = RequestIds()
        self.bandit: bandit_mod.Bandit | None = None
        self.promotion: bandit_mod.Promotion | None = None
        self.promote: str | None = None
        self.draining = False
        self.generation = 0
        self.config_error: str | None = None
        self._shadow_queue: asyncio.Queue[tuple[str, oip.InferRequest, np.ndarray]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._retired: list[Backend] = []
        self.request_log: RequestLog | None = None
        # Called with (version, "ok" | "error" | "timeout", seconds) after every call.
        self.listeners: list[Callable[[str, str, float], None]] = []
        self.admission: Admission
        self.splitter: split.WeightedSplit
        self.shadow_policy: shadow.ShadowPolicy | None
        self.ejector: ejection.Ejector
        self.metrics.add_gauges(
            "flywheel_router_weight", "Traffic share per version (bandit: expected share).",
            lambda: self.current_weights(),
        )  # fmt: skip
        self.config = config
        self._install(config)

    # --- configuration -------------------------------------------------------------

    def apply(self, new: RouterConfig | Mapping[str, Any] | str | bytes) -> bool:
        """Take a new configuration; on any problem keep the old one, count and report
        the error, and return False. Never raises."""
        deployment = self.config.deployment
        try:
            parsed = new if isinstance(new, RouterConfig) else config_mod.parse(new)
            self._install(parsed)
        except Exception as exc:
            self.config_error = f"{type(exc).__name__}: {exc}"
            self.metrics.child(self.metrics.config_errors, deployment).inc()
            log.warning("router config refused, keeping the previous one: %s", exc)
            return False
        self.config_error = None
        self.metrics.child(self.metrics.config_reloads, parsed.deployment).inc()
        return True

    def _install(self, cfg: RouterConfig) -> None:
        old = self.config if self.generation else None
        # Build everything first: a failure here leaves the running router untouched.
        backends: dict[str, Backend] = {}
        keys: dict[str, tuple[str, ...]] = {}
        for v in cfg.versions:
            key = (
                cfg.backend,
                cfg.model_name,
                cfg.endpoints.get(v, ""),
                cfg.applications.get(v, ""),
            )
            if v in self.backends and self._backend_keys.get(v) == key:
                backends[v] = self.backends[v]
            else:
                backends[v] = self.backend_factory(cfg, v)
            keys[v] = key
        splitter = split.WeightedSplit(cfg.weights())
        policy = None
        if cfg.strategy == "shadow" and cfg.candidate and cfg.shadow:
            s = cfg.shadow
            policy = shadow.ShadowPolicy(
                cfg.candidate, s.percent, s.timeout_ms / 1000, s.queue_size
            )
        new_bandit = self.bandit
        promotion = self.promotion
        if cfg.strategy == "bandit" and cfg.bandit and cfg.candidate:
            b = cfg.bandit
            arms = [cfg.stable, cfg.candidate]
            same = (
                self.bandit is not None
                and list(self.bandit.arms) == arms
                and self.bandit.stable == cfg.stable
                and old is not None
                and old.bandit is not None
                and old.bandit.algorithm == b.algorithm
                and old.rewards == cfg.rewards
            )
            if not same:
                new_bandit = bandit_mod.make(
                    b.algorithm, arms, cfg.stable, b.floor, b.epsilon, cfg.rewards
                )
                self.sync_bandit()  # the old arms' last counts go to the shared totals
                if self.store is not None:
                    new_bandit.synced(self._bandit_totals(cfg.deployment))
                promotion = bandit_mod.Promotion(
                    b.promote_threshold, cfg.promote_hold_s, b.min_samples
                )
            assert new_bandit is not None and promotion is not None
            new_bandit.floor = b.floor
            if isinstance(new_bandit, bandit_mod.EpsilonGreedy):
                new_bandit.epsilon = b.epsilon
            promotion.threshold, promotion.hold = b.promote_threshold, cfg.promote_hold_s
            promotion.min_samples = b.min_samples
        else:
            new_bandit, promotion = None, None
        admission = Admission(cfg.max_concurrency, cfg.max_queue, cfg.queue_timeout_s)
        if old is not None and (old.max_concurrency, old.max_queue, old.queue_timeout_s) == (
            cfg.max_concurrency,
            cfg.max_queue,
            cfg.queue_timeout_s,
        ):
            admission = self.admission
        request_log = self.request_log
        uri = cfg.logging.uri
        if uri and cfg.logging.sample_rate > 0:
            if request_log is None or request_log.uri != uri:
                request_log = RequestLog(uri, cfg.deployment, cfg.logging.sample_rate)
            request_log.sample_rate = cfg.logging.sample_rate
        else:
            request_log = None

        # Commit: plain assignments, nothing below can fail.
        retired = [b for v, b in self.backends.items() if backends.get(v) is not b]
        step_changed = old is None or (
            old.weights() != cfg.weights()
            or old.stable != cfg.stable
            or old.candidate != cfg.candidate
            or old.strategy != cfg.strategy
        )
        self.backends, self._backend_keys = backends, keys
        self.splitter = splitter
        self.shadow_policy = policy
        self.bandit, self.promotion = new_bandit, promotion
        self.admission = admission
        if self.request_log is not None and self.request_log is not request_log:
            self.request_log.flush()
        self.request_log = request_log
        same_ejection = old is not None and (old.eject_after_errors, old.eject_seconds) == (
            cfg.eject_after_errors,
            cfg.eject_seconds,
        )
        if not same_ejection:
            self.ejector = ejection.Ejector(cfg.eject_after_errors, cfg.eject_seconds)
        self.config = cfg
        self.generation += 1
        if step_changed:
            self.windows = {}
            self.window_since = self.clock()
            self.shadow_stats = shadow.ShadowStats()
            self.promote = None
        self._retire(retired)

    def _retire(self, retired: list[Backend]) -> None:
        """Close replaced backends once calls already made with them are over."""
        if not retired:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._retired += retired
            return
        grace = self.config.total_timeout_s + 1
        for b in retired:
            loop.call_later(grace, _close_soon, loop, b)

    # --- routing -------------------------------------------------------------------

    def choose(self, key: str | None = None) -> tuple[str, str]:
        """(version, reason) for one request."""
        cfg = self.config
        now = self.clock()
        if self.bandit is not None:
            version = self.bandit.choose(self.rng)
            reason = "bandit"
        else:
            version = (
                self.splitter.choose_key(key) if key else self.splitter.choose(self.rng.random())
            )
            reason = "sticky" if key else ("split" if len(self.splitter.versions) > 1 else "stable")
        if version != cfg.stable and self.ejector.ejected(version, now):
            return cfg.stable, "ejected"
        return version, reason

    async def infer(
        self,
        request: oip.InferRequest,
        key: str | None = None,
        timeout: float | None = None,
        rows: Sequence[Mapping[str, Any]] | None = None,
    ) -> Routed:
        """Route one request. `rows`: the named features of its rows, for the log."""
        cfg = self.config
        start = self.clock()
        admission = self.admission
        try:
            await admission.acquire()
        except ServiceError as exc:
            self.metrics.child(self.metrics.rejected, cfg.deployment, str(exc.status)).inc()
            raise
        try:
            version, reason = self.choose(key)
            self.metrics.child(self.metrics.decisions, cfg.deployment, version, reason).inc()
            total = cfg.total_timeout_s if timeout is None else min(timeout, cfg.total_timeout_s)
            deadline = start + total
            try:
                response = await self._call(version, request, deadline)
                answered = version
            except BackendError as exc:
                if exc.rejected or version == cfg.stable or self.clock() >= deadline:
                    raise _service_error(exc) from None
                self.metrics.child(
                    self.metrics.decisions, cfg.deployment, cfg.stable, "fallback"
                ).inc()
                try:
                    response = await self._call(cfg.stable, request, deadline)
                except BackendError as exc2:
                    raise _service_error(exc2) from None
                answered = cfg.stable
        finally:
            admission.release()
        request_id = request.id or self._request_ids.next()
        response.id = request_id
        response.model_name = cfg.deployment
        scores = _scores(response)
        self._remember(request_id, answered, scores)
        policy = self.shadow_policy
        mirror = (
            policy is not None and answered != policy.target and policy.mirror(self.rng.random())
        )
        logged = self.request_log is not None and self.request_log.sampled(self.rng.random())
        if mirror or logged:
            # Called soon, not now: the caller writes its answer before it next yields,
            # so the shadow and the log start only after the primary's answer is sent.
            asyncio.get_running_loop().call_soon(
                self._after, policy if mirror else None, logged, request_id, answered,
                request, rows, scores,
            )  # fmt: skip
        return Routed(response, answered, request_id, version)

    def _after(
        self,
        policy: shadow.ShadowPolicy | None,
        logged: bool,
        request_id: str,
        version: str,
        request: oip.InferRequest,
        rows: Sequence[Mapping[str, Any]] | None,
        scores: np.ndarray | None,
    ) -> None:
        """A request's work that its caller does not wait for: mirror it, log it."""
        if policy is not None:
            self._mirror(policy, request, scores)
        if logged and self.request_log is not None:
            self._log(request_id, version, request, rows, scores)

    async def _call(
        self, version: str, request: oip.InferRequest, deadline: float
    ) -> oip.InferResponse:
        cfg = self.config
        backend = self.backends[version]
        window = self.windows.get(version)
        if window is None:
            window = self.windows[version] = Window()
        now = self.clock()
        timeout = min(cfg.call_timeout_s, deadline - now)
        window.requests += 1
        if timeout <= 0:
            window.errors += 1
            raise BackendError(f"{version}: no time left before the deadline", timeout=True)
        self.in_flight[version] += 1
        try:
            response = await backend.infer(request, timeout)
        except BackendError as exc:
            if exc.rejected:  # not the version's doing: out of its analysis window
                window.requests -= 1
                self.metrics.child(self.metrics.requests, cfg.deployment, version, "400").inc()
                raise
            window.errors += 1
            kind = "timeout" if exc.timeout else "error"
            self.metrics.child(self.metrics.errors, cfg.deployment, version, kind).inc()
            code = "504" if exc.timeout else "502"
            self.metrics.child(self.metrics.requests, cfg.deployment, version, code).inc()
            if self.ejector.record(version, False, self.clock()):
                self.metrics.child(self.metrics.ejections, cfg.deployment, version).inc()
            for listener in self.listeners:
                listener(version, kind, self.clock() - now)
            raise
        finally:
            self.in_flight[version] -= 1
        elapsed = self.clock() - now
        window.latency.add(elapsed)
        self.ejector.record(version, True, now)
        self.metrics.child(self.metrics.latency, cfg.deployment, version).observe(elapsed)
        self.metrics.child(self.metrics.requests, cfg.deployment, version, "200").inc()
        for listener in self.listeners:
            listener(version, "ok", elapsed)
        return response

    # --- feedback ------------------------------------------------------------------

    def _remember(self, request_id: str, version: str, scores: np.ndarray | None) -> None:
        self.pending[request_id] = _Pending(version, self.clock(), scores)
        if len(self.pending) > PENDING_LIMIT:
            self.pending.popitem(last=False)

    def feedback(
        self,
        request_id: str,
        reward: float | None = None,
        label: float | None = None,
        version: str | None = None,
    ) -> str:
        """Credit a reward (or a label, rewarded 1 when the prediction matched it) to the
        version that answered `request_id`. Returns that version.

        Feedback may come late: up to the bandit's reward window, or at any time when
        the caller names the `version` the response header gave it.
        """
        cfg = self.config
        found = self.pending.get(request_id)
        if found is not None and self.clock() - found.time > cfg.reward_window_s:
            found = None
        if found is None and version is None:
            raise ServiceError(404, f"unknown or expired request id {request_id!r}")
        answered = found.version if found is not None else version
        assert answered is not None
        if answered not in cfg.versions:
            raise ServiceError(409, f"version {answered!r} is no longer served")
        if reward is None:
            if label is None:
                raise ServiceError(400, "give a reward or a label")
            if found is None or found.scores is None:
                raise ServiceError(409, "a label needs the request's prediction; give a reward")
            reward = float(_decision(found.scores) == _decision(np.asarray(label)))
        if not math.isfinite(reward):
            raise ServiceError(400, f"reward must be a finite number, not {reward}")
        self.metrics.child(self.metrics.rewards, cfg.deployment, answered).inc()
        self.metrics.child(self.metrics.reward_sum, cfg.deployment, answered).inc(reward)
        if reward > 0:
            self.metrics.child(self.metrics.rewarded, cfg.deployment, answered).inc()
        window = self.windows.setdefault(answered, Window())
        window.feedback += 1
        window.rewarded += int(reward > 0)
        if self.bandit is not None and answered in self.bandit.arms:
            self.bandit.update(answered, reward)
        return answered

    # --- shadow --------------------------------------------------------------------

    def _mirror(self, policy: shadow.ShadowPolicy, request: oip.InferRequest, scores: Any) -> None:
        queue = self._shadow_queue
        if queue is None:
            queue = self._shadow_queue = asyncio.Queue()
            for _ in range(SHADOW_WORKERS):
                self._tasks.append(asyncio.get_running_loop().create_task(self._shadow_worker()))
        # The bound is the policy's, checked here, so a new queue size needs no new queue.
        if queue.qsize() >= policy.queue_size:
            self.shadow_stats.dropped += 1
            self.metrics.child(
                self.metrics.shadow, self.config.deployment, policy.target, "dropped"
            ).inc()
            return
        queue.put_nowait((policy.target, request, scores))
        self.shadow_stats.mirrored += 1

    async def _shadow_worker(self) -> None:
        queue = self._shadow_queue
        assert queue is not None
        while True:
            version, request, primary = await queue.get()
            try:
                await self._shadow_call(version, request, primary)
            except Exception:  # a shadow must never take its worker down
                log.exception("shadow comparison failed")

    async def _shadow_call(self, version: str, request: oip.InferRequest, primary: Any) -> None:
        cfg = self.config
        policy = self.shadow_policy
        backend = self.backends.get(version)
        if policy is None or backend is None:
            return
        m = self.metrics
        start = self.clock()
        try:
            response = await backend.infer(request, policy.timeout_s)
        except BackendError as exc:
            outcome = "timeout" if exc.timeout else "error"
            if exc.timeout:
                self.shadow_stats.timeouts += 1
            else:
                self.shadow_stats.errors += 1
            m.child(m.shadow, cfg.deployment, version, outcome).inc()
            return
        m.child(m.shadow_latency, cfg.deployment, version).observe(self.clock() - start)
        scores = _scores(response)
        if primary is None or scores is None:
            agree, delta = False, float("nan")
        else:
            agree, delta = shadow.compare(primary, scores, policy.threshold)
        self.shadow_stats.record(agree, delta)
        m.child(m.shadow, cfg.deployment, version, "agree" if agree else "disagree").inc()
        if delta == delta:
            m.child(m.shadow_delta, cfg.deployment, version).observe(delta)

    # --- request log ---------------------------------------------------------------

    def _log(
        self,
        request_id: str,
        version: str,
        request: oip.InferRequest,
        rows: Sequence[Mapping[str, Any]] | None,
        scores: np.ndarray | None,
    ) -> None:
        assert self.request_log is not None
        if scores is None:
            return
        if rows is None:
            matrix = np.asarray(request.input().data, dtype=np.float64)
            matrix = matrix.reshape(1, -1) if matrix.ndim == 1 else matrix.reshape(len(matrix), -1)
            names = list(self.config.features) or [f"x{i}" for i in range(matrix.shape[1])]
            if len(names) != matrix.shape[1]:
                names = [f"x{i}" for i in range(matrix.shape[1])]
            rows = [dict(zip(names, r, strict=True)) for r in matrix.tolist()]
        predictions = np.asarray(scores, dtype=np.float64).reshape(len(rows), -1).tolist()
        self.request_log.add(request_id, version, rows, predictions)
        self.metrics.child(self.metrics.logged, self.config.deployment).inc(len(rows))

    # --- reports -------------------------------------------------------------------

    def current_weights(self) -> dict[str, float]:
        if self.bandit is not None:
            return self.bandit.weights(self.np_rng)
        return dict(self.splitter.shares)

    def rollout_report(self) -> dict[str, Any]:
        """What the rollout policy needs, since the current step began.

        `candidate` has the fields of the operator's rollout `Metrics` (camelCase).
        """
        cfg = self.config
        report: dict[str, Any] = {
            "deployment": cfg.deployment,
            "generation": self.generation,
            "windowSeconds": self.clock() - self.window_since,
            "stable": cfg.stable,
            "candidate": None,
            "strategy": cfg.strategy,
            "weights": self.current_weights(),
            "versions": {v: w.to_dict() for v, w in self.windows.items()},
            "inFlight": {v: n for v, n in self.in_flight.items() if n},
            "configError": self.config_error,
        }
        if self.shadow_policy is not None:
            s = self.shadow_stats
            report["shadow"] = {
                **dataclasses.asdict(s),
                "agreement": s.agreement,
                "meanDelta": s.mean_delta,
            }
        share = None
        if self.bandit is not None:
            shares = self.observe_promotion()
            report["bandit"] = {
                "algorithm": self.bandit.name,
                "shares": shares,
                "arms": self.bandit.state(),
                "promote": self.promote,
            }
            if cfg.candidate:
                share = shares.get(cfg.candidate)
        if cfg.candidate:
            w = self.windows.get(cfg.candidate, Window())
            if cfg.strategy == "shadow":
                requests = self.shadow_stats.compared + self.shadow_stats.errors
                requests += self.shadow_stats.timeouts
                errors = self.shadow_stats.errors + self.shadow_stats.timeouts
            elif cfg.strategy == "bandit" and self.bandit is not None:
                requests = sum(a.n for a in self.bandit.arms.values())
                errors = w.errors
            else:
                requests, errors = w.requests, w.errors
            p99 = w.latency.quantile(0.99)
            report["candidate"] = {
                "version": cfg.candidate,
                "requests": requests,
                "errors": errors,
                "p99LatencyMs": None if p99 is None else p99 * 1000,
                "agreement": self.shadow_stats.agreement,
                "candidateShare": share,
            }
        return report

    # --- lifecycle -----------------------------------------------------------------

    def observe_promotion(self) -> dict[str, float]:
        """The bandit's shares, fed to the promotion watch; `promote` names a winner."""
        assert self.bandit is not None and self.promotion is not None
        shares = self.bandit.shares(self.np_rng)
        samples = sum(a.n for a in self.bandit.arms.values())
        winner = self.promotion.observe(shares, samples, self.clock())
        self.promote = winner or self.promote
        return shares

    def tick(self) -> None:
        """Periodic work off the request path: share bandit counts, observe promotion."""
        if self.bandit is None:
            return
        self.sync_bandit()
        self.observe_promotion()

    def sync_bandit(self) -> None:
        """Add this router's new bandit counts to the totals its replicas share, and route
        on the totals from now on."""
        if self.bandit is None or self.store is None:
            return
        self.bandit.synced(
            self.store.add_counts(self.config.deployment, "bandit", self.bandit.unsynced())
        )

    def _bandit_totals(self, deployment: str) -> dict[str, dict[str, float]]:
        assert self.store is not None
        totals = self.store.add_counts(deployment, "bandit", {})
        if not totals:  # saved whole by an earlier router: its counts become the totals
            saved = self.store.load(deployment, "bandit")
            if saved:
                totals = self.store.add_counts(deployment, "bandit", saved)
        return totals

    async def run_background(self, interval: float = 1.0) -> None:
        """Save state and flush the request log every `interval` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.tick()
                if self.request_log is not None and self.request_log.rows:
                    await asyncio.to_thread(self.request_log.flush)
            except Exception:
                log.exception("router background work failed")

    def start_background(self) -> None:
        """Start `run_background` on the running loop (where there is no lifespan)."""
        self._tasks.append(asyncio.get_running_loop().create_task(self.run_background()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.tick()
        if self.request_log is not None:
            await asyncio.to_thread(self.request_log.flush)
        for b in [*self.backends.values(), *self._retired]:
            await b.close()


class RequestIds:
    """Request ids as unguessable as uuid4's 128 random bits (feedback is keyed by them, so
    one id must not tell another), from one getrandom call per 256 ids: a call per request
    took ~6% of the router's CPU."""

    BATCH = 256

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def next(self) -> str:
        if self._at >= len(self._pool):
            self._pool, self._at = os.urandom(16 * self.BATCH), 0
        at = self._at
        self._at = at + 16
        return self._pool[at : at + 16].hex()


def _close_soon(loop: asyncio.AbstractEventLoop, backend: Backend) -> None:
    loop.create_task(backend.close())


def _service_error(exc: BackendError) -> ServiceError:
    if exc.rejected:
        return ServiceError(400, str(exc))
    if exc.timeout:
        return ServiceError(504, str(exc))
    return ServiceError(502, str(exc))


def _scores(response: oip.InferResponse) -> np.ndarray | None:
    try:
        return np.asarray(response.output().data)
    except oip.ProtocolError:
        return None


def _decision(scores: np.ndarray) -> Any:
    a = np.asarray(scores, dtype=np.float64)
    if a.ndim == 2 and a.shape[1] > 1:
        return tuple(a.argmax(axis=1).tolist())
    return tuple((a.reshape(-1) >= 0.5).tolist())
