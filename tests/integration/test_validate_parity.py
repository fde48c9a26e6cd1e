"""`flywheel validate` never accepts what `kubectl apply` refuses.

Every manifest of the examples, of tests/manifests/invalid/ and of the generated set
(tests/manifests/generated.py: YAML 1.1 spellings, numeric strings, special floats, int64
edges, unknown fields, aliases, encodings, metadata) goes through both `flywheel validate`
and `kubectl apply --dry-run=server` on the local control plane. The test fails when
validate accepts a manifest the API server (or kubectl) refuses, or when validate ends in
anything but exit 0 or 1.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import io
from pathlib import Path

import pytest

from flywheel import cli
from tests.cluster import Kubectl
from tests.manifests import INVALID_DIR, generated

REPO_ROOT = Path(__file__).resolve().parents[2]
# Each example directory is one manifest set: its objects refer to each other.
EXAMPLES = sorted(p for p in (REPO_ROOT / "examples").iterdir() if list(p.glob("*.yaml")))


# What validate may refuse that the API server accepts: the rules docs/validation.md lists
# as checked by Flywheel, not by the API server, by a phrase of their messages.
FLYWHEEL_ONLY = (
    "appears twice in one mapping",  # duplicate keys
    "is not supported; remove it",  # YAML tags
    "the file is UTF-16",
    "a new document needs `---`",  # text after `...`
    "status.",  # a status in a manifest
    "is not valid RE2 syntax",
    "timestampFormat",
    "cron ",
    "is longer than 100 years",
    "only these functions may be called",  # expressions
    "defined twice",
    "which is not in the manifests",
    "store root",
)


@dataclasses.dataclass(frozen=True)
class Outcome:
    name: str
    validate_code: object
    validate_said: str
    server_ok: bool
    server_said: str


def _validate(path: Path) -> tuple[object, str]:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code: object = cli.main(["validate", "-f", str(path)])
    except SystemExit as exc:
        code = exc.code
    except Exception as exc:  # the test reports it: validate must never raise
        code = f"raised {type(exc).__name__}: {exc}"
    return code, err.getvalue()


def _files(tmp_path: Path) -> list[Path]:
    files = EXAMPLES + sorted(INVALID_DIR.glob("*.yaml"))
    for case in generated.cases():
        path = tmp_path / case.name
        path.write_bytes(case.content)
        files.append(path)
    return files


@pytest.mark.timeout(1200)  # about a thousand kubectl runs
def test_validate_never_accepts_what_the_api_server_refuses(
    flywheel_crds: list[str], kubectl: Kubectl, tmp_path: Path
) -> None:
    files = _files(tmp_path)

    def server(path: Path) -> tuple[bool, str]:
        result = kubectl.apply(path, server_side=False, dry_run="server", check=False)
        return result.returncode == 0, result.stderr.strip()

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        verdicts = list(pool.map(server, files))
    outcomes = [
        Outcome(path.name, *_validate(path), *verdict)
        for path, verdict in zip(files, verdicts, strict=True)
    ]

    broken = [o for o in outcomes if o.validate_code not in (0, 1)]
    assert not broken, "validate must exit 0 or 1:\n" + "\n".join(
        f"{o.name}: {o.validate_code}" for o in broken
    )
    lenient = [o for o in outcomes if o.validate_code == 0 and not o.server_ok]
    assert not lenient, f"validate accepted {len(lenient)} manifests the server refuses:\n" + (
        "\n".join(f"{o.name}: {o.server_said[:300]}" for o in lenient)
    )
    # The examples pass both.
    for o in outcomes[: len(EXAMPLES)]:
        assert o.validate_code == 0 and o.server_ok, o
    stricter_cases = [o for o in outcomes if o.validate_code == 1 and o.server_ok]
    undocumented = [
        o for o in stricter_cases if not any(p in o.validate_said for p in FLYWHEEL_ONLY)
    ]
    assert not undocumented, (
        "validate refuses what the API server accepts, by a rule docs/validation.md does not "
        "list:\n" + "\n".join(f"{o.name}: {o.validate_said.strip()[:300]}" for o in undocumented)
    )
    stricter = len(stricter_cases)
    both = sum(1 for o in outcomes if o.validate_code == 1 and not o.server_ok)
    print(
        f"\n{len(outcomes)} manifests: {both} refused by both, {stricter} only by validate "
        f"(rules the API server does not check), "
        f"{sum(1 for o in outcomes if o.validate_code == 0)} accepted by both"
    )
