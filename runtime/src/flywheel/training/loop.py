"""The training loop, run by every Ray Train worker (`TorchTrainer`), and its driver.

    fit() ── TorchTrainer(worker_loop, numWorkers x {CPU, GPU}) ──► worker_loop on each rank
       ▲                                                             │ shard rank::world
       └── progress queue ◄── rank 0: epoch, loss, val_loss ◄────────┘ checkpoint (timed)

Each epoch every rank trains on its shard of a permutation seeded by (seed, epoch), DDP
averages the gradients, and every rank computes the same validation loss (the validation
rows are small and the parameters identical), so early stopping and a non-finite loss
stop all ranks together. Rank 0 sends progress after every epoch and checkpoints into the
run's storage after the last epoch and after any epoch ending CHECKPOINT_INTERVAL_S or more
after the previous checkpoint; a rerun with the same storage and name continues from the
last checkpoint, and a run whose last checkpoint is final is not trained again.

`run_loop` takes a `Session`, so the same loop runs in one process without Ray (the
benchmark's baseline, and tests of the loop itself).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from flywheel.api.trainingjob import ModelSpec, Optimizer
from flywheel.training import imbalance, models
from flywheel.training.errors import TrainingError

STATE_FILE = "state.pt"
# A checkpoint is taken when an epoch ends at least this long after the last one, and
# always after the last epoch: a rerun loses at most this much training, and epochs of
# milliseconds do not pay for a checkpoint (and Ray Train's report) each.
CHECKPOINT_INTERVAL_S = 10.0
Progress = Callable[[dict[str, Any]], None]


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    model: dict[str, Any]  # ModelSpec, as wire JSON (workers rebuild the model)
    n_inputs: int
    classification: bool
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    optimizer: str
    patience: int | None
    seed: int
    pos_weight: float = 1.0  # class weights: a positive row's loss weight (imbalance.py)
    focal_gamma: float | None = None  # the focal loss's gamma; None: plain cross-entropy
    # A warm start's weights (the base version's state_dict); None: fresh initialisation.
    initial_state: dict[str, Any] | None = None
    checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S


@dataclasses.dataclass(frozen=True)
class Arrays:
    x_train: Any
    y_train: Any
    x_val: Any
    y_val: Any


@dataclasses.dataclass(frozen=True)
class FitResult:
    state_dict: dict[str, Any]  # the best epoch's weights (lowest validation loss)
    history: list[dict[str, Any]]
    epochs_run: int  # epochs trained by this call (0 when the run was already final)
    resumed_from: int  # epochs done before this call
    stopped_early: bool
    best_epoch: int


class Session(Protocol):
    rank: int
    world: int

    def prepare(self, model: nn.Module) -> nn.Module: ...
    def restore(self) -> dict[str, Any] | None: ...
    def report(self, metrics: dict[str, Any], state: dict[str, Any], checkpoint: bool) -> None: ...
    def all_mean(self, value: float) -> float: ...
    def agree(self, decision: bool) -> bool: ...


def run_loop(cfg: LoopConfig, data: Arrays, session: Session) -> dict[str, Any]:
    """Train; returns the final state (as checkpointed)."""
    torch.manual_seed(cfg.seed)
    model = models.build(ModelSpec.model_validate(cfg.model), cfg.n_inputs)
    if cfg.initial_state is not None:
        model.load_state_dict(cfg.initial_state)
    torch.manual_seed(cfg.seed + 1 + session.rank)  # dropout differs per rank, reproducibly
    optimizer = _optimizer(cfg, model)
    state = session.restore() or {
        "epoch": 0,
        "best_loss": math.inf,
        "best_epoch": -1,
        "best_state": None,
        "bad_epochs": 0,
        "history": [],
        "done": False,
        "stopped_early": False,
    }
    state["done"] = finished(state, cfg.epochs)
    if state.get("model") is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    wrapped = session.prepare(model)
    loss_fn = _loss(cfg)
    x = torch.from_numpy(data.x_train)
    y = torch.from_numpy(data.y_train).float().reshape(-1, 1)
    xv = torch.from_numpy(data.x_val)
    yv = torch.from_numpy(data.y_val).float().reshape(-1, 1)
    last_checkpoint = time.monotonic()
    while not state["done"] and state["epoch"] < cfg.epochs:
        epoch = state["epoch"]
        started, cpu_started = time.perf_counter(), time.thread_time()
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(y))
        shard = torch.from_numpy(order[session.rank :: session.world])
        # Every rank runs the same number of steps, or DDP's all-reduce would wait forever.
        steps = math.ceil(len(order) // session.world / cfg.batch_size) or 1
        wrapped.train()
        total, seen = 0.0, 0
        for step in range(steps):
            rows = shard[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(wrapped(x[rows]).reshape(-1, 1), y[rows])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(rows)
            seen += len(rows)
        train_loss = session.all_mean(total / max(seen, 1))
        wrapped.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(model(xv).reshape(-1, 1), yv))
        finite = math.isfinite(train_loss) and math.isfinite(val_loss)
        record = {"epoch": epoch + 1, "loss": train_loss, "val_loss": val_loss}
        state["history"].append(record)
        state["epoch"] = epoch + 1
        if not finite:
            state["done"] = True
            state["nan_epoch"] = epoch + 1
        elif val_loss < state["best_loss"]:
            state["best_loss"] = val_loss
            state["best_epoch"] = epoch + 1
            state["best_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            state["bad_epochs"] = 0
        else:
            state["bad_epochs"] += 1
            if cfg.patience is not None and state["bad_epochs"] >= cfg.patience:
                state["done"] = True
                state["stopped_early"] = True
        if state["epoch"] >= cfg.epochs:
            state["done"] = True
        state["model"] = model.state_dict()
        state["optimizer"] = optimizer.state_dict()
        # Seconds go to progress only: the history is part of the version's content.
        seconds = time.perf_counter() - started
        cpu_seconds = time.thread_time() - cpu_started
        # Every rank checkpoints in the same epochs (Ray Train's report is collective):
        # rank 0's clock decides.
        due = session.agree(
            state["done"] or time.monotonic() - last_checkpoint >= cfg.checkpoint_interval_s
        )
        if due:
            last_checkpoint = time.monotonic()
        session.report(
            {
                **record,
                "epochs": cfg.epochs,
                "done": state["done"],
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
            },
            state,
            checkpoint=due,
        )
    return state


def finished(state: dict[str, Any], epochs: int) -> bool:
    """Whether a checkpointed run has nothing left to do for a run of `epochs` epochs.

    A run stopped early or by a non-finite loss is final; one that ran out of epochs
    continues when asked for more.
    """
    return bool(state.get("stopped_early") or state.get("nan_epoch") or state["epoch"] >= epochs)


def _loss(cfg: LoopConfig) -> nn.Module:
    """The training loss; validation uses the same one, so early stopping ranks epochs
    by what the run optimises."""
    if not cfg.classification:
        return nn.MSELoss()
    if cfg.pos_weight == 1.0 and cfg.focal_gamma is None:
        return nn.BCEWithLogitsLoss()
    return imbalance.WeightedLoss(cfg.pos_weight, cfg.focal_gamma)


def _optimizer(cfg: LoopConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    lr, wd = cfg.learning_rate, cfg.weight_decay
    if cfg.optimizer == Optimizer.SGD:
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=0.9)
    if cfg.optimizer == Optimizer.ADAMW:
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd)


# --- one process, no Ray ----------------------------------------------------------------


class LocalSession:
    """The loop in this process: rank 0 of 1, checkpoints kept in memory."""

    rank = 0
    world = 1

    def __init__(self, on_report: Progress | None = None) -> None:
        self.on_report = on_report
        self.last: dict[str, Any] | None = None

    def prepare(self, model: nn.Module) -> nn.Module:
        return model

    def restore(self) -> dict[str, Any] | None:
        return self.last

    def report(self, metrics: dict[str, Any], state: dict[str, Any], checkpoint: bool) -> None:
        if checkpoint:
            self.last = state
        if self.on_report:
            self.on_report(metrics)

    def all_mean(self, value: float) -> float:
        return value

    def agree(self, decision: bool) -> bool:
        return decision


# --- Ray Train ------------------------------------------------------------------------


class RaySession:
    """Inside a Ray Train worker: DDP, the run's checkpoints, progress to the driver."""

    def __init__(self, progress: Any) -> None:
        import ray.train

        context = ray.train.get_context()
        self.rank = context.get_world_rank()
        self.world = context.get_world_size()
        self.progress = progress

    def prepare(self, model: nn.Module) -> nn.Module:
        import ray.train.torch

        prepared: nn.Module = ray.train.torch.prepare_model(model)
        return prepared

    def restore(self) -> dict[str, Any] | None:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as directory:
            return load_state(Path(directory))

    def report(self, metrics: dict[str, Any], state: dict[str, Any], checkpoint: bool) -> None:
        import ray.train

        if self.rank == 0 and self.progress is not None:
            self.progress.put(metrics)
        if not checkpoint:
            return
        with tempfile.TemporaryDirectory() as directory:
            saved = None
            if self.rank == 0:
                torch.save(state, os.path.join(directory, STATE_FILE))
                saved = ray.train.Checkpoint.from_directory(directory)
            ray.train.report(metrics, checkpoint=saved)

    def all_mean(self, value: float) -> float:
        if not torch.distributed.is_initialized():
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        torch.distributed.all_reduce(tensor)
        return float(tensor.item()) / float(self.world)

    def agree(self, decision: bool) -> bool:
        if not torch.distributed.is_initialized() or self.world == 1:
            return decision
        flag = torch.tensor([1 if decision else 0], dtype=torch.int64)
        torch.distributed.broadcast(flag, src=0)
        return bool(flag.item())


def worker_loop(config: dict[str, Any]) -> None:
    import ray

    data = Arrays(*ray.get(config["data"]))
    run_loop(config["loop"], data, RaySession(config.get("progress")))


def load_state(directory: Path) -> dict[str, Any]:
    state: dict[str, Any] = torch.load(directory / STATE_FILE, weights_only=False)
    return state


def latest_state(run_dir: Path) -> dict[str, Any] | None:
    """The state in the newest checkpoint of a run directory (names sort by time)."""
    found = sorted(run_dir.glob("checkpoint_*/" + STATE_FILE)) if run_dir.is_dir() else []
    return load_state(found[-1].parent) if found else None


@dataclasses.dataclass(frozen=True)
class Placement:
    num_workers: int
    cpus_per_worker: float
    gpus_per_worker: int
    note: str = ""


def placement(num_workers: int, cpus: float, gpus: int) -> Placement:
    """Fit the spec's workers into the Ray cluster this process is connected to.

    In a cluster the RayJob's workers were built from the same spec, so nothing changes;
    on a small machine the CPU share per worker shrinks instead of waiting forever.
    """
    import ray

    available = ray.cluster_resources()  # type: ignore[no-untyped-call]
    have_cpu = float(available.get("CPU", 0.0))
    have_gpu = float(available.get("GPU", 0.0))
    if gpus and have_gpu < gpus * num_workers:
        raise TrainingError(
            "GPUsUnavailable",
            f"{num_workers} worker(s) x {gpus} GPU need {gpus * num_workers} GPUs; the Ray "
            f"cluster has {have_gpu:g}",
        )
    if cpus * num_workers <= have_cpu:
        return Placement(num_workers, cpus, gpus)
    fitted = math.floor(have_cpu / num_workers * 100) / 100
    if fitted <= 0:
        raise TrainingError("CPUsUnavailable", f"the Ray cluster has {have_cpu:g} CPUs")
    note = f"{num_workers} worker(s) share {have_cpu:g} CPUs ({fitted:g} each, spec: {cpus:g})"
    return Placement(num_workers, fitted, gpus, note)


def fit(
    cfg: LoopConfig,
    data: Arrays,
    where: Placement,
    storage: Path,
    name: str,
    on_progress: Progress | None = None,
) -> tuple[dict[str, Any], int]:
    """Train with Ray Train; returns the final state and the epochs done before this call."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Queue

    previous = latest_state(storage / name)
    resumed_from = previous["epoch"] if previous else 0
    if previous is not None and finished(previous, cfg.epochs):
        return previous, resumed_from
    progress = Queue() if on_progress else None
    config = {
        "loop": cfg,
        "data": ray.put((data.x_train, data.y_train, data.x_val, data.y_val)),
        "progress": progress,
    }
    resources: dict[str, float] = {"CPU": where.cpus_per_worker}
    if where.gpus_per_worker:
        resources["GPU"] = float(where.gpus_per_worker)
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config=config,
        scaling_config=ScalingConfig(
            num_workers=where.num_workers,
            use_gpu=bool(where.gpus_per_worker),
            resources_per_worker=resources,
        ),
        run_config=RunConfig(name=name, storage_path=str(storage)),
    )
    stop = threading.Event()
    follower = None
    if progress is not None and on_progress is not None:
        follower = threading.Thread(target=_follow, args=(progress, on_progress, stop), daemon=True)
        follower.start()
    try:
        trainer.fit()
    except Exception as exc:
        raise TrainingError("TrainingFailed", f"Ray Train: {_root_cause(exc)}") from None
    finally:
        stop.set()
        if follower is not None:
            follower.join()
        if progress is not None:
            progress.shutdown()
    final = latest_state(storage / name)
    if final is None:
        raise TrainingError("TrainingFailed", "Ray Train finished without a checkpoint")
    return final, resumed_from


def _follow(queue: Any, on_progress: Progress, stop: threading.Event) -> None:
    from ray.util.queue import Empty

    while True:
        try:
            on_progress(queue.get(timeout=0.5))
        except Empty:
            if stop.is_set():
                return
        except Exception:  # the queue's actor is gone: the run has ended
            return


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:1000]
