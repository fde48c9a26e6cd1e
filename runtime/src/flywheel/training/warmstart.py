"""Stateful retraining: fine-tune a registered version, then check what it forgot.

    spec.warmStart ──resolve──► Base: the version (named, by alias, or the one a
         │                      deployment serves), its weights (from model.pt2), its
         │                      preprocessing (kept, so the input layout matches), its test
         │                      window (testwindow.parquet) and its from-scratch compute
         ▼
    the loop starts from Base's weights on this job's window
         │
         ▼
    forgetting(): new and base scored on the base's test window; the new version may fall
    behind by `forgettingTolerance` at most, else the `forgetting` gate fails
    compute(): epochs and rows seen against the from-scratch run the chain started from

Compute in the card is counted in epochs and rows seen (rows x epochs), which a rerun
reproduces; wall seconds differ on every run, so they go to the registry index entry and
the status message instead of the version's files.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from flywheel.api.modeldeployment import ModelDeployment, ModelDeploymentStatus
from flywheel.api.trainingjob import ModelSpec, TrainingJob, TrainingJobStatus, WarmStart
from flywheel.entrypoints import RunContext
from flywheel.features import artifact, calibration
from flywheel.features.preprocess import Preprocessor
from flywheel.storage.uris import Location
from flywheel.training import evaluate, export, registry
from flywheel.training.errors import TrainingError

TEST_WINDOW = "testwindow.parquet"
# model.pt2 holds models.Serving, whose trained module is its `model` attribute.
SERVING_PREFIX = "model."
FILES = (
    export.MODEL_FILE,
    artifact.PREPROCESSING_FILE,
    artifact.SIGNATURE_FILE,
    "config.json",
    "card.json",
    artifact.CALIBRATION_FILE,
    TEST_WINDOW,
)


@dataclasses.dataclass(frozen=True)
class Base:
    """The registered version a warm start fine-tunes."""

    model_name: str
    version: str
    resolved_by: str  # how spec.warmStart named it, for the card and the status
    directory: Path  # a local copy of FILES (those the version has)
    preprocessor: Preprocessor
    weights: dict[str, Any]  # the trained module's state_dict
    model: dict[str, Any]  # the base's spec.model, as wire JSON
    label: str
    card: dict[str, Any]
    train_seconds: float | None  # from the registry index, when the base recorded it

    def module(self) -> Any:
        return export.load(self.directory / export.MODEL_FILE)

    def calibrator(self) -> calibration.Calibrator | None:
        found = self.directory / artifact.CALIBRATION_FILE
        if not found.is_file():
            return None
        return calibration.Calibrator.from_json(json.loads(found.read_text()))

    def describe(self) -> str:
        return f"{self.model_name}:{self.version}"


def served_version(context: RunContext, deployment: str) -> str | None:
    """The version a ModelDeployment serves as stable: its status, else what its stable
    TrainingJob registered; None when it serves nothing yet."""
    status = context.input_status("ModelDeployment", deployment)
    if isinstance(status, ModelDeploymentStatus) and status.stable_version:
        return status.stable_version
    found = context.input_resource("ModelDeployment", deployment)
    if isinstance(found, ModelDeployment):
        stable_job = getattr(found.spec.stable, "training_job_ref", None)
        job_status = context.input_status("TrainingJob", stable_job.name) if stable_job else None
        if isinstance(job_status, TrainingJobStatus):
            return job_status.model_version
    return None


def resolve(job: TrainingJob, context: RunContext, workdir: Path) -> Base:
    """The base version, its files copied under `workdir` (the job's run storage, so a
    rerun overwrites them instead of leaving copies behind)."""
    warm = job.spec.warm_start
    assert warm is not None
    name = warm.model_name or job.spec.output.model_name
    root = registry.model_root(job, context, name)
    version, how = _pick(warm, root, context)
    index = registry.read_index(root)
    entry = index["versions"].get(version)
    if entry is None or entry.get("state") != registry.REGISTERED:
        raise TrainingError(
            "WarmStartVersionNotFound",
            f"warmStart: {name}:{version} ({how}) is not a registered version of the "
            f"registry at {root.uri}",
        )
    directory = workdir / "warm-start" / name / version
    directory.mkdir(parents=True, exist_ok=True)
    where = registry.version_location(root, version)
    for file in FILES:
        _copy(where.join(file), directory / file)
    config = json.loads((directory / "config.json").read_text())
    program = torch.export.load(str(directory / export.MODEL_FILE))
    weights = {
        k.removeprefix(SERVING_PREFIX): v.detach().clone()
        for k, v in program.state_dict.items()
        if k.startswith(SERVING_PREFIX)
    }
    return Base(
        model_name=name,
        version=version,
        resolved_by=how,
        directory=directory,
        preprocessor=Preprocessor.from_json(
            json.loads((directory / artifact.PREPROCESSING_FILE).read_text())
        ),
        weights=weights,
        model=config["model"],
        label=json.loads((directory / artifact.SIGNATURE_FILE).read_text())["label"],
        card=json.loads((directory / "card.json").read_text()),
        train_seconds=entry.get("trainSeconds"),
    )


def _pick(warm: WarmStart, root: Location, context: RunContext) -> tuple[str, str]:
    if warm.version is not None:
        return warm.version, warm.describe()
    if warm.alias is not None:
        found = registry.alias(root, warm.alias)
        if found is None:
            raise TrainingError(
                "WarmStartVersionNotFound",
                f"warmStart: the registry at {root.uri} has no alias {warm.alias!r}",
            )
        return found, warm.describe()
    assert warm.deployment_ref is not None
    found = served_version(context, warm.deployment_ref.name)
    if found is not None:
        return found, warm.describe()
    champion = registry.alias(root, registry.CHAMPION)
    if champion is None:
        raise TrainingError(
            "WarmStartVersionNotFound",
            f"warmStart: md/{warm.deployment_ref.name} serves no version yet and the "
            f"registry at {root.uri} has no champion",
        )
    return champion, f"alias champion (md/{warm.deployment_ref.name} serves nothing yet)"


def _copy(source: Location, target: Path) -> None:
    try:
        with source.filesystem.open_input_stream(source.path) as f:
            target.write_bytes(f.read())
    except FileNotFoundError:
        return


def check(base: Base, spec_model: ModelSpec, features: list[str], model: torch.nn.Module) -> None:
    """Before Ray: the base's model and features are this job's, and its weights load."""
    if ModelSpec.model_validate(base.model) != spec_model:
        raise TrainingError(
            "WarmStartModelMismatch",
            f"warmStart: {base.describe()} is a {base.model} model; spec.model is "
            f"{spec_model.to_wire()}: a warm start keeps the model",
        )
    theirs = sorted({c.name for c in base.preprocessor.columns})
    if theirs != sorted(set(features)):
        raise TrainingError(
            "WarmStartFeaturesDiffer",
            f"warmStart: {base.describe()} was trained on features {theirs}; this training "
            f"set has {sorted(features)}",
        )
    try:
        model.load_state_dict(base.weights)
    except RuntimeError as exc:
        raise TrainingError(
            "WarmStartModelMismatch",
            f"warmStart: the weights of {base.describe()} do not fit: {exc}",
        ) from None
    if not (base.directory / TEST_WINDOW).is_file():
        raise TrainingError(
            "WarmStartNoTestWindow",
            f"warmStart: {base.describe()} has no {TEST_WINDOW} (registered before warm "
            "starts kept test windows), so forgetting cannot be checked; retrain it from "
            "scratch once",
        )


def forgetting(
    base: Base,
    score: Callable[[Any], Any],
    classification: bool,
    metric: str,
    tolerance: float,
) -> tuple[evaluate.GateResult, dict[str, Any]]:
    """The new version (`score`: preprocessed rows -> served scores) against the base on
    the base's test window."""
    window = pq.read_table(base.directory / TEST_WINDOW)
    y = np.asarray(window[base.label].to_numpy(zero_copy_only=False), dtype=np.float64)
    x = base.preprocessor.transform(window)
    with torch.no_grad():
        old = base.module()(torch.from_numpy(x)).numpy().reshape(-1)
    fitted = base.calibrator()
    if fitted is not None:
        old = fitted.apply(old)
    new = score(x)
    before = evaluate.evaluate(y, old, classification, [metric], {}).metrics.get(metric)
    after = evaluate.evaluate(y, new, classification, [metric], {}).metrics.get(metric)
    if before is None or after is None:
        raise TrainingError(
            "ForgettingMetricUnknown",
            f"warmStart.forgettingMetric {metric} is not measured for this task",
        )
    if metric in evaluate.LOWER_IS_BETTER:
        passed, bound = after <= before + tolerance, f"<= {before:.4f} + {tolerance:g}"
    else:
        passed, bound = after >= before - tolerance, f">= {before:.4f} - {tolerance:g}"
    bound += f" ({base.describe()} on its test window, {window.num_rows} rows)"
    gate = evaluate.GateResult("forgetting", metric, float(after), bound, bool(passed))
    report = {
        "metric": metric,
        "tolerance": tolerance,
        "rows": window.num_rows,
        "base": float(before),
        "new": float(after),
        "delta": float(after - before),
        "passed": bool(passed),
    }
    return gate, report


def from_scratch(base: Base) -> dict[str, Any]:
    """The from-scratch run a chain of warm starts began with: its version, epochs and
    rows seen (and seconds, when the index has them)."""
    earlier = base.card.get("warmStart")
    if earlier:
        found: dict[str, Any] = earlier["fromScratch"]
        return found
    epochs = int(base.card["config"]["epochsRun"])
    rows = int(base.card["lineage"]["split"]["trainAfterResampling"])
    return {
        "version": base.version,
        "epochs": epochs,
        "rowsSeen": epochs * rows,
        "seconds": base.train_seconds,
    }


def compute(base: Base, epochs_run: int, rows: int) -> dict[str, Any]:
    """Epochs and rows seen by this warm start against the from-scratch reference."""
    scratch = from_scratch(base)
    seen = epochs_run * rows
    return {
        "epochsRun": epochs_run,
        "rowsSeen": seen,
        "fromScratch": scratch,
        "epochsSaved": scratch["epochs"] - epochs_run,
        "rowsSeenRatio": round(seen / scratch["rowsSeen"], 6) if scratch["rowsSeen"] else None,
    }
