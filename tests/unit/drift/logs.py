"""Request logs as the router writes them, for drift tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

T0 = datetime(2026, 5, 1, tzinfo=UTC)
PLANS = ["basic", "standard", "premium"]
PLAN_SHARES = [0.5, 0.3, 0.2]


def customers(
    rng: np.random.Generator, n: int, shift: float = 0.0, plans: list[float] | None = None
) -> dict[str, np.ndarray]:
    """Features of n customers; `shift` moves monthly charges by that many sigmas."""
    return {
        "plan": rng.choice(PLANS, size=n, p=plans or PLAN_SHARES),
        "monthly_charges": rng.normal(70 + 20 * shift, 20, size=n),
        "tenure_days": rng.integers(0, 2000, size=n),
    }


def write_log(
    directory: Path,
    features: dict[str, np.ndarray],
    start: datetime,
    step: timedelta = timedelta(seconds=1),
    version: str = "v1",
    prediction: np.ndarray | None = None,
    part: str = "part-0",
) -> Path:
    """One Parquet part of requests `step` apart from `start`."""
    n = len(next(iter(features.values())))
    times = [start + i * step for i in range(n)]
    columns = {
        "request_id": [f"{part}-{i}" for i in range(n)],
        "time": pa.array(times, pa.timestamp("us", "UTC")),
        "model_version": [version] * n,
        "prediction": prediction if prediction is not None else np.full(n, 0.5),
        **features,
    }
    path = directory / f"{part}.parquet"
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path
