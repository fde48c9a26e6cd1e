"""Plays the kubelet (and the cluster's network) for the Triton path's router Pod: runs the
Pod's own command as a local process with what a kubelet gives it.

- Its ServiceAccount: a token from a TokenRequest for the Pod's `serviceAccountName`
  (what a projected token volume holds), the cluster's CA and the namespace, in a
  directory passed as `--service-account-dir`; the API server (on 127.0.0.1) in
  KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT.
- Its ConfigMap volume: the file is written once, when the Pod starts. A kubelet
  refreshes it a minute or more after a change; here never, so a new config reaches the
  router only through its watch of the API server.
- Cluster DNS: each Service name the router calls resolves to a loopback address of its
  own (an /etc/hosts bind-mounted in a mount namespace of the router's), where the test
  serves that Service's port.
- Every server listens on loopback: `--host 127.0.0.1`, the port the test picks.
"""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .controlplane import ControlPlane
from .kubectl import Kubectl

MOUNT_PATH = "/etc/flywheel"  # the router-config volume's mountPath in the builders


def loopback_address() -> str:
    """A loopback address of its own (127.0.0.0/8 is all local) for one Service."""
    return f"127.{random.randint(1, 254)}.{random.randint(0, 254)}.{random.randint(1, 254)}"


def service_account(
    kubectl: Kubectl, control_plane: ControlPlane, account: str, where: Path
) -> Path:
    """What the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount."""
    where.mkdir(parents=True, exist_ok=True)
    token = kubectl.run("create", "token", account, "--duration=1h").stdout.strip()
    (where / "token").write_text(token)
    (where / "ca.crt").write_bytes(control_plane.pki.path("ca.crt").read_bytes())
    (where / "namespace").write_text(kubectl.namespace or "default")
    return where


def router_argv(
    container: dict[str, Any], config_file: Path, credentials: Path, port: int, state: Path
) -> list[str]:
    """The container's args with the Pod's paths and port mapped to this machine's."""
    args = list(container["args"])

    def put(flag: str, value: str) -> None:
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args.extend([flag, value])

    put("--config", str(config_file))
    put("--port", str(port))
    put("--host", "127.0.0.1")
    put("--state-file", str(state))
    put("--service-account-dir", str(credentials))
    return [str(Path(sys.executable).with_name("flywheel")), *args]


@contextlib.contextmanager
def router_pod(
    kubectl: Kubectl,
    control_plane: ControlPlane,
    deployment: str,
    workdir: Path,
    hosts: dict[str, str],
    port: int,
) -> Iterator[subprocess.Popen[bytes]]:
    """Runs one Pod of the router Deployment `deployment`. `hosts`: Service name ->
    the loopback address it resolves to."""
    template = kubectl.get("deployment", deployment)["spec"]["template"]["spec"]
    [container] = template["containers"]
    volume = next(v for v in template["volumes"] if v["name"] == "router-config")
    configmap = kubectl.get("configmap", volume["configMap"]["name"])
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "router.json"
    for key, text in configmap["data"].items():  # the volume, as at the Pod's start
        (workdir / key).write_text(text)
    credentials = service_account(
        kubectl, control_plane, template["serviceAccountName"], workdir / "serviceaccount"
    )
    etc_hosts = workdir / "hosts"
    lines = ["127.0.0.1 localhost", *(f"{ip} {name}" for name, ip in hosts.items())]
    etc_hosts.write_text("\n".join(lines) + "\n")
    api = urlparse(control_plane.server)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "KUBERNETES_SERVICE_HOST": str(api.hostname),
        "KUBERNETES_SERVICE_PORT": str(api.port),
        **{e["name"]: e["value"] for e in container.get("env", []) if "value" in e},
    }
    argv = router_argv(container, config_file, credentials, port, workdir / "router.db")
    mount = f'mount --bind {etc_hosts} /etc/hosts && exec "$@"'
    with (workdir / "router.log").open("w") as log:
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh", *argv],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def file_config(workdir: Path) -> dict[str, Any]:
    """The router's config file as the Pod started with it."""
    config: dict[str, Any] = json.loads((workdir / "router.json").read_text())
    return config
