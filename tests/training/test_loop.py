"""The training loop itself, in one process (the loop every Ray Train worker runs)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from flywheel.training import loop


def config(**changes: object) -> loop.LoopConfig:
    base = {
        "model": {"type": "mlp", "params": {"hiddenUnits": [8], "dropout": 0.2}},
        "n_inputs": 4,
        "classification": True,
        "epochs": 4,
        "batch_size": 32,
        "learning_rate": 0.05,
        "weight_decay": 0.0,
        "optimizer": "adam",
        "patience": None,
        "seed": 7,
    }
    return loop.LoopConfig(**{**base, **changes})  # type: ignore[arg-type]


def data(seed: int = 0) -> loop.Arrays:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    y = (x[:, 0] + 0.3 * rng.normal(size=400) > 0).astype(np.float32)
    return loop.Arrays(x[:300], y[:300], x[300:], y[300:])


def test_the_same_seed_gives_the_same_weights_and_losses() -> None:
    a = loop.run_loop(config(), data(), loop.LocalSession())
    b = loop.run_loop(config(), data(), loop.LocalSession())
    c = loop.run_loop(config(seed=8), data(), loop.LocalSession())
    assert a["history"] == b["history"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name])
    assert a["history"] != c["history"]
    assert a["history"][-1]["val_loss"] < a["history"][0]["val_loss"]


def test_early_stopping_keeps_the_best_epoch() -> None:
    # A learning rate this high overshoots, so validation loss stops improving.
    state = loop.run_loop(
        config(epochs=30, patience=2, learning_rate=3.0, optimizer="sgd"),
        data(),
        loop.LocalSession(),
    )
    assert state["stopped_early"] and state["epoch"] < 30
    assert state["epoch"] - state["best_epoch"] == 2
    best = min(h["val_loss"] for h in state["history"])
    assert state["best_loss"] == best


def test_a_session_resumes_where_its_checkpoint_left() -> None:
    session = loop.LocalSession()
    first = loop.run_loop(config(epochs=2), data(), session)
    assert [h["epoch"] for h in first["history"]] == [1, 2]
    more = loop.run_loop(config(epochs=4), data(), session)
    whole = loop.run_loop(config(epochs=4), data(), loop.LocalSession())
    assert [h["epoch"] for h in more["history"]] == [1, 2, 3, 4]
    # Dropout's random stream restarts on resume, so only the first two epochs match.
    assert more["history"][:2] == whole["history"][:2]


class Checkpoints(loop.LocalSession):
    """Records after which epochs the loop checkpointed."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[int] = []

    def report(self, metrics: dict[str, Any], state: dict[str, Any], checkpoint: bool) -> None:
        super().report(metrics, state, checkpoint)
        if checkpoint:
            self.epochs.append(metrics["epoch"])


def test_checkpoints_follow_the_clock_and_always_close_the_run() -> None:
    every = Checkpoints()
    loop.run_loop(config(epochs=5, checkpoint_interval_s=0.0), data(), every)
    assert every.epochs == [1, 2, 3, 4, 5]
    # Epochs of milliseconds: only the last one checkpoints, and a rerun resumes from it.
    timed = Checkpoints()
    first = loop.run_loop(config(epochs=3, checkpoint_interval_s=3600.0), data(), timed)
    assert timed.epochs == [3]
    first_history = list(first["history"])  # the resumed run continues this very state
    more = loop.run_loop(config(epochs=5, checkpoint_interval_s=3600.0), data(), timed)
    assert timed.epochs == [3, 5]
    assert more["history"][:3] == first_history
    # Early stopping ends the run: its last epoch checkpoints too.
    stopped = Checkpoints()
    state = loop.run_loop(
        config(epochs=40, patience=1, learning_rate=0.5, checkpoint_interval_s=3600.0),
        data(),
        stopped,
    )
    assert state["stopped_early"] and stopped.epochs == [state["epoch"]]
