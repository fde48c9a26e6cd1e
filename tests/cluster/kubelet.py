"""Plays the kubelet for one Pod: runs its container's command on this machine and writes
the end state a kubelet would write into the Pod's status.

kwok runs every other Pod to completion with exit code 0; Pods of `PLAYED_IMAGE` it only
starts, and leaves them to this module (the kwok stage in controlplane.py).

What the command gets, as in a container with a read-only root filesystem:
- enforced: the Pod's env and nothing else (plus the image's PATH; no HOME); a new mount
  namespace where every mount of this machine is read-only, so only the Pod's volumes
  (emptyDir, PersistentVolumeClaim, Secret, each a fresh local directory) and its
  termination-message file can be written; the working directory is `workingDir` or
  `/`, read-only like the rest;
- mapped: a volume's mountPath that exists here (such as /tmp) is bind-mounted over it;
  one that does not (/mnt/pvc/<claim>, /dev/termination-log) is reached through a view
  directory, and every argument or env value naming a path under (or above) a mountPath
  is rewritten to it;
- not enforced: the rest of the machine stays readable, the process runs as this user
  (not `runAsUser`), and with this machine's network, CPU and memory.

The result is what the kubelet keeps: the first 4096 bytes of the termination-message
file; if that is empty, the run failed and the policy is `FallbackToLogsOnError`, the
last 80 lines (at most 2048 bytes) of the log.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .kubectl import Kubectl, wait_for

MAX_MESSAGE_BYTES = 4096  # the kubelet's limit for one container's termination message
FALLBACK_LOG_LINES, FALLBACK_LOG_BYTES = 80, 2048  # FallbackToLogsOnError takes this tail
IMAGE_PATH = "/usr/local/bin:/usr/bin:/bin"
# The PersistentVolumeClaim the integration tests' operators use as their artifact root.
ARTIFACT_CLAIM = "flywheel-artifacts"


@dataclass(frozen=True)
class Run:
    exit_code: int
    message: str  # what the Pod's status carries
    log: str  # stdout and stderr


class Node:
    """The local directories standing in for a node's volumes; PVC data under claims/."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def create(cls) -> Node:
        # Not under /tmp: a Pod's emptyDir is mounted over /tmp, which would hide it.
        return cls(Path(tempfile.mkdtemp(prefix="flywheel-node-", dir="/var/tmp")))

    def claim(self, name: str) -> Path:
        path = self.root / "claims" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def flywheel_command() -> list[str]:
    """The image's entrypoint: this environment's `flywheel`."""
    return [str(Path(sys.executable).with_name("flywheel"))]


def run_pod(kubectl: Kubectl, pod: dict[str, Any], node: Node) -> Run:
    """Run the Pod's only container as its kubelet would, and report its end in the Pod's
    status (phase, the container's terminated state, the message)."""
    [container] = pod["spec"]["containers"]
    scratch = Path(tempfile.mkdtemp(prefix=f"{pod['metadata']['name']}-", dir=node.root))
    view = scratch / "view"  # mountPaths that do not exist here, reached by a rewrite
    view.mkdir()
    in_place: dict[Path, Path] = {}  # mountPath -> local directory, bind-mounted over it
    rewritten: dict[str, Path] = {}  # mountPath -> its stand-in under view/
    writable: list[Path] = []
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        local = _volume(kubectl, volumes[mount["name"]], scratch, node)
        writable.append(local)
        place(Path(mount["mountPath"]), local, in_place, rewritten, view)
    message_file = scratch / "termination-log"
    message_file.touch()
    writable.append(message_file)
    place(Path(container["terminationMessagePath"]), message_file, in_place, rewritten, view)

    def pod_path(value: str) -> str:
        for target in sorted(rewritten, key=len, reverse=True):
            if value == target or value.startswith(target + "/"):
                return str(view) + value
            if target.startswith(value.rstrip("/") + "/") and value.startswith("/"):
                return str(view) + value  # a parent of a mountPath, like FLYWHEEL_PVC_ROOT
        return value

    env = {"PATH": IMAGE_PATH}
    for var in container.get("env", []):
        if "value" not in var:
            raise AssertionError(f"env from {var.get('valueFrom')} is not played here")
        env[var["name"]] = pod_path(var["value"])
    if Path("/tmp") in in_place:
        env["TMPDIR"] = "/tmp"
    command = container.get("command") or flywheel_command()
    if command[0] == "flywheel":
        command = [*flywheel_command(), *command[1:]]
    argv = [*command, *(pod_path(a) for a in container.get("args", []))]
    started = _now()
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", _READ_ONLY_ROOT,
         json.dumps([str(p) for p in writable]),
         json.dumps({str(k): str(v) for k, v in in_place.items()}),
         container.get("workingDir", "/"), *argv],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
    )  # fmt: skip
    log = done.stdout
    message = message_file.read_bytes()[:MAX_MESSAGE_BYTES].decode(errors="replace")
    if (
        not message
        and done.returncode != 0
        and (container.get("terminationMessagePolicy") == "FallbackToLogsOnError")
    ):
        tail = "\n".join(log.splitlines()[-FALLBACK_LOG_LINES:])
        message = tail.encode()[-FALLBACK_LOG_BYTES:].decode(errors="replace")
    run = Run(done.returncode, message, log)
    _report(kubectl, pod, container, run, started)
    shutil.rmtree(scratch, ignore_errors=True)
    return run


def place(
    target: Path, local: Path, in_place: dict[Path, Path], rewritten: dict[str, Path], view: Path
) -> None:
    if local.is_dir() and target.is_dir():
        in_place[target] = local
        return
    rewritten[str(target)] = local
    stand_in = view / str(target).lstrip("/")
    stand_in.parent.mkdir(parents=True, exist_ok=True)
    stand_in.symlink_to(local)


def _volume(kubectl: Kubectl, volume: dict[str, Any], scratch: Path, node: Node) -> Path:
    if "persistentVolumeClaim" in volume:
        claim: str = volume["persistentVolumeClaim"]["claimName"]
        return node.claim(claim)
    local: Path = scratch / "volumes" / str(volume["name"])
    local.mkdir(parents=True)
    if "secret" in volume:
        secret = kubectl.get("secret", volume["secret"]["secretName"])
        data = secret.get("data") or {}
        # As the kubelet: `items` projects only the keys named, each at its path.
        items = volume["secret"].get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            (local / item["path"]).write_bytes(base64.b64decode(data[item["key"]]))
    elif "emptyDir" not in volume:
        raise AssertionError(f"volume {volume} is not played here")
    return local


# Runs in the new mount namespace: the writable paths become mounts of their own, the
# volumes that exist here are bind-mounted over their mountPaths, every other mount is
# made read-only; then the command replaces it in the working directory.
_READ_ONLY_ROOT = """
import json, os, subprocess, sys
writable, in_place = json.loads(sys.argv[1]), json.loads(sys.argv[2])
workdir, argv = sys.argv[3], sys.argv[4:]
for path in writable:
    subprocess.run(["mount", "--bind", path, path], check=True)
for target, local in in_place.items():
    subprocess.run(["mount", "--bind", local, target], check=True)
with open("/proc/self/mountinfo") as f:
    points = {line.split()[4] for line in f}
for point in sorted(points - set(writable) - set(in_place)):
    subprocess.run(["mount", "-o", "remount,bind,ro", point], stderr=subprocess.DEVNULL)
os.chdir(workdir)
os.execv(argv[0], argv)
"""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _report(
    kubectl: Kubectl, pod: dict[str, Any], container: dict[str, Any], run: Run, started: str
) -> None:
    terminated: dict[str, Any] = {
        "exitCode": run.exit_code,
        "reason": "Completed" if run.exit_code == 0 else "Error",
        "startedAt": started,
        "finishedAt": _now(),
    }
    if run.message:
        terminated["message"] = run.message
    status = {
        "phase": "Succeeded" if run.exit_code == 0 else "Failed",
        "containerStatuses": [
            {
                "name": container["name"],
                "image": container["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {"terminated": terminated},
            }
        ],
    }
    kubectl.run(
        "patch", "pod", pod["metadata"]["name"], "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def end_pod(kubectl: Kubectl, pod: dict[str, Any], result: dict[str, Any]) -> Run:
    """End a Pod as if its command had written `result` and exited 0, without running it:
    for the inputs of a test whose own work is elsewhere."""
    [container] = pod["spec"]["containers"]
    run = Run(0, json.dumps(result), "")
    _report(kubectl, pod, container, run, _now())
    return run


def running_pod(kubectl: Kubectl, job_name: str, timeout: float = 60) -> dict[str, Any]:
    """The Job's Pod once kwok has started it (Running, not yet run)."""

    def started(pod: dict[str, Any]) -> bool:
        status = pod.get("status", {})
        return status.get("phase") == "Running" and not any(
            (cs.get("state") or {}).get("terminated") for cs in status.get("containerStatuses", [])
        )

    pods = wait_for(
        lambda: kubectl.items("pod", "-l", f"batch.kubernetes.io/job-name={job_name}"),
        lambda items: any(started(p) for p in items),
        what=f"a started, unfinished pod of job {job_name}",
        timeout=timeout,
        summary=lambda items: [
            (p["metadata"]["name"], p.get("status", {}).get("phase"),
             p.get("status", {}).get("conditions"))
            for p in items
        ],
    )  # fmt: skip
    pod: dict[str, Any] = next(p for p in pods if started(p))
    return pod
