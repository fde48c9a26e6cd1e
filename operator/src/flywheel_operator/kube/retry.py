"""How API failures are retried. Pure: a status code in, a verdict out."""

from __future__ import annotations

import dataclasses
import enum


class Verdict(enum.Enum):
    RETRY = "retry"  # transient: back off and try again
    REREAD = "reread"  # conflict: read the object again and re-apply
    PERMANENT = "permanent"  # the request itself is wrong: report it, do not loop


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff: 0.2, 0.4, 0.8, ... seconds, at most `cap`."""

    base: float = 0.2
    cap: float = 10.0
    attempts: int = 6

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap * 6)  # 429: the server's word, bounded
        return min(self.base * 2.0**attempt, self.cap)


def classify(status: int | None) -> Verdict:
    """None means no HTTP answer at all (connection reset, timeout)."""
    if status is None or status >= 500 or status == 429:
        return Verdict.RETRY
    if status == 409:
        return Verdict.REREAD
    return Verdict.PERMANENT


def retry_after_seconds(headers: dict[str, str] | None) -> float | None:
    if not headers:
        return None
    value = {k.lower(): v for k, v in headers.items()}.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
