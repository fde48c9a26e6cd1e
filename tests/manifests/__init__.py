"""Manifests the tests send: `invalid/` holds one broken manifest a file, and
`generated.py` makes about eight hundred variants of the quickstart for the parity test.

Each invalid file starts with two header comments:
    # expect: <text `flywheel validate` must print>   (or "valid ..." when each document
                                                       alone is valid, e.g. an update)
    # apiserver: <text kubectl apply's error must contain>
             or accepted <why only flywheel validate and the operator can check it>
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

INVALID_DIR = Path(__file__).parent / "invalid"


@dataclasses.dataclass(frozen=True)
class InvalidCase:
    path: Path
    expect: str
    apiserver: str

    @property
    def accepted_by_apiserver(self) -> bool:
        return self.apiserver.startswith("accepted")

    @property
    def valid_per_document(self) -> bool:
        return self.expect.startswith("valid")


def invalid_cases() -> list[InvalidCase]:
    cases = []
    for path in sorted(INVALID_DIR.glob("*.yaml")):
        header: dict[str, str] = {}
        for line in path.read_text().splitlines():
            if not line.startswith("# "):
                break
            key, _, value = line[2:].partition(": ")
            header[key] = value
        cases.append(InvalidCase(path, header["expect"], header["apiserver"]))
    return cases
