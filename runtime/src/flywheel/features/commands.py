"""`flywheel features ...`: the commands a Job or a serving Deployment runs.

    flywheel features materialize  -f manifests/ --name customer-features --result out.json
    flywheel features training-set -f manifests/ --name customer-features \\
        --labels churn-labels --out train.parquet
    flywheel features get-online   -f manifests/ --name customer-features \\
        --entity customer_id=C000001
    flywheel features serve        -f manifests/ --port 8080

`--name <deployment>-predictions` names a ModelDeployment's batch predictions (its
spec.batchPrediction): they are looked up and served like any FeatureView's features.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flywheel import entrypoints
from flywheel.api.dataset import Dataset
from flywheel.api.featureview import FeatureView
from flywheel.api.modeldeployment import PREDICTIONS_SUFFIX, ModelDeployment, predictions_view


def register(sub: Any) -> None:
    p = sub.add_parser("features", help="FeatureView work: materialize, training sets, serving")
    fsub = p.add_subparsers(dest="features_command", required=True, metavar="COMMAND")

    m = fsub.add_parser("materialize", help="compute features; update offline and online stores")
    entrypoints.add_object_arguments(m)
    m.add_argument(
        "--incremental",
        action="store_true",
        help="for scheduled runs; the online store is always updated from the watermark on",
    )
    m.set_defaults(handler=cmd_materialize)

    t = fsub.add_parser("training-set", help="point-in-time correct features for label rows")
    entrypoints.add_object_arguments(t)
    t.add_argument("--labels", required=True, help="the Dataset (in -f) holding the labels")
    t.add_argument("--label-time", help="label time column (default: its timestampColumn)")
    t.add_argument(
        "--label-entity-columns",
        help="the labels' entity columns in join-key order, e.g. customer,store "
        "(default: named like the join keys)",
    )
    t.add_argument("--out", type=Path, required=True, help="Parquet file to write")
    t.set_defaults(handler=cmd_training_set)

    g = fsub.add_parser("get-online", help="look up online features of entities")
    entrypoints.add_object_arguments(g)
    g.add_argument(
        "--entity",
        action="append",
        required=True,
        help="join key values, e.g. customer_id=C000001 (a,b=1,2 for composite keys)",
    )
    g.add_argument("--at", help="ISO time to answer for (default: now)")
    g.set_defaults(handler=cmd_get_online)

    s = fsub.add_parser("serve", help="serve online features over HTTP")
    entrypoints.add_object_arguments(s)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.set_defaults(handler=cmd_serve)


def _view(args: argparse.Namespace) -> tuple[FeatureView, Any]:
    name = args.name or ""
    if name.endswith(PREDICTIONS_SUFFIX) and args.filename:
        found = _predictions_view(args, name.removesuffix(PREDICTIONS_SUFFIX))
        if found is not None:
            return found
    resource, context = entrypoints.select_object(args, "FeatureView")
    assert isinstance(resource, FeatureView)
    return resource, context


def _predictions_view(args: argparse.Namespace, deployment: str) -> tuple[FeatureView, Any] | None:
    """`<md>-predictions`: a ModelDeployment's batch predictions, looked up as features."""
    from flywheel import manifests

    loaded = manifests.load(args.filename)
    mds = [
        r
        for r in (i.resource for i in loaded.resources)
        if isinstance(r, ModelDeployment) and r.name == deployment and r.spec.batch_prediction
    ]
    if not mds:
        return None
    md, context = entrypoints.select_object(
        argparse.Namespace(**{**vars(args), "name": deployment}), "ModelDeployment"
    )
    assert isinstance(md, ModelDeployment) and md.spec.batch_feature_view is not None
    ref = md.spec.batch_feature_view
    view = context.input_resource("FeatureView", ref)
    if not isinstance(view, FeatureView):
        raise SystemExit(
            f"error: ModelDeployment {deployment!r} scores FeatureView {ref!r}, which is not "
            "in the given manifests"
        )
    return predictions_view(md, view), context


def cmd_materialize(args: argparse.Namespace) -> int:
    from flywheel.features import runner

    view, context = _view(args)
    status = runner.run_featureview(view, context)
    entrypoints.write_result(args.result, status)
    ready = status.conditions[-1]
    print(f"FeatureView/{view.name}: {ready.reason}: {ready.message}", file=sys.stderr)
    return 0 if status.phase == "Ready" else 1


def cmd_training_set(args: argparse.Namespace) -> int:
    from flywheel.data import runner as datasets
    from flywheel.data import snapshots
    from flywheel.features import runner, stores

    view, context = _view(args)
    labels_ds = context.input_resource("Dataset", args.labels)
    if not isinstance(labels_ds, Dataset):
        raise SystemExit(f"error: Dataset {args.labels!r} is not in the given manifests")
    label_time = args.label_time or labels_ds.spec.timestamp_column
    if label_time is None:
        raise SystemExit("error: give --label-time; the labels Dataset has no timestampColumn")
    labels = snapshots.current_table(datasets.dataset_root(labels_ds, context))
    if labels is None:
        raise SystemExit(f"error: Dataset {args.labels!r} has no snapshot; ingest it first")
    out: Path = args.out
    if out.is_dir():
        raise SystemExit(
            f"error: --out {out} is a directory; give a file path such as {out}/train.parquet"
        )
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise SystemExit(f"error: --out {out}: {blocking} is a file, not a directory")
    entity_columns = args.label_entity_columns.split(",") if args.label_entity_columns else None
    if entity_columns is not None and len(entity_columns) != len(view.spec.join_keys):
        raise SystemExit(
            f"error: --label-entity-columns names {len(entity_columns)} column(s); the join "
            f"keys are {', '.join(view.spec.join_keys)}"
        )
    try:
        table = runner.training_set(view, labels, context, label_time, entity_columns)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    stores.write_table(table, out)
    print(f"wrote {table.num_rows} rows x {table.num_columns} columns to {args.out}")
    return 0


def parse_entity(text: str, join_keys: list[str]) -> dict[str, Any]:
    """'customer_id=C000001' -> {'customer_id': 'C000001'}. Values stay text here; the
    lookup reads each by the type of its key column, as the HTTP server does.

    >>> parse_entity("a,b=x,2", ["a", "b"])
    {'a': 'x', 'b': '2'}
    """
    names, _, values = text.partition("=")
    keys = names.split(",") if values else join_keys
    raw = (values or names).split(",")
    if len(keys) != len(raw):
        raise SystemExit(f"error: --entity {text!r} does not match join keys {join_keys}")
    return dict(zip(keys, raw, strict=True))


def cmd_get_online(args: argparse.Namespace) -> int:
    from flywheel.features import runner, serving

    view, context = _view(args)
    entities = [parse_entity(e, view.spec.join_keys) for e in args.entity]
    try:
        at = serving.parse_time(args.at) if args.at else datetime.now(UTC)
    except ValueError as exc:
        raise SystemExit(
            f"error: --at: {exc}; give an ISO 8601 time such as 2026-05-01T00:00:00+00:00"
        ) from None
    opened = runner.open_online_view(view, context)
    try:
        rows = opened.get(entities, at)
        reasons = opened.why_missing(entities, at)
    except ValueError as exc:
        raise SystemExit(f"error: --entity: {exc}") from None
    finally:
        opened.store.close()
    answers: list[dict[str, Any]] = []
    for entity, row, reason in zip(entities, rows, reasons, strict=True):
        answer: dict[str, Any] = {"entity": entity, "features": row}
        if row is None and reason:
            answer["reason"] = reason
        answers.append(answer)
    print(json.dumps(answers, indent=2, default=str))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from flywheel.features import runner, serving

    view, context = _view(args)
    opened = {view.name: runner.open_online_view(view, context)}
    server = serving.serve(opened, args.host, args.port)
    port = server.server_address[1]
    url = f"http://{args.host}:{port}/v1/features/{view.name}"
    print(f"serving FeatureView/{view.name} on {url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
