"""`flywheel serve ...`: the commands a serving Pod runs.

    flywheel serve router --config /etc/flywheel/router.json --port 8080
    flywheel serve model  --uri file:///models/churn/v1 --name churn --version v1 --port 8000
    flywheel serve triton-repository --uri s3://ml/models/churn/versions/v1 --model churn \
        --config /etc/triton/serving.pbtxt --out /models

and, beside them, batch prediction over a Dataset version, and one run of a
ModelDeployment's scheduled batch prediction (what its CronJob runs):

    flywheel predict --model file:///models/churn/versions/v1 --dataset events \
        --out predictions.parquet
    flywheel batch-predict -f manifests/ --name churn --model file:///models/churn/versions/v1

This module imports nothing heavy; each command imports what it runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from flywheel import entrypoints


def register(sub: Any) -> None:
    b = sub.add_parser(
        "predict", help="score a Dataset version with a model version, into a Parquet file"
    )
    b.add_argument("--model", required=True, help="the model version directory (any URI)")
    b.add_argument("--dataset", required=True, help="the Dataset's name")
    b.add_argument("--dataset-version", help="a published version (default: the current one)")
    b.add_argument("--namespace", default=os.environ.get(entrypoints.NAMESPACE_ENV, "default"))
    b.add_argument(
        "--artifact-root",
        default=os.environ.get(entrypoints.HOME_ENV, entrypoints.DEFAULT_ARTIFACT_ROOT),
        help="where `flywheel run` published the Dataset (default: $FLYWHEEL_HOME)",
    )
    b.add_argument("--out", required=True, help="the Parquet file to write (any URI)")
    b.set_defaults(handler=cmd_predict)

    bp = sub.add_parser(
        "batch-predict",
        help="one run of a ModelDeployment's spec.batchPrediction: its FeatureView's "
        "entities scored into the online store and Parquet",
    )
    entrypoints.add_object_arguments(bp)
    bp.add_argument("--model", required=True, help="the model version directory (any URI)")
    bp.add_argument("--model-name", help="the registry model (default: the directory's)")
    bp.add_argument("--model-version", help="its version (default: the directory's name)")
    bp.set_defaults(handler=cmd_batch_predict)

    p = sub.add_parser("serve", help="serving: the rollout router and the v2 model server")
    ssub = p.add_subparsers(dest="serve_command", required=True, metavar="COMMAND")

    r = ssub.add_parser(
        "router", help="route v2 inference over model versions (shadow, canary, bandit)"
    )
    r.add_argument(
        "--config",
        type=Path,
        required=True,
        help="router JSON (re-read on change; with --watch-configmap, the starting config)",
    )
    r.add_argument("--host", default="0.0.0.0")
    r.add_argument("--port", type=int, default=8080)
    r.add_argument("--grpc-port", type=int, help="also serve v2 gRPC on this port")
    r.add_argument(
        "--state-file",
        type=Path,
        help="SQLite file for bandit state (default: <artifact root>/serving/<deployment>.db)",
    )
    r.add_argument(
        "--state-url-file",
        type=Path,
        help="a file holding a redis:// URL: bandit counts shared with the other replicas "
        "(a mounted Secret key; replaces --state-file)",
    )
    r.add_argument(
        "--artifact-root",
        default=os.environ.get(entrypoints.HOME_ENV, entrypoints.DEFAULT_ARTIFACT_ROOT),
    )
    r.add_argument("-f", "--filename", action="append", help="manifests holding the FeatureView")
    r.add_argument("--feature-view", help="look entity keys up in this FeatureView's online store")
    r.add_argument(
        "--reload-interval", type=float, default=1.0, help="seconds between config checks"
    )
    r.add_argument(
        "--watch-configmap",
        metavar="NAME",
        help="take the config from this ConfigMap through the API server as soon as it "
        "changes (the Pod's ServiceAccount token; --config is then the starting config)",
    )
    r.add_argument(
        "--service-account-dir",
        type=Path,
        default=Path("/var/run/secrets/kubernetes.io/serviceaccount"),
        help="where the Pod's token, ca.crt and namespace are mounted",
    )
    r.add_argument(
        "--drain-seconds",
        type=float,
        default=5.0,
        help="on SIGTERM: report not ready, finish requests in flight, for at most this long",
    )
    r.set_defaults(handler=cmd_router)

    m = ssub.add_parser("model", help="serve one model version over the v2 protocol")
    m.add_argument("--uri", required=True, help="the model artifact directory")
    m.add_argument("--name", required=True, help="the model name clients ask for")
    m.add_argument("--version", required=True)
    m.add_argument("--host", default="0.0.0.0")
    m.add_argument("--port", type=int, default=8000)
    m.add_argument("--grpc-port", type=int, help="also serve v2 gRPC on this port")
    m.set_defaults(handler=cmd_model)

    t = ssub.add_parser(
        "triton-repository",
        help="lay out a Triton model repository from a registry version (an init container)",
    )
    t.add_argument("--uri", required=True, help="the model version directory in the registry")
    t.add_argument("--model", required=True, help="the model name Triton serves")
    t.add_argument(
        "--config",
        type=Path,
        help="serving settings (config.pbtxt fields) that replace the registry's",
    )
    t.add_argument("--out", type=Path, required=True, help="the model repository directory")
    t.set_defaults(handler=cmd_triton_repository)


def cmd_router(args: argparse.Namespace) -> int:
    from flywheel.serving import config as config_mod
    from flywheel.serving import configwatch, routerapp, server
    from flywheel.serving.router import Router
    from flywheel.serving.state import StateError, open_store

    try:
        cfg = config_mod.parse(args.config.read_bytes())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {args.config}: {exc}") from None
    root = entrypoints.local_directory(args.artifact_root)
    state: str | Path = args.state_file or root / "serving" / f"{cfg.deployment}.db"
    if args.state_url_file is not None:
        try:
            state = args.state_url_file.read_text().strip()
        except OSError as exc:
            raise SystemExit(f"error: --state-url-file: {exc}") from None
    try:
        store = open_store(state)
    except StateError as exc:
        raise SystemExit(f"error: {exc}") from None
    features = _feature_lookup(args) if args.feature_view else None
    router = Router(cfg, store=store, features=features)
    configmap = None
    if args.watch_configmap:
        try:
            cluster = configwatch.InCluster.from_env(credentials=args.service_account_dir)
            configmap = configwatch.ConfigMapWatch(router, cluster, args.watch_configmap)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"error: {exc}") from None
    app = routerapp.app(router, args.config, args.reload_interval, configmap=configmap)
    service = routerapp.RouterService(router)
    server.run(
        app, args.host, args.port, args.drain_seconds, service, args.grpc_port,
        on_drain=lambda: setattr(router, "draining", True),
        in_flight=lambda: router.admission.in_flight,
    )  # fmt: skip
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    from flywheel.serving import modelserver, predictor, server

    model = modelserver.ModelServer(args.name, args.version, predictor.load_predictor(args.uri))
    server.run(modelserver.app(model), args.host, args.port, 5.0, model, args.grpc_port)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from flywheel.serving import batch, predictor
    from flywheel.storage import uris

    root = uris.resolve(str(Path(args.artifact_root) / "datasets" / args.namespace / args.dataset))
    snapshot = batch.read_snapshot(root, args.dataset, args.dataset_version)
    try:
        model = predictor.load_predictor(args.model)
    except (OSError, FileNotFoundError) as exc:
        raise SystemExit(f"error: no model version at --model {args.model}: {exc}") from None
    try:
        scored = batch.score_table(model, snapshot.table)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    out = uris.resolve(args.out)
    lineage = {"model": args.model, "dataset": args.dataset, "datasetVersion": snapshot.version}
    batch.write(scored, out, lineage)
    print(
        f"{scored.num_rows} predictions of Dataset {args.dataset} version {snapshot.version} "
        f"by {args.model} in {out.uri}"
    )
    return 0


def cmd_batch_predict(args: argparse.Namespace) -> int:
    import sys

    from flywheel.api.modeldeployment import ModelDeployment
    from flywheel.serving import batchpredict
    from flywheel.serving.versions import ServedVersion

    md, context = entrypoints.select_object(args, "ModelDeployment")
    assert isinstance(md, ModelDeployment)
    if md.spec.batch_prediction is None:
        raise SystemExit(f"error: ModelDeployment {md.name!r} has no spec.batchPrediction")
    # A registry version lives at <model root>/versions/<version>.
    parts = args.model.rstrip("/").rsplit("/", 3)
    version = args.model_version or parts[-1]
    name = args.model_name or (parts[-3] if len(parts) == 4 and parts[-2] == "versions" else "")
    status = batchpredict.run_status(md, ServedVersion(name, version, args.model), context)
    entrypoints.write_result(args.result, status)
    said = status.conditions[-1]
    print(f"ModelDeployment/{md.name}: batch prediction: {said.reason}: {said.message}",
          file=sys.stderr)  # fmt: skip
    return 0 if status.phase != "Failed" else 1


def cmd_triton_repository(args: argparse.Namespace) -> int:
    from flywheel.serving import tritonrepo

    try:
        target = tritonrepo.lay_out(args.uri, args.model, args.config, args.out)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"Triton model {args.model} from {args.uri} in {target}")
    return 0


def _feature_lookup(args: argparse.Namespace) -> Any:
    """The FeatureView named by --feature-view, from -f files or (in the router's Pod,
    as the operator starts it) from $FLYWHEEL_INPUT_MANIFESTS."""
    from flywheel.serving import lookup

    namespace = os.environ.get(entrypoints.NAMESPACE_ENV, "default")
    if args.filename:
        ns = argparse.Namespace(
            **{**vars(args), "name": args.feature_view, "result": None, "namespace": namespace}
        )
        resource, context = entrypoints.select_object(ns, "FeatureView")
        return lookup.open_view(resource, context)
    try:
        return lookup.from_manifests(
            os.environ.get(entrypoints.INPUT_MANIFESTS_ENV),
            args.feature_view,
            args.artifact_root,
            namespace,
            what="--feature-view",
        )
    except lookup.FeatureLookupError as exc:
        raise SystemExit(
            f"error: {exc}: give its manifest with -f (or in ${entrypoints.INPUT_MANIFESTS_ENV})"
        ) from None
