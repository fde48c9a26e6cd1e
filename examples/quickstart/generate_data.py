"""Generate the quickstart's churn data: customer activity events and churn labels.

Deterministic (seeded), stdlib only, about 0.5% deliberately bad event rows so that the
Dataset's quarantine policy has something to catch.

From day PRICE_CHANGE_DAY on, prices rise by PRICE_RISE, and two things change:
- the data drifts: charges move away from what the training history shows, which the
  quickstart's DriftMonitor is there to notice;
- the concept changes: price-sensitive customers, those whose usage puts their charges
  high for their plan, now churn more (before the rise their usage did not matter). A
  model trained on the labels before the rise has not seen this and is measurably worse
  on the labels after it; a model trained on the newer labels learns it.

Every customer is labelled (churned within the period or not) on each of LABEL_DAYS:
three rounds before the rise and three after, so the newest half of the labels is the
post-rise half.

    python examples/quickstart/generate_data.py [--customers 4000] [--out examples/quickstart/data]
"""

from __future__ import annotations

import argparse
import csv
import math
import random
from datetime import datetime, timedelta
from pathlib import Path

PLANS = {"basic": 19.0, "standard": 39.0, "premium": 79.0}
COUNTRIES = ["DE", "FR", "US", "GB", "IN", "BR"]
START = datetime(2026, 1, 1)
DAYS = 120
PRICE_CHANGE_DAY = 100
PRICE_RISE = 1.35
LABEL_DAYS = (50, 70, 90, 105, 112, 119)
# Log-odds of churn per unit of usage above the average, after the price rise.
PRICE_SENSITIVITY = 8.0


def generate(customers: int, out: Path, seed: int = 7) -> None:
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    events: list[list[object]] = []
    labels: list[list[object]] = []
    for i in range(customers):
        cid = f"C{i:06d}"
        plan = rng.choices(list(PLANS), weights=[5, 3, 2])[0]
        country = rng.choice(COUNTRIES)
        tenure0 = rng.randint(0, 900)
        unhappy = rng.random()  # latent: drives support calls and churn
        usage = rng.uniform(0.8, 1.6)  # latent: charges relative to the plan's price
        t = START + timedelta(hours=rng.uniform(0, 72))
        calls_total = 0
        calls_by_day: list[tuple[int, int]] = []
        while t < START + timedelta(days=DAYS):
            calls = rng.choices([0, 1, 2, 3], weights=[10, 3 * unhappy, 2 * unhappy, unhappy])[0]
            calls_total += calls
            calls_by_day.append(((t - START).days, calls_total))
            price = PLANS[plan] * (PRICE_RISE if (t - START).days >= PRICE_CHANGE_DAY else 1.0)
            charges = round(price * usage * rng.uniform(0.9, 1.1) + 5 * calls, 2)
            tenure = tenure0 + (t - START).days
            events.append(
                [
                    cid,
                    t.replace(microsecond=0).isoformat(sep=" "),
                    plan,
                    country,
                    charges,
                    calls,
                    tenure,
                ]
            )
            t += timedelta(hours=rng.expovariate(1 / 60))
        for day in LABEL_DAYS:
            label_time = START + timedelta(days=day, hours=rng.uniform(0, 23))
            calls_so_far = max((c for d, c in calls_by_day if d <= day), default=0)
            score = (
                -1.0 + 2.5 * unhappy + 0.02 * calls_so_far - tenure0 / 300 + (plan == "basic") * 0.4
            )
            if day >= PRICE_CHANGE_DAY:
                score += PRICE_SENSITIVITY * (usage - 1.2)
            churned = int(rng.random() < 1 / (1 + math.exp(-score)))
            labels.append([cid, label_time.replace(microsecond=0).isoformat(sep=" "), churned])
    _corrupt(events, rng)
    events.sort(key=lambda r: str(r[1]))
    _write(
        out / "customer_events.csv",
        [
            "customer_id",
            "event_time",
            "plan",
            "country",
            "monthly_charges",
            "support_calls",
            "tenure_days",
        ],
        events,
    )
    _write(out / "churn_labels.csv", ["customer_id", "label_time", "churned"], labels)
    print(f"wrote {len(events)} events and {len(labels)} labels to {out}")


def _corrupt(events: list[list[object]], rng: random.Random) -> None:
    """Break a few rows the ways real feeds break: each violates the contract once."""
    for row in rng.sample(events, k=max(1, len(events) // 200)):
        fault = rng.randrange(4)
        if fault == 0:
            row[4] = -abs(float(str(row[4])))  # negative charges
        elif fault == 1:
            row[2] = "platinum"  # plan outside the allowed values
        elif fault == 2:
            row[0] = "customer-x"  # id breaks the pattern
        else:
            row[5] = 500  # support calls above the maximum


def _write(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    args = parser.parse_args()
    generate(args.customers, args.out)
