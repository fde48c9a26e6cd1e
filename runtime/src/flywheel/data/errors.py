"""Ingest errors that name the file, the column and the fix."""

from __future__ import annotations


class IngestError(Exception):
    """Nothing was published; the message says where the problem is and what to do."""

    def __init__(
        self, problem: str, file: str = "", column: str = "", fix: str = "", reason: str = ""
    ) -> None:
        self.problem = problem
        self.file = file
        self.column = column
        self.fix = fix
        # CamelCase, for the Ready condition.
        self.reason = reason or "IngestFailed"
        where = ", ".join(p for p in (file, f"column {column!r}" if column else "") if p)
        text = f"{where}: {problem}" if where else problem
        super().__init__(f"{text}; fix: {fix}" if fix else text)
