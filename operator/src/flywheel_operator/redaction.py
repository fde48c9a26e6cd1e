"""Keeping secrets out of status, events and logs."""

from __future__ import annotations

import re
from typing import Any


def redact(value: Any) -> Any:
    """Credentials in URIs (`s3://key:secret@bucket`) never reach status or events."""
    if isinstance(value, str):
        return _USERINFO.sub(r"\1***@", value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


_USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)
