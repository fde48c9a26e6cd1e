"""The one failure a training run reports: a CamelCase reason and a message for people."""

from __future__ import annotations


class TrainingError(Exception):
    """A known way a TrainingJob fails; nothing is registered when one is raised."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
