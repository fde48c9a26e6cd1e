"""Canary analysis through a real Prometheus: it scrapes the router, and the operator's
Prometheus reader (`PrometheusQueries`) turns its counters into the rollout's metrics."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from flywheel.api.modeldeployment import Analysis, AnalysisDecision
from flywheel.serving import config, modelserver, predictor, rollout, routerapp, state
from flywheel.serving.router import Router
from flywheel_operator.kube.router_metrics import PrometheusQueries, Step
from tests.components.conftest import free_port
from tests.components.serving import faults, support
from tests.components.serving.conftest import Served

pytestmark = pytest.mark.runtime

BODY = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed; apt-get install prometheus (make test does)")
    procs: list[subprocess.Popen[bytes]] = []
    log = (tmp_path / "prometheus.log").open("wb")

    def start(target: str) -> str:
        port = free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: router\n    static_configs: [{{targets: ['{target}']}}]\n"
        )
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError((tmp_path / "prometheus.log").read_text()[-2000:])
            try:
                return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        support.wait_for(ready, 60, "Prometheus")
        return url

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(30)
    log.close()


def test_a_failing_canary_is_rolled_back_on_what_prometheus_scraped(
    loop: support.Loop,
    model_v1: Served,
    artifacts: dict[str, Path],
    prometheus_for: Callable[[str], str],
    tmp_path: Path,
) -> None:
    server = modelserver.ModelServer("churn", "v2", predictor.load_predictor(str(artifacts["v2"])))
    candidate = support.Server(loop, faults.faulty_app(server, faults.Mode("error", error_every=3)))
    doc = {
        "deployment": "churn",
        "stable": "v1",
        "candidate": "v2",
        "strategy": "canary",
        "traffic": {"v1": 50, "v2": 50},
        "endpoints": {"v1": model_v1.url, "v2": candidate.url},
        "ejectAfterErrors": 1000,
    }
    router = Router(config.parse(doc), store=state.StateStore(tmp_path / "state.db"))
    front = support.Server(loop, routerapp.app(router))
    try:
        url = prometheus_for(front.url.removeprefix("http://"))
        reader = PrometheusQueries(url)
        client = httpx.Client(base_url=front.url, timeout=20)

        def step(since: datetime) -> Step:
            return Step("ns", "churn", front.url, "v2", since, {"v1": 50, "v2": 50}, now())

        # The candidate's series exists before the step begins: increase() counts from a
        # series' first sample, so requests before it would be missed.
        for _ in range(10):
            client.post("/v2/models/churn/infer", json=BODY)
        series = 'flywheel_router_requests_total{deployment="churn",version="v2"}'
        seen = f"sum({series})"
        support.wait_for(lambda: reader.scalar(seen), 60, "Prometheus to scrape the router")
        # increase() reads the samples inside the step's window: one scrape must fall
        # after the step began and before its traffic (in a real step, minutes long, the
        # first of many).
        since = now()
        last_scrape = f"max(timestamp({series}))"
        support.wait_for(
            lambda: (reader.scalar(last_scrape) or 0) > since.timestamp(), 30, "a scrape"
        )
        before = router.rollout_report()["candidate"]["requests"]
        codes = [client.post("/v2/models/churn/infer", json=BODY).status_code for _ in range(120)]
        assert set(codes) == {200}  # candidate failures are answered by stable
        sent = router.rollout_report()["candidate"]["requests"] - before

        def scraped() -> rollout.Metrics | None:
            m = reader(step(since))
            m = reader(step(since))
            return m if m is not None and m.requests >= 0.8 * sent else None

        metrics = support.wait_for(scraped, 60, "Prometheus to see the step's requests")
        assert isinstance(metrics, rollout.Metrics)
        # increase() extrapolates to the window's edges: close to, not exactly, the count.
        assert 0.8 * sent <= metrics.requests <= 1.5 * sent, (metrics, sent)
        assert metrics.errors > 0 and metrics.p99_latency_ms is not None
        analysis = Analysis(min_requests=20, max_error_rate=0.05)
        decision, message = rollout.analyse(analysis, metrics)
        assert decision == AnalysisDecision.ROLLBACK, message
        client.close()
    finally:
        front.stop()
        candidate.stop()


def now() -> datetime:
    return datetime.now(UTC)
