"""The operator's only door to the API server.

Writes are server-side apply under one field manager (children) or merge patches of the
status subresource (owners). With a `cache.Store`, reads of the kinds it serves come from
the watches instead of the API, and every write's answer is put into it.

Every call goes through `_call`, which applies the retry policy of kube/retry.py: 5xx and
timeouts back off, 429 waits for Retry-After, 409 is returned to the caller to re-read and
re-apply, other 4xx raise `PermanentError`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from flywheel.api.common import resource_key
from flywheel_operator import labels, metrics
from flywheel_operator.kube import cache as caches
from flywheel_operator.kube import retry

log = logging.getLogger(__name__)

# kind -> (apiVersion, plural): the kinds the operator reads or writes.
KINDS: dict[str, tuple[str, str]] = {
    "Dataset": ("flywheel.dev/v1alpha1", "datasets"),
    "FeatureView": ("flywheel.dev/v1alpha1", "featureviews"),
    "TrainingJob": ("flywheel.dev/v1alpha1", "trainingjobs"),
    "ModelDeployment": ("flywheel.dev/v1alpha1", "modeldeployments"),
    "DriftMonitor": ("flywheel.dev/v1alpha1", "driftmonitors"),
    "Job": ("batch/v1", "jobs"),
    "CronJob": ("batch/v1", "cronjobs"),
    "Deployment": ("apps/v1", "deployments"),
    "Service": ("v1", "services"),
    "ConfigMap": ("v1", "configmaps"),
    "PodDisruptionBudget": ("policy/v1", "poddisruptionbudgets"),
    "Pod": ("v1", "pods"),
    "ServiceAccount": ("v1", "serviceaccounts"),
    "Role": ("rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", "rolebindings"),
    "Event": ("v1", "events"),
    "RayJob": ("ray.io/v1", "rayjobs"),
    "RayService": ("ray.io/v1", "rayservices"),
    "CustomResourceDefinition": ("apiextensions.k8s.io/v1", "customresourcedefinitions"),
}
CLUSTER_SCOPED = {"CustomResourceDefinition"}


class PermanentError(Exception):
    """The API refused a request for a reason retrying cannot fix."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


class ConflictError(Exception):
    """409: someone else changed the object; re-read and re-apply."""


def path(kind: str, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
    api_version, plural = KINDS[kind]
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    ns = "" if kind in CLUSTER_SCOPED or namespace is None else f"/namespaces/{namespace}"
    tail = "".join(f"/{p}" for p in (name, sub) if p)
    return f"{prefix}{ns}/{plural}{tail}"


class Kube:
    """A thin, typed wrapper over the API with the operator's retry policy."""

    def __init__(
        self,
        api_client: k8s.ApiClient | None = None,
        backoff: retry.Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        field_manager: str = labels.FIELD_MANAGER,
        cache: caches.Store | None = None,
    ) -> None:
        self.api = api_client or k8s.ApiClient()
        self.backoff = backoff or retry.Backoff()
        self.sleep = sleep
        self.field_manager = field_manager
        self.cache = cache
        self.writes = 0  # counted for tests and metrics
        self.reads = 0
        self._crd_cache: dict[str, tuple[float, bool]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cache: caches.Store | None = None, connections: int = 8) -> Kube:
        """`connections`: kept open to the API server, one for each concurrent caller."""
        try:
            k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException:
            k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
        configuration = k8s.Configuration.get_default_copy()
        configuration.connection_pool_maxsize = connections
        return cls(k8s.ApiClient(configuration), cache=cache)

    # --- reads -----------------------------------------------------------------------

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        if self.cache is not None and self.cache.serves(kind):
            return self.cache.get(kind, namespace, name)
        try:
            return self._call("GET", path(kind, namespace, name))
        except PermanentError as exc:
            if exc.status == 404:
                return None
            raise

    def select(
        self, kind: str, namespace: str | None, selector: dict[str, str]
    ) -> list[dict[str, Any]]:
        if self.cache is not None and self.cache.serves(kind):
            return self.cache.select(kind, namespace, selector)
        query = [("labelSelector", ",".join(f"{k}={v}" for k, v in sorted(selector.items())))]
        try:
            body = self._call("GET", path(kind, namespace), query=query)
        except PermanentError as exc:
            if exc.status == 404:  # the kind itself is not served (e.g. no KubeRay)
                return []
            raise
        items: list[dict[str, Any]] = body.get("items", [])
        for item in items:  # list items carry no kind; callers compare whole objects
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", KINDS[kind][0])
        return items

    def crd_installed(self, name: str, ttl: float = 30.0) -> bool:
        """Whether a CRD (e.g. rayjobs.ray.io) is served; cached briefly."""
        now = time.monotonic()
        with self._lock:
            cached = self._crd_cache.get(name)
            if cached and now - cached[0] < ttl:
                return cached[1]
        crd = self.get("CustomResourceDefinition", None, name)
        established = crd is not None and any(
            c.get("type") == "Established" and c.get("status") == "True"
            for c in (crd.get("status") or {}).get("conditions", [])
        )
        with self._lock:
            self._crd_cache[name] = (now, established)
        return established

    # --- writes ----------------------------------------------------------------------

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply of a child we own; `force` because we are its only writer."""
        meta = obj["metadata"]
        query = [("fieldManager", self.field_manager), ("force", "true")]
        return self._write(
            "PATCH",
            path(obj["kind"], meta.get("namespace"), meta["name"]),
            body=json.dumps(obj),
            content_type="application/apply-patch+yaml",
            query=query,
        )

    def patch_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch the status subresource (status lists are replaced whole)."""
        return self._write(
            "PATCH",
            path(kind, namespace, name, "status"),
            body={"status": status},
            content_type="application/merge-patch+json",
        )

    def merge_patch(
        self, kind: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch an object we do not own: only the keys given change."""
        return self._write(
            "PATCH",
            path(kind, namespace, name),
            body=patch,
            content_type="application/merge-patch+json",
        )

    def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Create, or None when it already exists (a retried create after a crash)."""
        meta = obj["metadata"]
        try:
            return self._write("POST", path(obj["kind"], meta.get("namespace")), body=obj)
        except ConflictError:
            return None

    def delete(self, kind: str, namespace: str, name: str) -> None:
        try:
            self._write(
                "DELETE",
                path(kind, namespace, name),
                body={"propagationPolicy": "Background"},
            )
        except PermanentError as exc:
            if exc.status != 404:
                raise
        if self.cache is not None:
            self.cache.remove(kind, namespace, name)

    def event(
        self,
        owner: dict[str, Any],
        type_: str,
        reason: str,
        message: str,
        now: str,
        name: str | None = None,
    ) -> None:
        """A core/v1 Event about an owner; never fails the reconcile that reports it.

        With a `name`, an Event of that name already there was recorded by an earlier try
        of the same reconcile, and this one is not told twice."""
        meta = owner["metadata"]
        naming = {"name": name} if name else {"generateName": f"{meta['name']}."}
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {**naming, "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": self.field_manager},
            "reportingComponent": self.field_manager,
            "reportingInstance": self.field_manager,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._write("POST", path("Event", meta["namespace"]), body=body)
        except ConflictError:
            if name is None:
                log.warning("event %s for %s not recorded: conflict", reason, meta["name"])
        except PermanentError as exc:
            key = resource_key(owner["kind"], meta["name"])
            log.warning("event %s for %s not recorded: %s", reason, key, exc)

    # --- the one place requests are made --------------------------------------------

    def _write(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        result = self._call(method, url, **kwargs)
        with self._lock:
            self.writes += 1
        held = self.cache
        if held is not None and method != "DELETE" and held.serves(result.get("kind", "")):
            held.put(result, written=True)  # a reconcile right after this one sees this write
        return result

    def _call(
        self,
        method: str,
        url: str,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        started, attempt = time.monotonic(), 0
        if method == "GET":
            with self._lock:
                self.reads += 1
        try:
            while True:
                metrics.API_REQUESTS.labels(method, _resource_of(url)).inc()
                status, headers, data = self._request(method, url, body, content_type, query)
                if status is not None and 200 <= status < 300:
                    return json.loads(data) if data else {}
                verdict = retry.classify(status)
                if verdict == retry.Verdict.REREAD:
                    raise ConflictError(data.decode(errors="replace"))
                if verdict == retry.Verdict.PERMANENT or attempt + 1 >= self.backoff.attempts:
                    raise _permanent(status, data)
                delay = self.backoff.delay(attempt, retry.retry_after_seconds(headers))
                log.info("%s %s: %s; retrying in %.1fs", method, url, status or "no answer", delay)
                self.sleep(delay)
                attempt += 1
        finally:
            metrics.API_SECONDS.labels(method).observe(time.monotonic() - started)

    def _request(
        self,
        method: str,
        url: str,
        body: Any,
        content_type: str,
        query: list[tuple[str, str]] | None,
    ) -> tuple[int | None, dict[str, str], bytes]:
        """One HTTP exchange: (status or None when nothing answered, headers, body)."""
        method, full_url, headers, body, _ = self.api.param_serialize(
            method=method,
            resource_path=url,
            query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api.call_api(
                method, full_url, header_params=headers, body=body, _request_timeout=30
            )
            data = response.read() or b""  # type: ignore[no-untyped-call]
            return response.status, dict(response.headers or {}), data
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return None, {}, str(exc).encode()
        except ApiException as exc:  # raised by the client for TLS failures
            return None, {}, str(exc).encode()


def _resource_of(url: str) -> str:
    """The resource a request path names, with its subresource: `datasets/status`."""
    parts = url.strip("/").split("/")
    if "namespaces" in parts:
        parts = parts[parts.index("namespaces") + 2 :]
    else:
        parts = parts[2:] if parts[0] == "api" else parts[3:]
    return "/".join(parts[:1] + parts[2:3])


def _permanent(status: int | None, data: bytes) -> PermanentError:
    """The API's own Status reason and message, when it sent one."""
    if status is None:
        return PermanentError(0, "Unreachable", data.decode(errors="replace"))
    try:
        body = json.loads(data or b"{}")
        return PermanentError(status, str(body.get("reason", "")), str(body.get("message", "")))
    except ValueError:
        return PermanentError(status, "", data.decode(errors="replace")[:500])
