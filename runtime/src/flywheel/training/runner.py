"""The TrainingJob entrypoint: training set -> Ray Train -> evaluation -> gates -> registry.

`run_trainingjob` is what `flywheel run` calls in-process and what `flywheel train run`
(a RayJob's entrypoint in a cluster) calls. A known failure (`TrainingError`) ends the
job `Failed` with its reason and message and registers nothing; a failed gate records
the version as rejected, with the numbers, and gives it no alias.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from flywheel.api import conditions
from flywheel.api.driftmonitor import DriftEvent
from flywheel.api.trainingjob import (
    CalibrationMethod,
    ClassWeights,
    Loss,
    Resampling,
    TrainingJob,
    TrainingJobStatus,
)
from flywheel.entrypoints import RunContext
from flywheel.features import artifact, calibration
from flywheel.features.preprocess import CATEGORICAL, HASHED, Preprocessor
from flywheel.storage import publish
from flywheel.storage.uris import Location
from flywheel.training import (
    card,
    cluster,
    evaluate,
    export,
    imbalance,
    loop,
    models,
    perturb,
    quantize,
    registry,
    trainset,
    warmstart,
)
from flywheel.training.errors import TrainingError

SUCCEEDED = "Succeeded"
GATE_FAILED = "GateFailed"
CODE_VERSION = "flywheel 0.1.0"


@dataclasses.dataclass(frozen=True)
class Trained:
    model: torch.nn.Module
    preprocessor: Preprocessor
    classification: bool
    evaluation: evaluate.Evaluation
    state: dict[str, Any]
    resumed_from: int
    lineage: dict[str, Any]
    note: str
    calibrator: calibration.Calibrator | None = None
    # Reliability on the test split before and after calibration (when there is one).
    calibration_report: dict[str, Any] | None = None
    sensitivity: dict[str, Any] | None = None  # evaluation.perturbation's flip rates
    test_window: Any = None  # pa.Table: the raw test rows, kept for a later forgetting check
    # spec.warmStart: the base, compute against from scratch, and the forgetting check.
    warm_start: dict[str, Any] | None = None
    forgetting_gate: evaluate.GateResult | None = None
    train_seconds: float | None = None
    # spec.quantization: the int8 TorchScript, the card's comparison, its gate and latency.
    int8: bytes | None = None
    quantization: dict[str, Any] | None = None
    quantization_gate: evaluate.GateResult | None = None
    quantization_latency: dict[str, Any] | None = None
    # The training split's raw feature columns (a seeded sample past REFERENCE_ROWS): what
    # a DriftMonitor with `reference.servingVersion` compares live traffic with.
    training_reference: Any = None
    # notWorseThanDeployed's figure for the deployed version (`_baseline`), or None.
    baseline: dict[str, Any] | None = None


def run_storage(job: TrainingJob, context: RunContext) -> Path:
    """Where Ray Train keeps this job's checkpoints (one run per generation)."""
    namespace = job.metadata.namespace or context.namespace
    return context.artifact_root / "training" / namespace / job.name


def run_name(job: TrainingJob, lineage: dict[str, Any], base: str | None = None) -> str:
    """One Ray Train run per generation and training data: a rerun on the same data
    continues its checkpoints; new data (a new Dataset or feature version) starts afresh.

    Epochs, gates, calibration and the output are left out, so asking for more epochs
    continues a run. A warm start counts by the version it resolved (`base`), as an alias
    or a deployment names another version over time.
    """
    spec = job.spec.to_wire()
    spec["hyperparameters"].pop("epochs", None)
    spec.pop("evaluation", None)
    spec.pop("output", None)
    spec.pop("calibration", None)  # fitted after the loop, on its result
    spec.pop("warmStart", None)
    data = [lineage["labels"], [v.get("offlineVersion") for v in lineage["featureViews"]]]
    if base is not None:
        data.append(base)
    text = json.dumps({"spec": spec, "data": data}, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"generation-{job.metadata.generation or 0}-{digest}"


def run_trainingjob(
    job: TrainingJob,
    context: RunContext,
    now: datetime | None = None,
    checkpoint: publish.Checkpoint = publish.no_checkpoint,
) -> TrainingJobStatus:
    started = now or datetime.now(UTC)
    status = TrainingJobStatus(
        observed_generation=job.metadata.generation,
        start_time=started,
        model_name=job.spec.output.model_name,
    )
    try:
        trained = train(job, context, _reporter(job, context, started))
    except TrainingError as exc:
        return _failed(status, exc.reason, str(exc), started)
    return publish_version(job, context, trained, status, started, checkpoint)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """The training set made ready for the loop: split, preprocessed, checked."""

    ts: trainset.TrainingSet
    parts: trainset.Split
    preprocessor: Preprocessor
    x: Any  # float32 [rows, width], every row of ts.table
    classification: bool


def prepare(
    job: TrainingJob, ts: trainset.TrainingSet, kept: Preprocessor | None = None
) -> Prepared:
    """Split, check the label, and fit the preprocessing on the training rows only (or
    keep a warm start's, `kept`, so the base's weights see the inputs they learnt)."""
    spec = job.spec
    parts = split_of(job, ts)
    y_train = trainset.label_values(ts, parts.train)
    if len(np.unique(y_train)) < 2:
        raise TrainingError(
            "ConstantLabel",
            f"the label column {ts.label!r} has the single value {y_train[0]:g} in all "
            f"{len(y_train)} training rows; nothing to learn",
        )
    all_labels = trainset.label_values(ts, np.arange(ts.table.num_rows))
    classification = bool(np.isin(all_labels, (0.0, 1.0)).all())
    missing = [c for c in spec.evaluation.slice_columns if c not in ts.table.column_names]
    if missing:
        raise TrainingError(
            "SliceColumnMissing",
            f"sliceColumns {missing} are not columns of the training set ({ts.table.column_names})",
        )
    if not classification:
        _refuse_for_regression(job, ts.label)
    train_rows = ts.table.take(pa.array(parts.train))
    hashed = {h.name: h.buckets for h in spec.preprocessing.hashed}
    pre = kept or Preprocessor.fit(train_rows, ts.features, hashed)
    for name in hashed:
        if name not in ts.features:
            raise TrainingError(
                "HashedFeatureUnknown",
                f"preprocessing.hashed names {name!r}, not a feature of the training set "
                f"({ts.features})",
            )
        if Preprocessor.fit(train_rows, [name]).columns[0].kind != CATEGORICAL:
            raise TrainingError(
                "HashedFeatureNotCategorical",
                f"preprocessing.hashed names {name!r}, a numeric feature: hash categories "
                "only (remove it from preprocessing.hashed)",
            )
    if spec.evaluation.perturbation is not None:
        if not classification:
            raise TrainingError(
                "NeedsClassLabel",
                f"evaluation.perturbation counts class flips and needs a 0/1 label; "
                f"{ts.label!r} has other values: remove it",
            )
        perturb.check(spec.evaluation.perturbation, ts.features, categorical_features(pre))
    return Prepared(ts, parts, pre, pre.transform(ts.table), classification)


def categorical_features(pre: Preprocessor) -> list[str]:
    return [c.name for c in pre.columns if c.kind in (CATEGORICAL, HASHED)]


def split_of(job: TrainingJob, ts: trainset.TrainingSet) -> trainset.Split:
    s = job.spec.split
    return trainset.split(ts, s.strategy, s.test_fraction, s.seed, s.stratify)


def _refuse_for_regression(job: TrainingJob, label: str) -> None:
    """Imbalance and calibration settings mean nothing for a numeric label: say so."""
    spec = job.spec
    asked = [
        name
        for name, on in (
            ("imbalance.classWeights", spec.imbalance.class_weights != ClassWeights.NONE),
            ("imbalance.loss", spec.imbalance.loss != Loss.CROSS_ENTROPY),
            ("imbalance.resampling", spec.imbalance.resampling != Resampling.NONE),
            ("calibration.method", spec.calibration.method != CalibrationMethod.NONE),
        )
        if on
    ]
    if asked:
        raise TrainingError(
            "NeedsClassLabel",
            f"{', '.join(asked)} need a 0/1 label; {label!r} has other values (a "
            "regression): remove them",
        )


def train(job: TrainingJob, context: RunContext, progress: loop.Progress | None) -> Trained:
    spec = job.spec
    ts = trainset.load(job, context)
    base = None
    if spec.warm_start is not None:
        base = warmstart.resolve(job, context, run_storage(job, context))
    p = prepare(job, ts, base.preprocessor if base else None)
    parts, pre, x, classification, table = p.parts, p.preprocessor, p.x, p.classification, ts.table
    built = models.build(spec.model, pre.width)  # fail before Ray on a model that cannot train
    if base is not None:
        warmstart.check(base, spec.model, ts.features, built)
    imb = spec.imbalance
    y_fit = trainset.label_values(ts, parts.train)
    # Resampling and weights see the training rows only; validation and test stay as is.
    fit_rows = parts.train
    if classification:
        fit_rows = imbalance.resample(
            parts.train, y_fit, imb.resampling, imb.target_ratio, spec.split.seed
        )
    data = loop.Arrays(
        x[fit_rows],
        trainset.label_values(ts, fit_rows).astype(np.float32),
        x[parts.validation],
        trainset.label_values(ts, parts.validation).astype(np.float32),
    )
    h = spec.hyperparameters
    cfg = loop.LoopConfig(
        model=spec.model.to_wire(),
        n_inputs=pre.width,
        classification=classification,
        epochs=h.epochs,
        batch_size=h.batch_size,
        learning_rate=h.learning_rate,
        weight_decay=h.weight_decay,
        optimizer=str(h.optimizer),
        patience=h.early_stopping_patience,
        seed=spec.split.seed,
        pos_weight=imbalance.positive_weight(data.y_train, imb.class_weights),
        focal_gamma=(imb.focal_gamma or imbalance.DEFAULT_FOCAL_GAMMA)
        if imb.loss == Loss.FOCAL
        else None,
        initial_state=base.weights if base else None,
    )
    cluster.ensure_ray()
    worker = spec.scaling.resources_per_worker
    where = loop.placement(spec.scaling.num_workers, cpu_quantity(worker.cpu), worker.gpu)
    name = run_name(job, ts.lineage, base.describe() if base else None)
    clock = time.perf_counter()
    state, resumed_from = loop.fit(cfg, data, where, run_storage(job, context), name, progress)
    seconds = time.perf_counter() - clock
    if state.get("nan_epoch"):
        last = state["history"][-1]
        raise TrainingError(
            "NaNLoss",
            f"the loss became {last['loss']:g} (validation {last['val_loss']:g}) in epoch "
            f"{state['nan_epoch']}; lower hyperparameters.learningRate "
            f"({h.learning_rate:g}) or check the features for extreme values",
        )
    model = models.build(spec.model, pre.width)
    model.load_state_dict(state["best_state"] or state["model"])
    serving = models.Serving(model, classification).eval()
    with torch.no_grad():
        scores = serving(torch.from_numpy(x[parts.test])).numpy().reshape(-1)
    y_test = trainset.label_values(ts, parts.test)
    calibrator, report = None, None
    if spec.calibration.method != CalibrationMethod.NONE:
        with torch.no_grad():
            p_val = serving(torch.from_numpy(x[parts.validation])).numpy().reshape(-1)
        calibrator, report, scores = _calibrate(
            str(spec.calibration.method), p_val, data.y_val, y_test, scores
        )
    test_rows = table.take(pa.array(parts.test))
    slices = {c: test_rows[c].to_pylist() for c in spec.evaluation.slice_columns}
    wanted = [str(m) for m in spec.evaluation.metrics]
    result = evaluate.evaluate(y_test, scores, classification, wanted, slices)
    if report is not None:
        result.metrics["ece_uncalibrated"] = report["before"]["ece"]
    sensitivity = None
    if spec.evaluation.perturbation is not None:

        def score(rows: Any) -> Any:
            with torch.no_grad():
                p = serving(torch.from_numpy(pre.transform(rows))).numpy().reshape(-1)
            return calibrator.apply(p) if calibrator is not None else p

        sensitivity = perturb.sensitivity(
            score, test_rows, categorical_features(pre), spec.evaluation.perturbation
        )
        result.metrics["flip_rate"] = sensitivity["flipRate"]
    warm, forgetting_gate = None, None
    if base is not None:
        assert spec.warm_start is not None

        def served(rows_x: Any) -> Any:
            with torch.no_grad():
                p = serving(torch.from_numpy(rows_x)).numpy().reshape(-1)
            return calibrator.apply(p) if calibrator is not None else p

        metric = str(spec.warm_start.forgetting_metric or result.primary)
        forgetting_gate, checked = warmstart.forgetting(
            base, served, classification, metric, spec.warm_start.forgetting_tolerance
        )
        warm = {
            "base": {
                "model": base.model_name,
                "version": base.version,
                "resolvedBy": base.resolved_by,
            },
            **warmstart.compute(base, int(state["epoch"]), len(fit_rows)),
            "forgetting": checked,
        }
    int8 = None
    if spec.quantization is not None:
        int8 = _quantized(spec.quantization, serving, pre.width, x[parts.test], calibrator)
        after = evaluate.evaluate(y_test, int8[1], classification, wanted, slices).metrics
        before = {k: v for k, v in result.metrics.items() if k in after}
        metric = str(spec.quantization.metric or result.primary)
        int8_gate, int8_report = quantize.compare(
            int8[2], len(int8[0]), before, after, metric, spec.quantization.max_metric_drop
        )
    lineage = {
        **ts.lineage,
        "trainingJob": job.name,
        "namespace": job.metadata.namespace or context.namespace,
        "generation": job.metadata.generation,
        "code": CODE_VERSION,
        **_cause(job),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "split": {
            "strategy": str(spec.split.strategy),
            "stratified": spec.split.stratify,
            "train": len(parts.train),
            "trainAfterResampling": len(fit_rows),
            "trainPositiveShare": float(data.y_train.mean()) if classification else None,
            "validation": len(parts.validation),
            "test": len(parts.test),
        },
    }
    return Trained(
        serving,
        pre,
        classification,
        result,
        state,
        resumed_from,
        lineage,
        where.note,
        calibrator,
        report,
        sensitivity,
        test_rows,
        warm,
        forgetting_gate,
        seconds if state["epoch"] > resumed_from else None,
        int8[0] if int8 else None,
        int8_report if int8 else None,
        int8_gate if int8 else None,
        int8[3] if int8 else None,
        training_reference=training_reference(table, ts.features, parts.train, spec.split.seed),
        baseline=_baseline(job, context, test_rows, y_test, classification),
    )


def training_reference(table: Any, features: list[str], rows: Any, seed: int) -> Any:
    """The training rows' features as the model received them (before preprocessing), at
    most REFERENCE_ROWS of them: a uniform sample keeps every distribution a drift test
    reads, and bounds the file for any training set."""
    rows = np.asarray(rows)
    if len(rows) > registry.REFERENCE_ROWS:
        rows = np.sort(
            np.random.default_rng(seed).choice(rows, registry.REFERENCE_ROWS, replace=False)
        )
    return table.select(features).take(pa.array(rows))


def _quantized(
    spec: Any, serving: torch.nn.Module, width: int, x_test: Any, calibrator: Any
) -> tuple[bytes, Any, int, dict[str, Any]]:
    """The int8 TorchScript, its (calibrated) test scores, the float TorchScript's size,
    and one-row latency of both TorchScript copies (the same runtime, so a fair ratio)."""
    float_bytes = quantize.script(serving, width)
    int8_bytes = quantize.script(quantize.quantize(serving), width)
    int8_module = quantize.load(int8_bytes)
    with torch.no_grad():
        scores = int8_module(torch.from_numpy(x_test)).numpy().reshape(-1)
    if calibrator is not None:
        scores = calibrator.apply(scores)
    before = quantize.latency(quantize.load(float_bytes), x_test)
    after = quantize.latency(int8_module, x_test)
    timing = {"float": before, "int8": after, "p50Ratio": after["p50"] / before["p50"]}
    return int8_bytes, scores, len(float_bytes), timing


def _calibrate(
    method: str, p_val: Any, y_val: Any, y_test: Any, p_test: Any
) -> tuple[calibration.Calibrator, dict[str, Any], Any]:
    """Fit on the validation rows; measure reliability on the test rows before and after."""
    try:
        fitted = calibration.fit(p_val, y_val, method)
    except ValueError as exc:
        raise TrainingError(
            "CalibrationFailed",
            f"calibration.method {method}: {exc}; use more rows or split.stratify",
        ) from None
    after = fitted.apply(p_test)
    ece_before, bins_before = evaluate.reliability(y_test, p_test)
    ece_after, bins_after = evaluate.reliability(y_test, after)
    report = {
        "method": method,
        "fittedOn": "validation",
        "validationRows": len(p_val),
        "parameters": fitted.to_json(),
        "before": {"ece": ece_before, "bins": bins_before},
        "after": {"ece": ece_after, "bins": bins_after},
    }
    return fitted, report, after


def evaluate_version(
    job: TrainingJob, context: RunContext, version: str | None = None
) -> dict[str, Any]:
    """A registered version's metrics on this job's test split, recomputed from its
    exported module and preprocessing alone."""
    spec = job.spec
    root = registry.model_root(job, context)
    version = version or registry.alias(root, registry.CHAMPION)
    if version is None:
        raise SystemExit(f"error: model {spec.output.model_name!r} has no registered version")
    where = registry.version_location(root, version)
    local = Path(where.path)
    pre = Preprocessor.from_json(json.loads((local / artifact.PREPROCESSING_FILE).read_text()))
    task = json.loads((local / artifact.SIGNATURE_FILE).read_text())["task"]
    module = export.load(local / export.MODEL_FILE)
    ts = trainset.load(job, context)
    parts = split_of(job, ts)
    test_rows = ts.table.take(pa.array(parts.test))
    scores = exported_scores(module, pre.transform(test_rows)).reshape(-1)
    calibrated = local / artifact.CALIBRATION_FILE
    if calibrated.is_file():
        scores = calibration.Calibrator.from_json(json.loads(calibrated.read_text())).apply(scores)
    slices = {c: test_rows[c].to_pylist() for c in spec.evaluation.slice_columns}
    found = evaluate.evaluate(
        trainset.label_values(ts, parts.test),
        scores,
        task == "classification",
        [str(m) for m in spec.evaluation.metrics],
        slices,
    )
    return {"model": spec.output.model_name, "version": version, **dataclasses.asdict(found)}


def publish_version(
    job: TrainingJob,
    context: RunContext,
    trained: Trained,
    status: TrainingJobStatus,
    started: datetime,
    checkpoint: publish.Checkpoint,
) -> TrainingJobStatus:
    spec = job.spec
    root = registry.model_root(job, context)
    result = trained.evaluation
    gates = evaluate.check_gates(result.metrics, spec.evaluation.gates, trained.baseline)
    if trained.forgetting_gate is not None:
        gates.append(trained.forgetting_gate)
    if trained.quantization_gate is not None:
        gates.append(trained.quantization_gate)
    status.metrics = {k: round(v, 6) for k, v in result.metrics.items() if np.isfinite(v)}
    status.primary_metric = f"{result.primary}={result.metrics[result.primary]:.4f}"
    epochs = trained.state["epoch"]
    status.progress = f"epoch {epochs}/{spec.hyperparameters.epochs}" + (
        " (stopped early)" if trained.state.get("stopped_early") else ""
    )
    entry: dict[str, Any] = {
        "model": spec.output.model_name,
        "trainingJob": job.name,
        "generation": job.metadata.generation,
        "metrics": status.metrics,
        "primaryMetric": status.primary_metric,
        "gates": [g.to_json() for g in gates],
    }
    if trained.train_seconds is not None:
        entry["trainSeconds"] = round(trained.train_seconds, 3)
    if trained.quantization_latency is not None:
        entry["quantizationLatency"] = trained.quantization_latency
    warm = trained.warm_start
    if warm is not None:
        status.warm_started_from = f"{warm['base']['model']}:{warm['base']['version']}"
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp)
        _write_version(local, job, trained, gates)
        failed = [g for g in gates if not g.passed]
        if failed:
            version = registry.reject(root, local, entry, now)
            status.model_version = version
            message = f"version {version} rejected: " + "; ".join(g.describe() for g in failed)
            return _failed(status, GATE_FAILED, message, started)
        version, location, aliases = registry.register(root, local, entry, now, checkpoint)
    status.model_version = version
    status.aliases = sorted(aliases)
    status.artifact_uri = location.uri
    status.model_card_uri = location.join(card.CARD_HTML).uri
    status.completion_time = datetime.now(UTC)
    status.phase = SUCCEEDED
    given = ", ".join(aliases) or "no new alias"
    resumed = f"; resumed after epoch {trained.resumed_from}" if trained.resumed_from else ""
    note = f"; {trained.note}" if trained.note else ""
    if warm is not None:
        note += "; " + warm_note(warm, trained.train_seconds)
    if trained.quantization is not None and trained.quantization_latency is not None:
        note += (
            f"; serves int8: size x{trained.quantization['sizeRatio']:.2f}, one-row p50 "
            f"latency x{trained.quantization_latency['p50Ratio']:.2f}"
        )
    compared = [g for g in gates if g.comparison is not None]
    if compared:
        note += "; " + deployed_note(compared[0])
    status.conditions = conditions.set_condition(
        [],
        SUCCEEDED,
        True,
        "Trained",
        f"model {spec.output.model_name} version {version} ({given}); "
        f"{status.primary_metric}{resumed}{note}",
        status.completion_time,
        job.metadata.generation,
    )
    return status


def _write_version(
    local: Path, job: TrainingJob, trained: Trained, gates: list[evaluate.GateResult]
) -> None:
    spec = job.spec
    pre = trained.preprocessor
    gpu = spec.scaling.resources_per_worker.gpu > 0
    export.export(trained.model, pre.width, local, spec.output.model_name, gpu, trained.calibrator)
    result = trained.evaluation
    registry.write_json(local / artifact.PREPROCESSING_FILE, pre.to_json())
    if trained.calibrator is not None:
        registry.write_json(local / artifact.CALIBRATION_FILE, trained.calibrator.to_json())
    registry.write_json(
        local / artifact.SIGNATURE_FILE,
        {
            **export.signature(pre.width, pre.output_names(), trained.classification),
            "task": "classification" if trained.classification else "regression",
            "features": [c.name for c in pre.columns],
            "label": spec.label.column,
        },
    )
    metrics = {
        "metrics": result.metrics,
        "primaryMetric": result.primary,
        "calibration": result.calibration,
        "slices": result.slices,
        "classes": result.classes,
        "calibrationFix": trained.calibration_report,
        "perturbation": trained.sensitivity,
        "warmStart": trained.warm_start,
        "quantization": trained.quantization,
        "testRows": result.rows,
        "gates": [g.to_json() for g in gates],
        "history": trained.state["history"],
    }
    registry.write_json(local / "metrics.json", metrics)
    registry.write_json(local / "lineage.json", trained.lineage)
    if trained.test_window is not None:
        pq.write_table(trained.test_window, local / warmstart.TEST_WINDOW)
    if trained.training_reference is not None:
        pq.write_table(trained.training_reference, local / registry.TRAINING_REFERENCE)
    if trained.int8 is not None:
        (local / quantize.INT8_FILE).write_bytes(trained.int8)
        registry.write_json(
            local / artifact.QUANTIZATION_FILE, {"mode": "dynamicInt8", "serve": quantize.INT8_FILE}
        )
    config = spec.to_wire()
    registry.write_json(local / "config.json", config)
    card.write(
        local,
        {
            "model": spec.output.model_name,
            "trainingJob": job.name,
            "task": "classification" if trained.classification else "regression",
            "intendedUse": (
                f"Predicts {spec.label.column!r} for one "
                f"{'/'.join(spec.label.entity_columns)} from the features of "
                f"{', '.join(r.name for r in spec.feature_view_refs)} as of the prediction "
                "time."
            ),
            "evaluation": {
                "metrics": result.metrics,
                "primaryMetric": result.primary,
                "calibration": result.calibration,
                "slices": result.slices,
                "classes": result.classes,
                "calibrationFix": trained.calibration_report,
                "perturbation": trained.sensitivity,
                "rows": result.rows,
            },
            "warmStart": trained.warm_start,
            "quantization": trained.quantization,
            "gates": [g.to_json() for g in gates],
            "cause": trained.lineage.get("driftEvent"),
            "lineage": trained.lineage,
            "config": {
                "model": spec.model.to_wire(),
                "hyperparameters": spec.hyperparameters.to_wire(),
                "scaling": spec.scaling.to_wire(),
                "split": spec.split.to_wire(),
                "imbalance": spec.imbalance.to_wire(),
                "preprocessing": spec.preprocessing.to_wire(),
                "calibration": spec.calibration.to_wire(),
                "epochsRun": trained.state["epoch"],
                "bestEpoch": trained.state.get("best_epoch"),
                "stoppedEarly": trained.state.get("stopped_early", False),
            },
        },
    )


def _cause(job: TrainingJob) -> dict[str, Any]:
    """The drift event that caused this training, for lineage and the model card: a
    DriftMonitor's retrain names it in an annotation."""
    event = DriftEvent.from_annotations(job.metadata.annotations)
    return {"driftEvent": event.to_wire()} if event is not None else {}


def _baseline(
    job: TrainingJob, context: RunContext, test_rows: Any, y_test: Any, classification: bool
) -> dict[str, Any] | None:
    """The deployed version's figure for notWorseThanDeployed, measured on this job's test
    rows, so that both versions are compared on the same labels.

    The deployed version scores them as its model server would (its own preprocessing,
    calibration and quantized copy). When it cannot (its features are not in this training
    set, another label or task), the registry's figure from the version's own test split
    stands in, and `fallback` says why.
    """
    gate = job.spec.evaluation.not_worse_than_deployed
    if gate is None:
        return None
    root = registry.model_root(job, context)
    version = warmstart.served_version(context, gate.deployment_ref.name)
    version = version or registry.alias(root, registry.CHAMPION)
    if version is None:
        return None  # nothing deployed yet: nothing to be worse than
    metric = str(gate.metric)
    recorded = (registry.version_metrics(root, version) or {}).get(metric)
    where = registry.version_location(root, version)
    scored = _score_deployed(
        where, job.spec.label.column, metric, test_rows, y_test, classification
    )
    if isinstance(scored, str) and recorded is None:
        return None  # neither a figure on these rows nor a registered one
    found = {
        "metric": metric,
        "tolerance": gate.tolerance,
        "version": version,
        "registryValue": recorded,
    }
    if isinstance(scored, str):
        return {**found, "value": recorded, "rows": None, "fallback": scored}
    return {**found, "value": scored, "rows": len(y_test), "fallback": None}


def _score_deployed(
    where: Location, label: str, metric: str, rows: Any, y: Any, classification: bool
) -> float | str:
    """The version under `where` scored on `rows` as its model server scores them: its
    `metric`, or why it cannot score them."""
    signature = artifact.signature(where)
    theirs = signature.get("label")
    if theirs is not None and theirs != label:
        return f"it predicts {theirs!r}, this job {label!r}"
    task = signature.get("task")
    if task is not None and (task == "classification") != classification:
        return f"it is a {task} model and this job's label {label!r} is not"
    pre = artifact.preprocessor(where)
    if pre is None:
        return f"its artifact at {where.uri} has no {artifact.PREPROCESSING_FILE}"
    missing = [c.name for c in pre.columns if c.name not in rows.column_names]
    if missing:
        return f"its features {missing} are not in this training set"
    try:
        x = pre.transform(rows)
    except (ValueError, TypeError, KeyError) as exc:
        return f"its preprocessing cannot read these rows ({exc})"
    try:
        module = artifact.load_module(where)
    except (OSError, RuntimeError) as exc:
        return f"its model at {where.uri} does not load ({exc})"
    try:
        scores = exported_scores(module, x).astype(np.float64)
    except (RuntimeError, AssertionError) as exc:  # an exported program's guard says why
        return f"its model cannot score these rows ({exc})"
    if scores.ndim > 1 and scores.shape[1] != 1:
        return f"it returns {scores.shape[1]} scores a row, this job one"
    scores = scores.reshape(-1)
    calibrator = artifact.calibrator(where)
    if calibrator is not None:
        scores = calibrator.apply(scores)
    found = evaluate.evaluate(y, scores, classification, [metric], {}).metrics
    value = found.get(metric)
    if value is None or not np.isfinite(value):
        return f"its {metric} on these rows is undefined"
    return float(value)


def exported_scores(module: Any, x: Any) -> Any:
    """The module's output for the rows of `x`, in batches its exported program accepts
    (at most export.MAX_BATCH_SIZE rows a call)."""
    size = export.MAX_BATCH_SIZE
    with torch.inference_mode():
        parts = [module(torch.from_numpy(x[i : i + size])).numpy() for i in range(0, len(x), size)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float32)


def _failed(
    status: TrainingJobStatus, reason: str, message: str, started: datetime
) -> TrainingJobStatus:
    status.phase = "Failed"
    status.completion_time = datetime.now(UTC)
    status.conditions = conditions.set_condition(
        [], SUCCEEDED, False, reason, message, status.completion_time, status.observed_generation
    )
    return status


def deployed_note(gate: evaluate.GateResult) -> str:
    """The status message's account of notWorseThanDeployed.

    >>> g = evaluate.GateResult("notWorseThanDeployed", "auc", 0.81, ">= 0.6400 - 0.01",
    ...     True, {"deployedVersion": "2", "deployedValue": 0.64, "rows": 300,
    ...     "sameRows": True, "fallback": None})
    >>> deployed_note(g)
    'auc 0.8100 against deployed version 2: 0.6400 on the same 300 test rows'
    """
    found = gate.comparison or {}
    deployed = found.get("deployedValue")
    text = (
        f"{gate.metric} {_figure(gate.value)} against deployed version "
        f"{found.get('deployedVersion')}: {_figure(deployed)}"
    )
    if found.get("sameRows"):
        return f"{text} on the same {found.get('rows')} test rows"
    return f"{text} (its registry figure; {found.get('fallback')})"


def _figure(value: float | None) -> str:
    return "missing" if value is None else f"{value:.4f}"


def warm_note(warm: dict[str, Any], seconds: float | None) -> str:
    """The status message's account of a warm start.

    >>> warm_note({"base": {"model": "m", "version": "v1"}, "epochsRun": 2,
    ...            "fromScratch": {"epochs": 8, "seconds": 4.0}}, 1.0)
    'warm start from m:v1: 2 epochs (8 from scratch), 1.0s (4.0s from scratch)'
    """
    scratch = warm["fromScratch"]
    text = (
        f"warm start from {warm['base']['model']}:{warm['base']['version']}: "
        f"{warm['epochsRun']} epochs ({scratch['epochs']} from scratch)"
    )
    if seconds is not None and scratch.get("seconds") is not None:
        text += f", {seconds:.1f}s ({scratch['seconds']:.1f}s from scratch)"
    return text


def cpu_quantity(value: str) -> float:
    """A Kubernetes CPU quantity as cores.

    >>> cpu_quantity("500m"), cpu_quantity("2")
    (0.5, 2.0)
    """
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _reporter(job: TrainingJob, context: RunContext, started: datetime) -> loop.Progress | None:
    report = context.progress
    if report is None:
        return None
    clock = time.monotonic()

    def on_epoch(metrics: dict[str, Any]) -> None:
        report(job.key, {**metrics, "elapsed": time.monotonic() - clock})

    return on_epoch
