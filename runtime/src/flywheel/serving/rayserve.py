"""The Ray Serve layout: a rollout step changes one `user_config`, never a model replica.

    application <md>-<version>   import_path flywheel.serving.rayserve:model_app
                                 args {"model", "version", "uri"}: only that version,
                                 so it never changes while the version is served
    application <md>             import_path flywheel.serving.rayserve:router_app
                                 args {"deployment"} and, for entity lookups,
                                 {"featureView": its manifest, "artifactRoot"}
                                 deployment "Router": user_config = the router config
                                 (weights, strategy, versions -> applications)

The FeatureView rides in the router's args, not its `user_config`: the replica opens its
online store once, when it starts, and a rollout step (a `user_config` change) neither
reopens it nor carries the view's spec. A change of the view's spec restarts the router
replicas, as it restarts the standalone router's Pod; a materialization (its status)
changes nothing.

Serve applies a change limited to a deployment's `user_config` in place, through
`reconfigure`, when the config is deployed declaratively (`PUT /api/serve/applications/`
on the dashboard, what KubeRay sends for a RayService's `serveConfigV2`); a change of an
application's `import_path`, `args` or `runtime_env` restarts its replicas. So:

- adding a version: deploy its application, wait until RUNNING, then give it weight;
- removing one: weight 0, then drop its application from the next PUT;
- the router's `reconfigure` never raises (a raise makes Serve replace a healthy router
  and, after retries, leaves none): a bad config keeps the old state and is counted in
  `flywheel_router_config_errors` and reported by the rollout endpoint.

A PUT is the whole desired state (applications missing from it are deleted), so one
writer builds it (`serve_config`) and sends it (`deploy`).

Token auth (Ray 2.60 with `RAY_AUTH_MODE=token`): `deploy` sends `Authorization: Bearer`
with the token from `$RAY_AUTH_TOKEN`, else the file `$RAY_AUTH_TOKEN_PATH` or
`~/.ray/auth_token` (what `ray get-auth-token --generate` writes).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from flywheel.serving import lookup

MODEL_DEPLOYMENT = "Model"
ROUTER_DEPLOYMENT = "Router"
MODEL_IMPORT = "flywheel.serving.rayserve:model_app"
ROUTER_IMPORT = "flywheel.serving.rayserve:router_app"
STATE_DIR_ENV = "FLYWHEEL_ROUTER_STATE_DIR"
# A file holding a redis:// URL (a mounted Secret key): the router replicas add their
# bandit counts to totals there instead of each keeping its own file.
STATE_URL_FILE_ENV = "FLYWHEEL_ROUTER_STATE_URL_FILE"
# The router's code never blocks its loop, so its replica runs it, and its handles' request
# routing, on the replica's own event loop: two thread hops fewer per request.
ROUTER_SERVE_ENV = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
}


# --- the declarative config (pure) ---------------------------------------------------


def app_name(deployment: str, version: str) -> str:
    """The Serve application of one version: DNS-label-safe, like the operator's names.

    >>> app_name("churn", "2026.11.29-a")
    'churn-2026-11-29-a'
    """
    key = re.sub(r"[^a-z0-9-]+", "-", version.lower()).strip("-")[:40] or "v"
    return f"{deployment}-{key}"


def serve_config(
    deployment: str,
    versions: list[dict[str, str]],
    router: dict[str, Any],
    *,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    autoscaling: dict[str, Any] | None = None,
    http_options: dict[str, Any] | None = None,
    feature_view: dict[str, Any] | None = None,
    artifact_root: str | None = None,
) -> dict[str, Any]:
    """The whole Serve config: an application per version, then the router's.

    `versions`: [{"model", "version", "uri"}]; `router`: the router config (its
    `applications` are filled in here); `feature_view`: the manifest (kind, name,
    namespace, spec) of the FeatureView whose online store answers entity lookups, under
    `artifact_root` (where its SQLite file and offline schema live).
    """
    apps = []
    applications = {}
    for v in versions:
        name = app_name(deployment, v["version"])
        applications[v["version"]] = name
        model: dict[str, Any] = {
            "name": MODEL_DEPLOYMENT,
            # Fractional GPUs let several small versions share one card.
            "ray_actor_options": {"num_cpus": num_cpus, "num_gpus": num_gpus},
        }
        if autoscaling:
            model["autoscaling_config"] = autoscaling
        apps.append(
            {
                "name": name,
                "route_prefix": f"/{name}",
                "import_path": MODEL_IMPORT,
                "args": {"model": v["model"], "version": v["version"], "uri": v["uri"]},
                "deployments": [model],
            }
        )
    router_config = {**router, "deployment": deployment, "applications": applications}
    apps.append(
        {
            "name": deployment,
            "route_prefix": "/",
            "import_path": ROUTER_IMPORT,
            "args": router_args(deployment, feature_view, artifact_root),
            "runtime_env": {"env_vars": dict(ROUTER_SERVE_ENV)},
            "deployments": [
                {
                    "name": ROUTER_DEPLOYMENT,
                    "num_replicas": 1,
                    "ray_actor_options": {"num_cpus": min(num_cpus, 0.5)},
                    "user_config": router_config,
                }
            ],
        }
    )
    config: dict[str, Any] = {"applications": apps}
    if http_options:
        config["http_options"] = http_options
    return config


def router_args(
    deployment: str, feature_view: dict[str, Any] | None = None, artifact_root: str | None = None
) -> dict[str, Any]:
    """The router application's args: what stays fixed for its replicas' lifetime.

    >>> router_args("churn")
    {'deployment': 'churn'}
    """
    args: dict[str, Any] = {"deployment": deployment}
    if feature_view is not None:
        if not artifact_root:
            raise ValueError("serve_config: a feature_view needs the artifact_root it is under")
        args["featureView"] = feature_view
        args["artifactRoot"] = artifact_root
    return args


def open_lookup(args: dict[str, Any]) -> lookup.OnlineFeatures | None:
    """The router's entity lookup from its args (None without a FeatureView), opened as
    the standalone router opens it; an error names the field and what to fix."""
    manifest = args.get("featureView")
    if manifest is None:
        return None
    if not isinstance(manifest, dict) or not (manifest.get("metadata") or {}).get("name"):
        raise lookup.FeatureLookupError(
            "router args: featureView must be the FeatureView's manifest "
            "(apiVersion, kind, metadata.name, spec)"
        )
    if not args.get("artifactRoot"):
        raise lookup.FeatureLookupError(
            "router args: artifactRoot is required with featureView (where its store lives)"
        )
    return lookup.from_manifests(
        [manifest],
        str(manifest["metadata"]["name"]),
        str(args["artifactRoot"]),
        str(manifest["metadata"].get("namespace") or "default"),
        what="router args: featureView",
    )


# --- the one writer: the dashboard's REST API ----------------------------------------


def auth_headers(token: str | None = None) -> dict[str, str]:
    token = token or os.environ.get("RAY_AUTH_TOKEN")
    if not token:
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
        if path.is_file():
            token = path.read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def deploy(dashboard: str, config: dict[str, Any], token: str | None = None) -> None:
    """PUT the whole Serve config, as KubeRay does; raises on a non-2xx answer."""
    body = json.dumps(config).encode()
    headers = {"Content-Type": "application/json", **auth_headers(token)}
    url = dashboard.rstrip("/") + "/api/serve/applications/"
    request = urllib.request.Request(url, body, headers, method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            reply.read()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"PUT {url}: {exc.code} {exc.read()[:500]!r}") from None


def status(dashboard: str, token: str | None = None) -> dict[str, Any]:
    """`GET /api/serve/applications/`: applications, their status and deployments."""
    url = dashboard.rstrip("/") + "/api/serve/applications/"
    request = urllib.request.Request(url, headers=auth_headers(token))
    with urllib.request.urlopen(request, timeout=30) as reply:
        document: dict[str, Any] = json.loads(reply.read())
    return document


def wait_running(
    dashboard: str, names: list[str], timeout: float = 300, token: str | None = None
) -> None:
    """Until every named application is RUNNING (raises on DEPLOY_FAILED or timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        apps = status(dashboard, token).get("applications", {})
        states = {n: apps.get(n, {}).get("status") for n in names}
        failed = [n for n, s in states.items() if s == "DEPLOY_FAILED"]
        if failed:
            app = apps[failed[0]]
            messages = [app.get("message", "")] + [
                f"{d}: {info.get('message', '')}" for d, info in app.get("deployments", {}).items()
            ]
            detail = "; ".join(m for m in messages if m)
            raise RuntimeError(f"Serve application {failed[0]} failed: {detail[:3000]}")
        if all(s == "RUNNING" for s in states.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"Serve applications not RUNNING after {timeout}s: {states}")
        time.sleep(0.2)


# --- the deployments (import ray only here) ------------------------------------------


def _deployments() -> tuple[Any, Any]:
    from ray import serve
    from ray.serve import metrics as serve_metrics
    from starlette.requests import Request
    from starlette.responses import Response

    from flywheel.serving import config as config_mod
    from flywheel.serving import modelserver, oip, predictor, routerapp, service
    from flywheel.serving.router import Router
    from flywheel.serving.state import open_store

    @serve.deployment(name=MODEL_DEPLOYMENT)
    class ModelVersion:
        """One model version. Handles call `infer`; HTTP gets the v2 infer route."""

        def __init__(self, model: str, version: str, uri: str) -> None:
            self.server = modelserver.ModelServer(model, version, predictor.load_predictor(uri))
            self.requests = serve_metrics.Counter(
                "flywheel_model_requests", "Requests a model version answered.", ("version",)
            )
            self.latency = serve_metrics.Histogram(
                "flywheel_model_latency_seconds",
                "Time a model version took.",
                [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0],
                ("version",),
            )
            self.tags = {"version": version}

        async def infer(self, request: oip.InferRequest) -> oip.InferResponse:
            # async, though it never awaits: Serve runs a sync method on a worker thread,
            # and for a model that answers in microseconds the thread hop costs more.
            return self._infer(request)

        def _infer(self, request: oip.InferRequest) -> oip.InferResponse:
            start = time.perf_counter()
            response = self.server.predict(request)
            self.latency.observe(time.perf_counter() - start, self.tags)
            self.requests.inc(1, self.tags)
            return response

        def pid(self) -> int:
            return os.getpid()

        async def __call__(self, request: Request) -> Response:
            body = await request.body()
            try:
                decoded = oip.decode_request(body, request.headers.get(oip.HEADER_LENGTH))
                response = self._infer(decoded)
            except oip.ProtocolError as exc:
                return service.error_response(400, str(exc))
            binary = bool(decoded.parameters.get("binary_data_output", False))
            payload, headers = oip.encode_response(response, decoded.outputs, binary)
            return Response(payload, 200, headers)

    @serve.deployment(name=ROUTER_DEPLOYMENT)
    @serve.ingress()
    class RouterDeployment:
        """The router core over `DeploymentHandle`s, configured by `user_config`."""

        def __init__(self, deployment: str, lookup_args: dict[str, Any] | None = None) -> None:
            self.deployment = deployment
            # Opened once per replica: a reconfigure keeps it (see the module docstring).
            self.features = open_lookup(lookup_args or {})
            self.router: Router | None = None
            self.routes: Any = None
            self.config_errors = serve_metrics.Counter(
                "flywheel_router_config_errors",
                "Router config updates refused (the old config stays).",
            )
            self.requests = serve_metrics.Counter(
                "flywheel_router_requests",
                "Requests answered through the router, by version and outcome.",
                ("version", "outcome"),  # type: ignore[arg-type]
            )
            self.latency = serve_metrics.Histogram(
                "flywheel_router_latency_seconds",
                "Time a version took, seen from the router.",
                [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0],
                ("version",),
            )

        def _observe(self, version: str, outcome: str, seconds: float) -> None:
            self.requests.inc(1, {"version": version, "outcome": outcome})
            if outcome == "ok":
                self.latency.observe(seconds, {"version": version})

        async def reconfigure(self, user_config: dict[str, Any]) -> None:
            # Must never raise: Serve would replace this healthy replica.
            try:
                if self.router is None:
                    cfg = config_mod.parse({"deployment": self.deployment, **user_config})
                    state_dir = Path(os.environ.get(STATE_DIR_ENV, "/tmp/flywheel-router"))
                    url_file = os.environ.get(STATE_URL_FILE_ENV)
                    store = (
                        open_store(Path(url_file).read_text().strip())
                        if url_file
                        else open_store(state_dir / f"{self.deployment}.db")
                    )
                    self.router = Router(cfg, store=store, features=self.features)
                    self.router.listeners.append(self._observe)
                    self.routes = routerapp.app(self.router, lifespan=False)
                    self.router.start_background()
                elif not self.router.apply({"deployment": self.deployment, **user_config}):
                    self.config_errors.inc()
            except Exception:
                self.config_errors.inc()

        def __serve_build_asgi_app__(self) -> Any:
            async def asgi(scope: Any, receive: Any, send: Any) -> None:
                if scope["type"] == "lifespan":
                    while True:
                        message = await receive()
                        kind = message["type"].removeprefix("lifespan.")
                        await send({"type": f"lifespan.{kind}.complete"})
                        if kind == "shutdown":
                            return
                if self.routes is None:
                    response = service.error_response(503, "router not configured", 1)
                    await response(scope, receive, send)
                    return
                await self.routes(scope, receive, send)

            return asgi

        def report(self) -> dict[str, Any]:
            return self.router.rollout_report() if self.router else {}

        def pid(self) -> int:
            return os.getpid()

        def lookup_opened_at(self) -> float | None:
            """When this replica opened its online store (None: no entity lookups)."""
            return self.features.opened_at if self.features is not None else None

    return ModelVersion, RouterDeployment


def model_app(args: dict[str, Any]) -> Any:
    """The Serve application of one model version."""
    model_version, _ = _deployments()
    return model_version.bind(str(args["model"]), str(args["version"]), str(args["uri"]))


def router_app(args: dict[str, Any]) -> Any:
    """The Serve application of the router; its config comes as `user_config`."""
    _, router_deployment = _deployments()
    lookup_args = {k: args[k] for k in ("featureView", "artifactRoot") if k in args}
    return router_deployment.bind(str(args["deployment"]), lookup_args)
