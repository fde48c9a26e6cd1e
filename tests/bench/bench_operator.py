"""Operator capacity on the real local control plane, this checkout beside an earlier one.

    python tests/bench/bench_operator.py [--before DIR] [--after DIR]
        [--rates 5,20,50,100,150,200] [--seconds 5] [--idle-objects 1000] [--idle-seconds 120]

`--before DIR`: a checkout of an earlier commit (`git worktree add --detach DIR <commit>`);
`--after DIR`: the checkout compared with it (default: this one). Its operator runs
against the same control plane, phase by phase alternating with the other's, so both see
the same machine load. Prints, for Datasets (each reconcile applies
a Job and writes status), one column per operator:
- create -> first status write, p50/p99, with Datasets arriving at each rate for
  `--seconds`; the knee is the highest rate whose p99 stays under the 1 s mutating-call SLO
  (an operator whose p99 passed 5 s is not driven at higher rates); beside each rate, once
  the burst has settled, what one created Dataset cost: reconciles, CPU ms of every
  process (the operator, etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
  kwok, this client), the operator's API calls per reconcile and the API server's
  requests (every client's) by verb and resource;
- `--idle-objects` created at once: reconciled per second; then, once every Job finished
  (kube-controller-manager, the scheduler and kwok run them well after the first statuses:
  a restart before that has real work left, which is not a no-op's cost);
- a restart over those objects, every one of them reconciled with nothing to change: API
  calls per such reconcile (the operator's own requests, from its metrics);
- idle over them for `--idle-seconds` with a 60 s resync, from one period after the restart
  settled on (each object is due once a minute): CPU (share of one core), API calls, RSS.
The load average is printed beside each phase: the machine may be shared, so compare the
two columns of one run, and the CPU and calls per Dataset rather than the latencies.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.common import report, scaled  # noqa: E402
from tests.cluster import ControlPlane, find_tools  # noqa: E402

MUTATING_SLO_S = 1.0
GIVE_UP_P99_S = 5.0
IDLE_RESYNC_S = 60
CLK_TCK = os.sysconf("SC_CLK_TCK")


def dataset(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": name},
        "spec": {"source": {"uri": f"s3://bench/{name}.parquet", "format": "parquet"}},
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Costs:
    """CPU of every process in the loop (the operator, each control plane component, this
    client) and the API server's own request counts by verb and resource: what one
    created Dataset costs, and which process is the bottleneck."""

    def __init__(self, cp: ControlPlane, api: k8s.ApiClient) -> None:
        assert cp.state is not None
        self.pids = {name: int(p["pid"]) for name, p in cp.state.processes.items()}
        self.api = api

    def snapshot(self, op: Operator) -> dict[str, float]:
        out = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        out["operator"] = op.cpu_seconds()
        times = os.times()
        out["bench client"] = times.user + times.system
        return out

    def server_requests(self) -> dict[str, float]:
        """apiserver_request_total summed by verb and resource (every client's)."""
        response = self.api.call_api("GET", f"{self.api.configuration.host}/metrics")
        out: dict[str, float] = {}
        for line in response.read().decode().splitlines():
            if line.startswith("apiserver_request_total{"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
                sub = f"/{labels['subresource']}" if labels.get("subresource") else ""
                key = f"{labels['verb']} {labels['resource']}{sub}"
                out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
        return out


def per(after: dict[str, float], before: dict[str, float], count: float) -> dict[str, float]:
    """(after - before) / count for every key that grew."""
    return {k: (v - before.get(k, 0.0)) / max(count, 1.0) for k, v in after.items()
            if v > before.get(k, 0.0)}  # fmt: skip


def shown(values: dict[str, float], scale: float = 1.0, unit: str = "") -> str:
    top = sorted(values.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {v * scale:.3g}{unit}" for k, v in top if v * scale >= 0.005)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


class Operator:
    """`python -m flywheel_operator` of one checkout, watching one namespace."""

    def __init__(
        self,
        src: Path | None,
        kubeconfig: Path,
        namespace: str,
        resync: int,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "FLYWHEEL_RESYNC_SECONDS": str(resync),
            "FLYWHEEL_ARTIFACT_ROOT": "file:///var/lib/flywheel/",  # Pods schedule: no PVC
            **(extra_env or {}),
        }
        if src is not None:  # the earlier checkout's packages come first on the path
            env["PYTHONPATH"] = f"{src / 'operator' / 'src'}{os.pathsep}{src / 'runtime' / 'src'}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flywheel_operator", "--standalone", "-n", namespace,
             f"--metrics-port={self.port}", "--metrics-address=127.0.0.1"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def metrics(self) -> dict[str, float]:
        """Reconciles and API requests so far, from the operator's own /metrics."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        deadline = time.monotonic() + 120  # a loaded machine starts Python slowly
        while True:
            try:
                text = urllib.request.urlopen(url, timeout=5).read().decode()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        out = {"reconciles": 0.0, "api": 0.0}
        for line in text.splitlines():
            if line.startswith("flywheel_reconcile_seconds_count"):
                out["reconciles"] += float(line.rsplit(" ", 1)[1])
            elif line.startswith("flywheel_api_request_seconds_count"):
                out["api"] += float(line.rsplit(" ", 1)[1])
            elif line.startswith("flywheel_api_requests_total{"):  # an earlier one has none
                labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
                out[f"{labels['verb']} {labels['resource']}"] = float(line.rsplit(" ", 1)[1])
        return out

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


@contextlib.contextmanager
def running(
    src: Path | None,
    kubeconfig: Path,
    ns: str,
    resync: int,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Operator]:
    op = Operator(src, kubeconfig, ns, resync, extra_env)
    try:
        yield op
    finally:
        op.stop()


class StatusWatch:
    """Records when each Dataset of a namespace first shows a status the operator wrote."""

    def __init__(self, api: k8s.CustomObjectsApi, namespace: str) -> None:
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(api, namespace), daemon=True)
        self._thread.start()

    def _run(self, api: k8s.CustomObjectsApi, namespace: str) -> None:
        while not self._stop.is_set():
            w = watch.Watch()
            for event in w.stream(api.list_namespaced_custom_object, "flywheel.dev", "v1alpha1",
                                  namespace, "datasets", timeout_seconds=5):  # fmt: skip
                obj = event["object"]
                if (obj.get("status") or {}).get("observedGeneration"):
                    self.seen.setdefault(obj["metadata"]["name"], time.monotonic())
                if self._stop.is_set():
                    w.stop()

    def wait(self, names: list[str], timeout: float) -> float:
        """When the last of `names` got its status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(n in self.seen for n in names):
                return max(self.seen[n] for n in names)
            time.sleep(0.05)
        missing = [n for n in names if n not in self.seen]
        raise TimeoutError(f"{len(missing)} objects without status after {timeout}s")

    def stop(self) -> None:
        self._stop.set()


def create_at(
    api: k8s.CustomObjectsApi, ns: str, prefix: str, count: int, rate: float | None
) -> tuple[dict[str, float], float]:
    """Create `count` Datasets, `rate` per second (None: as fast as the API takes them);
    name -> when its create was sent, and the rate achieved."""
    sent: dict[str, float] = {}
    start = time.monotonic()

    def create(i: int) -> None:
        name = f"{prefix}-{i}"
        sent[name] = time.monotonic()
        api.create_namespaced_custom_object("flywheel.dev", "v1alpha1", ns, "datasets",
                                            dataset(name))  # fmt: skip

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = []
        for i in range(count):
            if rate:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            futures.append(pool.submit(create, i))
        for f in futures:
            f.result()
    span = max(sent.values()) - start
    return sent, (count - 1) / span if span > 0 else float("inf")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def wait_reconciles(op: Operator, count: float, timeout: float) -> dict[str, float]:
    """The metrics once `count` reconciles are done (the resync goes on reconciling, and
    an earlier operator makes API calls at each one: neither ever stops)."""
    deadline = time.monotonic() + timeout
    now = op.metrics()
    while time.monotonic() < deadline and now["reconciles"] < count:
        time.sleep(0.5)
        now = op.metrics()
    return now


def unfinished(api: k8s.CustomObjectsApi, ns: str, after: float = 0.0) -> int:
    """Jobs of `ns` neither Complete nor Failed, `after` seconds from now."""
    time.sleep(after)
    jobs = k8s.BatchV1Api(api.api_client).list_namespaced_job(ns).items
    finished = [any(c.type in ("Complete", "Failed") and c.status == "True"
                    for c in ((j.status and j.status.conditions) or [])) for j in jobs]  # fmt: skip
    return finished.count(False)


def wait_for_jobs(api: k8s.CustomObjectsApi, ns: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while unfinished(api, ns) and time.monotonic() < deadline:
        time.sleep(2)


def namespace(kubectl: list[str], name: str) -> str:
    subprocess.run([*kubectl, "create", "namespace", name], check=True, capture_output=True)
    return name


def settle(op: Operator, quiet: float = 3.0, timeout: float = 120) -> dict[str, float]:
    """The metrics once no reconcile has finished for `quiet` seconds: what a burst of
    creates caused, the follow-ups of its Jobs and Pods included."""
    deadline = time.monotonic() + timeout
    last = op.metrics()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = op.metrics()
        if now["reconciles"] == last["reconciles"]:
            return now
        last = now
    return last


def latency(
    api: k8s.CustomObjectsApi, kubectl: list[str], kubeconfig: Path, src: Path | None,
    label: str, rates: list[int], seconds: float, costs: Costs,
) -> dict[int, tuple[float, float, float]]:  # fmt: skip
    """rate -> (achieved rate, p50, p99) of create -> first status write. Prints what one
    created Dataset cost each process (CPU ms), the operator's API calls per reconcile
    and the API server's requests per Dataset, by verb and resource."""
    ns = namespace(kubectl, f"lat-{label}")
    out: dict[int, tuple[float, float, float]] = {}
    watcher = StatusWatch(api, ns)
    try:
        with running(src, kubeconfig, ns, 600) as op:
            watcher.wait(list(create_at(api, ns, "warmup", 1, None)[0]), 120)
            for rate in rates:
                if out and max(p99 for _, _, p99 in out.values()) > GIVE_UP_P99_S:
                    break  # far past the knee: a higher rate only queues longer
                count = max(20, int(rate * seconds))
                m0, cpu0, req0 = settle(op), costs.snapshot(op), costs.server_requests()
                sent, achieved = create_at(api, ns, f"r{rate}", count, rate)
                watcher.wait(list(sent), 600)
                lat = [watcher.seen[n] - t for n, t in sent.items()]
                out[rate] = (achieved, percentile(lat, 0.5), percentile(lat, 0.99))
                m1 = settle(op)
                cpu = per(costs.snapshot(op), cpu0, count)
                requests = per(costs.server_requests(), req0, count)
                reconciles = m1["reconciles"] - m0["reconciles"]
                calls = per({k: v for k, v in m1.items() if k != "reconciles"}, m0, reconciles)
                print(f"  {label:6s} {rate:4d}/s: p50 {out[rate][1] * 1000:7.1f} ms, "
                      f"p99 {out[rate][2] * 1000:7.1f} ms  ({load()})\n"
                      f"         per Dataset: {reconciles / count:.2f} reconciles; CPU ms: "
                      f"{shown(cpu, 1000)}\n"
                      f"         operator calls per reconcile: {shown(calls)}\n"
                      f"         API server requests per Dataset: {shown(requests)}",
                      flush=True)  # fmt: skip
    finally:
        watcher.stop()
    return out


def idle(
    api: k8s.CustomObjectsApi, kubectl: list[str], kubeconfig: Path, src: Path | None,
    label: str, objects: int, idle_seconds: float,
) -> dict[str, float]:  # fmt: skip
    """Objects created at once, reconciled; once every Job finished and the operator is
    quiet, a restart over them; then idle from one resync period after the restart on, so
    that each object is due `idle_seconds / IDLE_RESYNC_S` times in the window."""
    ns = namespace(kubectl, f"idle-{label}-{objects}")
    result: dict[str, float] = {}
    watcher = StatusWatch(api, ns)
    try:
        with running(src, kubeconfig, ns, 600) as op:
            watcher.wait(list(create_at(api, ns, "warmup", 1, None)[0]), 300)  # started
            start = time.monotonic()
            sent, _ = create_at(api, ns, "d", objects - 1, None)
            end = watcher.wait(list(sent), 1800)
            result["at_once_per_s"] = (objects - 1) / (end - start)
            # The Jobs run on (kube-controller-manager, the scheduler, kwok) well after
            # the first statuses; a restart before they finish has real work left.
            result["unfinished_after_10s"] = unfinished(api, ns, 10)
            wait_for_jobs(api, ns, 1800)
            result["jobs_done_s"] = time.monotonic() - end
            settle(op)
    finally:
        watcher.stop()
    with running(src, kubeconfig, ns, IDLE_RESYNC_S) as op:
        # The restart reconciles every object; none has anything to change.
        started = op.metrics()
        wait_reconciles(op, objects, 600)
        settled = settle(op)
        result["restart_reconciles"] = settled["reconciles"] - started["reconciles"]
        result["calls_per_noop"] = (settled["api"] - started["api"]) / max(
            1.0, result["restart_reconciles"]
        )
        restart_calls = per({k: v for k, v in settled.items() if k != "reconciles"}, started, 1)
        # The resync's period began when kopf started, before the restart's reconciles,
        # so a full period from now every object is due once a period.
        time.sleep(IDLE_RESYNC_S)
        cpu0, before = op.cpu_seconds(), op.metrics()
        time.sleep(idle_seconds)
        after = op.metrics()
        result["idle_core_share"] = (op.cpu_seconds() - cpu0) / idle_seconds
        result["idle_reconciles"] = after["reconciles"] - before["reconciles"]
        result["idle_calls"] = after["api"] - before["api"]
        result["rss_mib"] = op.rss_mib()
        calls = per({k: v for k, v in after.items() if k != "reconciles"}, before, 1)
    print(f"  {label:6s} idle over {objects}: "
          f"{ {k: round(v, 4) for k, v in result.items()} }  ({load()})\n"
          f"         calls at restart: {shown(restart_calls) or 'none'}\n"
          f"         calls in {idle_seconds:.0f} s idle: {shown(calls) or 'none'}",
          flush=True)  # fmt: skip
    return result


def main(
    before: Path | None, after: Path | None, rates: list[int], seconds: float,
    idle_objects: list[int], idle_seconds: float,
) -> None:  # fmt: skip
    tools = find_tools()
    cp = ControlPlane(ROOT / ".cluster" / "bench", tools=tools, tie_to_parent=True)
    cp.up(timeout=120)
    try:
        kubectl = [str(tools.kubectl), "--kubeconfig", str(cp.kubeconfig)]
        for args in (
            ["apply", "--server-side", "-f", str(ROOT / "crds")],
            ["wait", "--for=condition=Established", "crd", "--all"],
        ):
            subprocess.run([*kubectl, *args], check=True, capture_output=True)
        client = k8s_config.new_client_from_config(str(cp.kubeconfig))
        api, costs = k8s.CustomObjectsApi(client), Costs(cp, client)
        sides: list[tuple[str, Path | None]] = [("after", after)]
        if before is not None:
            sides.insert(0, ("before", before))
        print(f"\nlatency phases ({load()}):", flush=True)
        lat = {label: latency(api, kubectl, cp.kubeconfig, src, label, rates, seconds, costs)
               for label, src in sides}  # fmt: skip
        idles: dict[int, dict[str, dict[str, float]]] = {}
        for n in idle_objects:
            print(f"\nidle phases, {n} objects ({load()}):", flush=True)
            idles[n] = {label: idle(api, kubectl, cp.kubeconfig, src, label, n, idle_seconds)
                        for label, src in sides}  # fmt: skip
        print_tables(sides, lat, idles, idle_seconds)
    finally:
        cp.down(keep_logs=True)


def print_tables(
    sides: list[tuple[str, Path | None]],
    lat: dict[str, dict[int, tuple[float, float, float]]],
    idles: dict[int, dict[str, dict[str, float]]],
    idle_seconds: float,
) -> None:
    labels = [label for label, _ in sides]
    rows = []
    for rate in sorted({r for by_rate in lat.values() for r in by_rate}):
        row = [f"{rate}/s"]
        for label in labels:
            if rate not in lat[label]:
                row.append(f"not run (p99 past {GIVE_UP_P99_S:.0f} s at a lower rate)")
                continue
            achieved, p50, p99 = lat[label][rate]
            row.append(f"{p50 * 1000:.0f} / {p99 * 1000:.0f} ms (sent {achieved:.0f}/s)")
        both = len(labels) == 2 and all(rate in lat[label] for label in labels)
        if len(labels) == 2:
            row.append(f"{lat['before'][rate][2] / lat['after'][rate][2]:.1f}x" if both else "")
        rows.append(row)
    knees = ["knee (highest rate, p99 < 1 s)"]
    for label in labels:
        ok = [r for r, (_, _, p99) in lat[label].items() if p99 < MUTATING_SLO_S]
        knees.append(f">= {max(ok)}/s" if ok else "below the lowest rate")
    rows.append(knees + ([""] if len(labels) == 2 else []))
    ratio = ["p99 before/after"] if len(labels) == 2 else []
    report("create -> first status write, p50 / p99", ["rate", *labels, *ratio], rows)
    for n, by_label in idles.items():
        rows = []
        for key, what in (
            ("at_once_per_s", f"{n} created at once: reconciled per second"),
            ("unfinished_after_10s", "Jobs unfinished 10 s after the last status"),
            ("jobs_done_s", "seconds until every Job finished"),
            ("restart_reconciles", "reconciles at the restart"),
            ("calls_per_noop", "API calls per no-op reconcile (restart)"),
            ("idle_core_share", f"idle CPU, share of one core ({IDLE_RESYNC_S} s resync)"),
            ("idle_reconciles", f"reconciles in {idle_seconds:.0f} s idle"),
            ("idle_calls", f"API calls in {idle_seconds:.0f} s idle"),
            ("rss_mib", "RSS, MiB"),
        ):
            rows.append([what, *(f"{by_label[label][key]:.3g}" for label in labels)])
        report(f"{n} Datasets", ["", *labels], rows)
    print(f"\n{load()}")


@pytest.mark.bench
def test_operator_bench() -> None:
    """Sizes scale with FLYWHEEL_BENCH_SCALE; the earlier checkout only when named."""
    before = os.environ.get("FLYWHEEL_BENCH_BEFORE")
    main(Path(before) if before else None, None, [5, 20], 1.0, [scaled(1000)], scaled(120))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=None)
    parser.add_argument("--after", type=Path, default=None)
    parser.add_argument("--rates", default="5,20,50,100,150,200")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--idle-objects", default="1000")
    parser.add_argument("--idle-seconds", type=float, default=120.0)
    args = parser.parse_args()
    main(
        args.before,
        args.after,
        [int(s) for s in args.rates.split(",")],
        args.seconds,
        [int(s) for s in args.idle_objects.split(",")],
        args.idle_seconds,
    )
