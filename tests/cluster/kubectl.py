"""Drive a cluster the way users do: the real ``kubectl`` and ``helm`` binaries."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class CommandError(AssertionError):
    """A kubectl/helm call failed; the message has the command, exit code and stderr."""

    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        cmd = " ".join(str(a) for a in result.args)
        super().__init__(
            f"`{cmd}` exited {result.returncode}\n"
            f"stderr: {result.stderr.strip()}\nstdout: {result.stdout.strip()[:2000]}"
        )


class WaitTimeout(AssertionError):
    """wait_for gave up; the message says what was awaited and what was last seen."""


def _short(value: Any, limit: int = 1500) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def wait_for(
    probe: Callable[[], T],
    until: Callable[[T], bool] = bool,
    *,
    what: str,
    timeout: float = 30.0,
    interval: float = 0.25,
    summary: Callable[[T], Any] | None = None,
) -> T:
    """Call probe() until until(value) holds; return that value.

    On timeout the error names `what` and shows the last value seen (or its `summary`,
    or the last exception probe raised), which is usually the whole diagnosis.
    """
    deadline = time.monotonic() + timeout
    last: str = "nothing observed"
    while True:
        try:
            value = probe()
        except Exception as e:  # a probe may race with creation; keep the last error
            last = f"error: {e}"
        else:
            if until(value):
                return value
            last = _short(summary(value) if summary else value)
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last}"
            )
        time.sleep(interval)


@dataclass(frozen=True)
class Kubectl:
    binary: Path
    kubeconfig: Path
    namespace: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    def in_namespace(self, namespace: str) -> Kubectl:
        return Kubectl(self.binary, self.kubeconfig, namespace, self.env)

    def run(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
        namespaced: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.binary), "--kubeconfig", str(self.kubeconfig)]
        if namespaced and self.namespace and not _has_namespace_flag(args):
            cmd += ["--namespace", self.namespace]
        result = subprocess.run(
            [*cmd, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.env},
        )
        if check and result.returncode != 0:
            raise CommandError(result)
        return result

    def json(self, *args: str, timeout: float = 60.0) -> Any:
        return json.loads(self.run(*args, "-o", "json", timeout=timeout).stdout)

    def get(self, kind: str, name: str | None = None, *selectors: str) -> Any:
        """`kubectl get` as JSON: one object, or the List for kind (+ selectors like -l)."""
        return self.json("get", kind, *([name] if name else []), *selectors)

    def items(self, kind: str, *selectors: str) -> list[dict[str, Any]]:
        return list(self.get(kind, None, *selectors)["items"])

    def exists(self, kind: str, name: str) -> bool:
        result = self.run("get", kind, name, "--ignore-not-found", "-o", "name", check=False)
        return result.returncode == 0 and bool(result.stdout.strip())

    def apply(
        self,
        manifest: str | Path,
        *,
        server_side: bool = True,
        dry_run: str | None = None,
        check: bool = True,
        extra: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        """kubectl apply of a file/dir path or of YAML/JSON text."""
        args = ["apply"]
        if server_side:
            args += ["--server-side", "--field-manager=flywheel-tests"]
        if dry_run:
            args.append(f"--dry-run={dry_run}")
        args += list(extra)
        if isinstance(manifest, Path):
            return self.run(*args, "-f", str(manifest), check=check)
        return self.run(*args, "-f", "-", input=manifest, check=check)

    def create(self, manifest: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("create", "-f", "-", input=manifest, check=check)

    def delete(self, *args: str, wait: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("delete", *args, "--ignore-not-found", f"--wait={str(wait).lower()}")

    def wait(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """`kubectl wait ... --timeout`, with the object dumped on failure for context."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(deadline - time.monotonic(), 1.0)
            result = self.run("wait", *args, f"--timeout={left:.0f}s", check=False,
                              timeout=left + 15)  # fmt: skip
            # kubectl wait gives up at once on an object that has no status.conditions yet
            # (a CRD just created): that is "not yet", so ask again within the deadline.
            if "accessor error" not in result.stderr or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        if result.returncode != 0:
            targets = [a for a in args if not a.startswith("--")]
            seen = self.run("get", *targets, "-o", "yaml", check=False)
            raise AssertionError(
                f"kubectl wait {' '.join(args)} failed: {result.stderr.strip()}\n"
                f"last seen:\n{seen.stdout or seen.stderr}"
            )
        return result


def _has_namespace_flag(args: Sequence[str]) -> bool:
    return any(
        a in ("-n", "--namespace", "-A", "--all-namespaces") or a.startswith("--namespace=")
        for a in args
    )


@dataclass(frozen=True)
class Helm:
    binary: Path
    kubeconfig: Path
    env: Mapping[str, str] = field(default_factory=dict)

    def run(
        self, *args: str, check: bool = True, timeout: float = 180.0
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.env},
        )
        if check and result.returncode != 0:
            raise CommandError(result)
        return result
