"""Consecutive-error ejection (outlier detection, as Envoy does it)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class _Health:
    consecutive: int = 0
    ejected_until: float = 0.0
    ejections: int = 0


class Ejector:
    """A version that fails `threshold` calls in a row gets no traffic for `cooldown`
    seconds; then it is tried again, and one more failure ejects it again.

    Algorithm: a consecutive-failure counter per version, reset by any success. It can
    eject every version; the router then still calls the stable one, so the caller gets
    that error rather than nothing.
    """

    def __init__(self, threshold: int = 5, cooldown: float = 10.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._health: dict[str, _Health] = {}

    def record(self, version: str, ok: bool, now: float) -> bool:
        """Count one call's outcome; True when this call ejected the version."""
        h = self._health.setdefault(version, _Health())
        if ok:
            h.consecutive = 0
            return False
        h.consecutive += 1
        if h.consecutive >= self.threshold and now >= h.ejected_until:
            h.ejected_until = now + self.cooldown
            h.ejections += 1
            # One failure after the cooldown ejects again.
            h.consecutive = self.threshold - 1
            return True
        return False

    def ejected(self, version: str, now: float) -> bool:
        h = self._health.get(version)
        return h is not None and now < h.ejected_until

    def ejections(self, version: str) -> int:
        h = self._health.get(version)
        return 0 if h is None else h.ejections
