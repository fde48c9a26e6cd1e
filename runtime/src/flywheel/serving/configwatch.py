"""The router's ConfigMap, watched through the API server: a rollout step's weights (and a
rollback's 100% stable) reach every router replica as soon as the operator writes them,
instead of when the kubelet next refreshes the mounted file (a minute or more).

The router's Pod gets its own ServiceAccount, bound to a Role that may only get, list
and watch this one ConfigMap (`resourceNames`); the credentials are the ones the kubelet
mounts in every Pod that automounts a token:

    /var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}
    KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT

The token is read again at every (re)connection: the kubelet rotates projected tokens.
The mounted file stays the config the router starts with; while the API is unreachable
the router keeps routing on the last config it took, and reconnects with a backoff.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
CONFIG_KEY = "router.json"
WATCH_SECONDS = 300  # the server ends a watch after this; the loop starts the next
RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)


class Applies(Protocol):
    """What takes a new config (the Router): True when it was taken."""

    def apply(self, new: bytes) -> bool: ...


class WatchError(Exception):
    """The API server refused the watch (its status says why)."""


@dataclasses.dataclass(frozen=True)
class InCluster:
    """Where the API server is and who the router is, as the kubelet gives a Pod."""

    server: str  # https://host:port
    credentials: Path  # holds token, ca.crt, namespace

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, credentials: Path = SERVICE_ACCOUNT_DIR
    ) -> InCluster:
        env = os.environ if env is None else env
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise ValueError(
                "--watch-configmap needs the API server: KUBERNETES_SERVICE_HOST and "
                "KUBERNETES_SERVICE_PORT are set in every Pod (none here: run the router "
                "in a Pod, or leave --watch-configmap out to re-read --config only)"
            )
        if not (credentials / "token").is_file():
            raise ValueError(
                f"--watch-configmap needs a ServiceAccount token at {credentials}/token: "
                "set automountServiceAccountToken: true on the router's Pod"
            )
        if ":" in host:  # IPv6
            host = f"[{host}]"
        return cls(f"https://{host}:{port}", credentials)

    def namespace(self) -> str:
        return (self.credentials / "namespace").read_text().strip()

    def token(self) -> str:
        return (self.credentials / "token").read_text().strip()

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.credentials / "ca.crt"))


def config_of(configmap: Mapping[str, Any], key: str = CONFIG_KEY) -> str | None:
    """The router's config in a ConfigMap object, None when it has none."""
    data = configmap.get("data") or {}
    value = data.get(key)
    return value if isinstance(value, str) else None


def watch_url(namespace: str, name: str, resource_version: str | None) -> str:
    """The watch of one ConfigMap: a field selector on its name, which a Role limited by
    `resourceNames` allows.

    >>> watch_url("ml", "churn-router", "42")  # doctest: +NORMALIZE_WHITESPACE
    '/api/v1/namespaces/ml/configmaps?fieldSelector=metadata.name%3Dchurn-router&watch=true&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion=42'
    """
    url = (
        f"/api/v1/namespaces/{namespace}/configmaps?fieldSelector=metadata.name%3D{name}"
        f"&watch=true&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}"
    )
    return url + (f"&resourceVersion={resource_version}" if resource_version else "")


class ConfigMapWatch:
    """Applies the ConfigMap's router config to `router` whenever it changes."""

    def __init__(
        self, router: Applies, cluster: InCluster, name: str, key: str = CONFIG_KEY
    ) -> None:
        self.router, self.cluster, self.name, self.key = router, cluster, name, key
        self.namespace = cluster.namespace()
        self.applied: str | None = None  # the config text last taken
        self.connected = asyncio.Event()  # set once the first read succeeded

    def take(self, configmap: Mapping[str, Any]) -> None:
        text = config_of(configmap, self.key)
        if text is None or text == self.applied:
            return  # another field changed (labels, annotations): nothing to route on
        self.applied = text
        if self.router.apply(text.encode()):
            rv = (configmap.get("metadata") or {}).get("resourceVersion")
            log.info("router config from configmap/%s (resourceVersion %s)", self.name, rv)

    async def run(self) -> None:
        """Read, then watch, until cancelled; reconnect after any failure."""
        failures = 0
        while True:
            try:
                async with self._client() as client:
                    version = await self._read(client)
                    self.connected.set()
                    failures = 0
                    async for event in self._events(client, version):
                        failures = 0
                        self._on(event)
            except asyncio.CancelledError:
                raise
            except (httpx.HTTPError, OSError, ValueError, WatchError) as exc:
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.warning("configmap/%s: %s; again in %.1f s", self.name, exc, delay)
                await asyncio.sleep(delay)

    def _client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.cluster.token()}"}
        timeout = httpx.Timeout(10.0, read=WATCH_SECONDS + 30.0)
        return httpx.AsyncClient(
            base_url=self.cluster.server, headers=headers, verify=self.cluster.tls(),
            timeout=timeout,
        )  # fmt: skip

    async def _read(self, client: httpx.AsyncClient) -> str:
        url = f"/api/v1/namespaces/{self.namespace}/configmaps/{self.name}"
        reply = await client.get(url)
        if reply.status_code != 200:
            raise WatchError(f"GET {url}: {reply.status_code} {reply.text[:300]}")
        configmap = reply.json()
        self.take(configmap)
        return str(configmap["metadata"]["resourceVersion"])

    async def _events(
        self, client: httpx.AsyncClient, version: str
    ) -> AsyncIterator[dict[str, Any]]:
        while True:
            url = watch_url(self.namespace, self.name, version)
            async with client.stream("GET", url) as reply:
                if reply.status_code != 200:
                    raise WatchError(f"watch: {reply.status_code} {(await reply.aread())[:300]!r}")
                async for line in reply.aiter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":  # 410 Gone: too old; read again
                        raise WatchError(f"watch: {event.get('object', {}).get('message')}")
                    obj = event.get("object") or {}
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    yield event

    def _on(self, event: Mapping[str, Any]) -> None:
        if event.get("type") in ("ADDED", "MODIFIED"):
            self.take(event.get("object") or {})
