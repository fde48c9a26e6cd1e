"""Ray Serve's cluster-wide ingress settings, each on a Ray of its own: does any of them
bring the router application nearer the bare model application?

    .venv/bin/python -m tests.bench.bench_ray_ingress [--requests 500]

Modes (set before Ray starts: the proxy, the controller and every replica read them once):

    proxy          Serve's default: HTTP to the proxy actor, which calls the replica
    proxy-grpc     RAY_SERVE_PROXY_USE_GRPC=1: the proxy sends the request by value
    direct         RAY_SERVE_ENABLE_DIRECT_INGRESS=1: each ingress replica serves HTTP on a
                   port of its own (KubeRay puts HAProxy in front of those ports)

In each mode the three paths of test_bench_rayserve.py (bare model app, one Serve hop,
router app) take turns request by request, through that mode's ingress. The ratio that
matters is the router's against the bare app in the same mode: a user who turns a setting
on turns it on for both.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = {
    "proxy": {},
    "proxy-grpc": {"RAY_SERVE_PROXY_USE_GRPC": "1"},
    "direct": {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"},
}
PATHS = ("bare", "hop", "router")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def measure(mode: str, requests: int) -> dict[str, list[float]]:
    """Latencies (ms) of each path in one mode; runs in a process of its own."""
    import httpx
    import ray

    from flywheel.serving import rayserve
    from tests.bench.test_bench_rayserve import BODY, HOP, HOP_APP
    from tests.components.serving import support

    work = Path(tempfile.mkdtemp(prefix="ray-ingress-"))
    os.environ[rayserve.STATE_DIR_ENV] = str(work / "state")
    dashboard_port, http_port = _free_port(), _free_port()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=dashboard_port,
        configure_logging=False,
        log_to_driver=False,
    )
    try:
        dashboard = f"http://127.0.0.1:{dashboard_port}"
        model = support.write_model(work / "v1", [0.5, -0.25, 1.0], 0.1)
        versions = [{"model": "churn", "version": "v1", "uri": str(model)}]
        router = {"stable": "v1", "traffic": {"v1": 100}}
        http = {"host": "127.0.0.1", "port": http_port}
        config = rayserve.serve_config("churn", versions, router, num_cpus=0.25, http_options=http)
        config["applications"].append(HOP_APP)
        bare_app = rayserve.app_name("churn", "v1")
        rayserve.deploy(dashboard, config)
        rayserve.wait_running(dashboard, [bare_app, "churn", HOP])
        ports = dict.fromkeys((bare_app, HOP, "churn"), http_port)
        if mode == "direct":
            ports = _replica_ports(ray, [bare_app, HOP, "churn"])
        urls = {
            "bare": f"http://127.0.0.1:{ports[bare_app]}/{bare_app}",
            "hop": f"http://127.0.0.1:{ports[HOP]}/{HOP}/v2/models/churn/infer",
            "router": f"http://127.0.0.1:{ports['churn']}/v2/models/churn/infer",
        }
        out: dict[str, list[float]] = {p: [] for p in PATHS}
        with httpx.Client(timeout=30) as client:
            support.wait_for(
                lambda: all(client.post(u, json=BODY).status_code == 200 for u in urls.values()),
                120,
                "every path",
            )
            for _ in range(20):
                for u in urls.values():
                    client.post(u, json=BODY)
            for i in range(requests):
                turn = PATHS[i % 3 :] + PATHS[: i % 3]
                for path in turn:
                    start = time.perf_counter()
                    reply = client.post(urls[path], json=BODY)
                    out[path].append((time.perf_counter() - start) * 1000)
                    assert reply.status_code == 200, reply.text
        return out
    finally:
        ray.shutdown()


def _replica_ports(ray: object, apps: list[str]) -> dict[str, int]:
    """Each application's ingress replica port (direct ingress), from the controller."""
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    assert client is not None, "Serve is not running"
    controller = client._controller
    deadline = time.monotonic() + 60
    while True:
        groups = ray.get(controller.get_target_groups.remote())  # type: ignore[attr-defined]
        ports = {g.app_name: g.targets[0].port for g in groups if g.targets}
        if all(a in ports for a in apps) or time.monotonic() > deadline:
            return ports
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:  # one mode, in the process its settings were given to
        print(json.dumps(measure(args.mode, args.requests)))
        return
    import numpy as np

    rows = []
    for mode, env in MODES.items():
        done = subprocess.run(
            [sys.executable, "-m", "tests.bench.bench_ray_ingress", "--mode", mode,
             "--requests", str(args.requests)],
            env={**os.environ, **env}, capture_output=True, text=True, check=True,
        )  # fmt: skip
        times = {k: np.array(v) for k, v in json.loads(done.stdout.splitlines()[-1]).items()}
        p50 = {k: float(np.percentile(v, 50)) for k, v in times.items()}
        p99 = {k: float(np.percentile(v, 99)) for k, v in times.items()}
        rows.append((mode, p50, p99, os.getloadavg()[0]))
    base = rows[0][1]["bare"]
    print(f"Ray Serve ingress modes, serial HTTP, {args.requests} requests per path (ms)")
    print("  mode         bare p50/p99    hop p50 (x bare)   router p50 (x bare)   "
          "router / default bare   load")  # fmt: skip
    for mode, p50, p99, load in rows:
        print(
            f"  {mode:11s}  {p50['bare']:5.2f} / {p99['bare']:5.2f}   "
            f"{p50['hop']:5.2f} ({p50['hop'] / p50['bare']:.2f}x)      "
            f"{p50['router']:5.2f} ({p50['router'] / p50['bare']:.2f}x)         "
            f"{p50['router'] / base:.2f}x                  {load:.1f}"
        )


if __name__ == "__main__":
    main()
