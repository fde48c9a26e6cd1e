"""A small synthetic world with a known signal: customers, their events, churn labels.

Churn follows `risk` (a per-customer number the events carry) and the plan, so a model
that learns beats the base rate; `noise` carries nothing and is sometimes null.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flywheel.api.dataset import Dataset
from flywheel.api.featureview import FeatureView
from flywheel.api.trainingjob import TrainingJob
from flywheel.data import runner as datasets
from flywheel.entrypoints import RunContext
from flywheel.features import runner as features

START = datetime(2026, 1, 1, tzinfo=UTC)
PLANS = ["basic", "standard", "premium"]


def write_world(
    directory: Path,
    customers: int = 300,
    seed: int = 11,
    intercept: float = 0.3,
    slope: float = 2.5,
) -> None:
    """`intercept` sets the churn rate: 0.3 about half, -4.5 under one in ten; `slope` is
    risk's weight (a negative one turns the concept around)."""
    rng = random.Random(seed)
    events = ["customer_id,event_time,plan,risk,noise"]
    labels = ["cust,label_time,churned,amount"]
    for i in range(customers):
        cid = f"C{i:06d}"
        plan = rng.choice(PLANS)
        risk = rng.gauss(0, 1)
        for _ in range(4):
            t = START + timedelta(hours=rng.uniform(0, 20 * 24))
            noise = "" if rng.random() < 0.1 else f"{rng.gauss(0, 1):.4f}"
            events.append(
                f"{cid},{t:%Y-%m-%d %H:%M:%S},{plan},{risk + rng.gauss(0, 0.1):.4f},{noise}"
            )
        for day in (21, 25):
            t = START + timedelta(days=day, hours=rng.uniform(0, 23))
            score = slope * risk - 1.0 * (plan == "basic") + intercept
            churned = int(rng.random() < 1 / (1 + math.exp(-score)))
            amount = 10 + 3 * risk + rng.gauss(0, 0.5)
            labels.append(f"{cid},{t:%Y-%m-%d %H:%M:%S},{churned},{amount:.3f}")
    (directory / "events.csv").write_text("\n".join(events) + "\n")
    (directory / "labels.csv").write_text("\n".join(labels) + "\n")


def dataset(name: str, uri: str, time_column: str, columns: list[dict[str, Any]]) -> Dataset:
    return Dataset.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": name},
            "spec": {
                "source": {"uri": uri, "format": "csv"},
                "timestampColumn": time_column,
                "schema": {"columns": columns},
            },
        }
    )


def events() -> Dataset:
    return dataset(
        "events",
        "./events.csv",
        "event_time",
        [
            {"name": "customer_id", "type": "string", "nullable": False},
            {"name": "event_time", "type": "timestamp", "nullable": False},
            {"name": "plan", "type": "string"},
            {"name": "risk", "type": "float64"},
            {"name": "noise", "type": "float64"},
        ],
    )


def labels() -> Dataset:
    return dataset(
        "labels",
        "./labels.csv",
        "label_time",
        [
            {"name": "cust", "type": "string", "nullable": False},
            {"name": "label_time", "type": "timestamp", "nullable": False},
            {"name": "churned", "type": "int64"},
            {"name": "amount", "type": "float64"},
        ],
    )


def view() -> FeatureView:
    return FeatureView.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "FeatureView",
            "metadata": {"name": "customer"},
            "spec": {
                "entities": [{"name": "customer", "joinKey": "customer_id"}],
                "source": {"datasetRef": {"name": "events"}},
                "timestampColumn": "event_time",
                "ttl": "30d",
                "features": [
                    {"name": "plan", "column": "plan"},
                    {"name": "risk", "column": "risk"},
                    {"name": "noise", "column": "noise"},
                ],
                "onlineStore": {"enabled": False},
            },
        }
    )


def job(name: str = "churn", generation: int = 1, **spec: Any) -> TrainingJob:
    body: dict[str, Any] = {
        "featureViewRefs": [{"name": "customer"}],
        "label": {
            "datasetRef": {"name": "labels"},
            "column": "churned",
            "entityColumns": ["cust"],
            "timestampColumn": "label_time",
        },
        "split": {"strategy": "time", "testFraction": 0.25, "seed": 3},
        "model": {"type": "logistic"},
        "hyperparameters": {"epochs": 3, "batchSize": 64, "learningRate": 0.05},
        "scaling": {"numWorkers": 2, "resourcesPerWorker": {"cpu": "1"}},
        "evaluation": {"metrics": ["auc", "accuracy", "logloss"], "sliceColumns": ["plan"]},
        "output": {"modelName": "churn"},
    }
    for key, value in spec.items():
        body[key] = {**body.get(key, {}), **value} if isinstance(value, dict) else value
    return TrainingJob.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": name, "generation": generation},
            "spec": body,
        }
    )


def build(directory: Path, **world: Any) -> RunContext:
    """Ingest both Datasets and materialize the view; the context a TrainingJob runs in."""
    directory.mkdir(parents=True, exist_ok=True)
    write_world(directory, **world)
    objects = [events(), labels(), view()]
    context = RunContext(
        artifact_root=directory / "artifacts",
        base_dir=directory,
        resources={o.key: o for o in objects},
    )
    statuses: dict[str, Any] = {}
    for ds in objects[:2]:
        assert isinstance(ds, Dataset)
        status = datasets.run_dataset(ds, context)
        assert status.phase == "Ready", status
        statuses[ds.key] = status
    fv = objects[2]
    assert isinstance(fv, FeatureView)
    done = features.run_featureview(fv, context.replace(statuses=statuses))
    assert done.phase == "Ready", done
    statuses[fv.key] = done
    return context.replace(statuses=statuses)
