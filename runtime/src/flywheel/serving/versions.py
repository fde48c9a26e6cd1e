"""A model version as the router and the model servers know it."""

from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class ServedVersion:
    """A model version resolved to where its artifact lives."""

    model_name: str
    version: str
    artifact_uri: str

    @property
    def key(self) -> str:
        """A DNS-label-safe form of the version, for child and deployment names.

        >>> ServedVersion("churn", "2026-05-01T12:00_a1", "s3://m/churn/1").key
        '2026-05-01t12-00-a1'
        """
        return re.sub(r"[^a-z0-9-]+", "-", self.version.lower()).strip("-")[:40] or "v"
