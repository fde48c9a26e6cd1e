"""Cron schedules as Kubernetes CronJobs accept them, checked without dependencies.

>>> parse_cron("*/15 * * * *")[0][:3]
[0, 15, 30]
"""

from __future__ import annotations

import re

# Go's RE2 `\s` and Kubernetes' cron parser know only ASCII whitespace and digits.
_SPACE = re.compile(r"[\t\n\f\r ]+")

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
NAMES = {
    3: {m: i + 1 for i, m in enumerate(MONTHS)},
    4: {d: i for i, d in enumerate(WEEKDAYS)},
}


def parse_cron(expr: str) -> list[list[int]]:
    """The sorted values each of the five fields allows; ValueError naming the bad field."""
    text = MACROS.get(expr.strip().lower(), expr.strip())
    parts = [p for p in _SPACE.split(text) if p]
    if len(parts) != 5:
        raise ValueError(
            f"cron schedule {expr!r} has {len(parts)} fields; it needs 5 "
            "(minute hour day-of-month month day-of-week), e.g. '0 * * * *', or @hourly"
        )
    return [_field(part, i) for i, part in enumerate(parts)]


def _field(part: str, index: int) -> list[int]:
    label, low, high = FIELDS[index]
    values: set[int] = set()
    for item in part.split(","):
        rng, _, step_text = item.partition("/")
        step = _number(step_text, index, label) if step_text else 1
        if step < 1:
            raise ValueError(f"cron {label} step {step_text!r} must be at least 1")
        if rng in ("*", "?"):
            start, end = low, high
        elif "-" in rng:
            a, b = rng.split("-", 1)
            start, end = _number(a, index, label), _number(b, index, label)
        else:
            start = _number(rng, index, label)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise ValueError(f"cron {label} {item!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return sorted(values)


def _number(text: str, index: int, label: str) -> int:
    named = NAMES.get(index, {}).get(text.lower())
    if named is not None:
        return named
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"cron {label} {text!r} is not a number (digits 0-9)")
    return int(text)
