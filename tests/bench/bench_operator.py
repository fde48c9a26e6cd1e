"""Operator speed on the real local control plane.

    python tests/bench/bench_operator.py [--latency-objects 200] [--throughput 100,1000]

Prints, for Datasets (each reconcile applies a Job and writes status):
- create -> first status write latency, p50/p99, against kopf's 0.1 s batching floor and
  the Kubernetes 1 s mutating-call SLO (ratios: below 1.0 beats the anchor);
- objects reconciled per minute with N objects created at once;
- operator memory (RSS) against the number of objects it watches.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.common import scaled  # noqa: E402
from tests.cluster import ControlPlane, find_tools  # noqa: E402

KOPF_BATCH_FLOOR_S = 0.1
MUTATING_SLO_S = 1.0


def dataset(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": name},
        "spec": {"source": {"uri": f"s3://bench/{name}.parquet", "format": "parquet"}},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def operator_means(metrics_port: int) -> list[str]:
    """Mean reconcile and API request time, from the operator's own /metrics."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read()
    sums: dict[str, float] = {}
    for line in text.decode().splitlines():
        if line.startswith("flywheel_") and ("_sum{" in line or "_count{" in line):
            key, value = line.rsplit(" ", 1)
            sums[key] = float(value)
    out = []
    for key, total in sums.items():
        if "_sum{" in key:
            count = sums.get(key.replace("_sum{", "_count{"), 0)
            if count:
                out.append(
                    f"{key.replace('_sum', '')}: {total / count * 1000:.1f} ms x {count:.0f}"
                )
    return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class StatusWatch:
    """Records when each Dataset first shows a status written by the operator."""

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

    def stop(self) -> None:
        self._stop.set()


def run_batch(
    api: k8s.CustomObjectsApi, ns: str, prefix: str, count: int, spaced: float
) -> dict[str, float]:
    """Create `count` Datasets; return name -> create time (monotonic)."""
    created: dict[str, float] = {}
    for i in range(count):
        name = f"{prefix}-{i}"
        created[name] = time.monotonic()
        api.create_namespaced_custom_object(
            "flywheel.dev", "v1alpha1", ns, "datasets", dataset(name)
        )
        if spaced:
            time.sleep(spaced)
    return created


def wait_all(seen: dict[str, float], names: list[str], timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(n in seen for n in names):
            return max(seen[n] for n in names)
        time.sleep(0.05)
    missing = [n for n in names if n not in seen]
    raise TimeoutError(f"{len(missing)} objects without status after {timeout}s")


def main(latency_objects: int, throughput: list[int]) -> None:
    tools = find_tools()
    cp = ControlPlane(ROOT / ".cluster" / "bench", tools=tools, tie_to_parent=True)
    cp.up(timeout=120)
    try:
        kubectl = [str(tools.kubectl), "--kubeconfig", str(cp.kubeconfig)]
        for args in (
            ["apply", "--server-side", "-f", str(ROOT / "crds")],
            ["wait", "--for=condition=Established", "crd", "--all"],
            ["create", "namespace", "bench"],
        ):
            subprocess.run([*kubectl, *args], check=True, capture_output=True)
        kubeconfig = str(cp.kubeconfig)
        api_client = k8s_config.new_client_from_config(config_file=kubeconfig)
        api = k8s.CustomObjectsApi(api_client)
        ns = "bench"
        env = {
            **os.environ,
            "KUBECONFIG": str(cp.kubeconfig),
            "FLYWHEEL_RESYNC_SECONDS": "600",
            "FLYWHEEL_ARTIFACT_ROOT": "file:///var/lib/flywheel/",  # Pods schedule: no PVC
        }
        metrics_port = free_port()
        op = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flywheel_operator",
                "--standalone",
                "-n",
                ns,
                f"--metrics-port={metrics_port}",
                "--metrics-address=127.0.0.1",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        watcher = StatusWatch(api, ns)
        try:
            # Measure from the moment the operator answers: one object through first.
            wait_all(watcher.seen, list(run_batch(api, ns, "warmup", 1, 0)), 120)
            memory = [(1, rss_mib(op.pid))]
            # Latency: objects arrive one at a time, 50 ms apart.
            created = run_batch(api, ns, "lat", latency_objects, 0.05)
            wait_all(watcher.seen, list(created), 120)
            lat = sorted(watcher.seen[n] - t for n, t in created.items())
            p50 = statistics.median(lat)
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            print(f"\ncreate -> first status write over {len(lat)} Datasets:")
            floor, slo = p50 / KOPF_BATCH_FLOOR_S, p99 / MUTATING_SLO_S
            print(f"  p50 {p50 * 1000:7.1f} ms = {floor:5.2f}x kopf's 0.1 s batching floor")
            print(f"  p99 {p99 * 1000:7.1f} ms = {slo:5.2f}x the 1 s mutating-call SLO")
            total = 1 + latency_objects
            for n in throughput:
                start = time.monotonic()
                created = run_batch(api, ns, f"tp{n}", n, 0)
                end = wait_all(watcher.seen, list(created), 600)
                per_min = n / (end - start) * 60
                total += n
                memory.append((total, rss_mib(op.pid)))
                print(
                    f"  {n:5d} objects at once: {per_min:8.0f} reconciled/min ({end - start:.1f} s)"
                )
            print("inside the operator (means):")
            for line in operator_means(metrics_port):
                print(f"  {line}")
            print("operator RSS vs objects watched:")
            for count, mib in memory:
                print(f"  {count:5d} objects: {mib:6.1f} MiB")
        finally:
            watcher.stop()
            op.terminate()
            op.wait(timeout=30)
    finally:
        cp.down(keep_logs=True)


@pytest.mark.bench
def test_operator_bench() -> None:
    """Sizes scale with FLYWHEEL_BENCH_SCALE unless given."""
    default = str(scaled(100))
    sizes = [int(s) for s in os.environ.get("FLYWHEEL_BENCH_THROUGHPUT", default).split(",")]
    main(int(os.environ.get("FLYWHEEL_BENCH_LATENCY_OBJECTS", str(scaled(200)))), sizes)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-objects", type=int, default=200)
    parser.add_argument("--throughput", default="100,1000")
    args = parser.parse_args()
    main(args.latency_objects, [int(s) for s in args.throughput.split(",")])
