"""The generated CRDs against a real kube-apiserver: they install, the quickstart is
accepted, `kubectl get` shows the printer columns, and every manifest under
tests/manifests/invalid/ is rejected (or accepted) as its header says."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import Kubectl

REPO_ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = REPO_ROOT / "examples" / "quickstart"
INVALID_DIR = REPO_ROOT / "tests" / "manifests" / "invalid"
GROUP = "flywheel.dev"
SHORT_NAMES = ("dset", "fv", "tj", "md", "dm")  # `ds` belongs to DaemonSets in kubectl


@dataclass(frozen=True)
class InvalidCase:
    """One file of tests/manifests/invalid/, by its header:

    # expect: <what `flywheel validate` prints>
    # apiserver: <substring of kubectl apply's error> | accepted <why>
    Documents are applied in order; only the last one (e.g. an update marked
    `# step: update`, for `oldSelf` rules) is expected to fail.
    """

    path: Path
    header: dict[str, str]
    documents: list[str]

    @classmethod
    def load(cls, path: Path) -> InvalidCase:
        text = path.read_text()
        header: dict[str, str] = {}
        for line in text.splitlines():
            stripped = line.strip()
            if not stripped:
                continue
            if not stripped.startswith("#"):
                break
            m = re.match(r"#\s*([A-Za-z][\w-]*)\s*:\s*(.*)$", stripped)
            if m:
                header.setdefault(m[1].lower(), m[2].strip())
        return cls(path, header, split_documents(text))

    @property
    def accepted(self) -> bool:
        return re.match(r"accepted\b", self.header.get("apiserver", "")) is not None


def split_documents(text: str) -> list[str]:
    """YAML documents with content (comment-only chunks dropped), in file order."""
    docs = re.split(r"(?m)^---[ \t]*$", text)
    return [
        d
        for d in docs
        if any(ln.strip() and not ln.lstrip().startswith("#") for ln in d.splitlines())
    ]


def invalid_files() -> list[Path]:
    return sorted(INVALID_DIR.glob("*.yaml"))


def quickstart_files() -> list[Path]:
    return sorted(QUICKSTART.glob("*.yaml"))


def printer_columns(crd: dict[str, Any]) -> list[str]:
    """Headers `kubectl get` shows for the storage version (priority-0 columns)."""
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    columns = version.get("additionalPrinterColumns") or []
    names = [c["name"].upper() for c in columns if int(c.get("priority", 0)) == 0]
    # Without printer columns kubectl shows NAME and AGE.
    return ["NAME", *names] if columns else ["NAME", "AGE"]


def table_headers(output: str) -> list[list[str]]:
    """Header rows of kubectl's table output (one per kind); columns are >= 2 spaces apart."""
    return [
        re.split(r"\s{2,}", line.strip())
        for line in output.splitlines()
        if line.startswith("NAME ")
    ]


def test_crds_establish(flywheel_crds: list[str], cluster_kubectl: Kubectl) -> None:
    assert sorted(flywheel_crds) == sorted(
        f"{p}.{GROUP}"
        for p in ("datasets", "featureviews", "trainingjobs", "modeldeployments", "driftmonitors")
    )
    for name in flywheel_crds:
        crd = cluster_kubectl.get("crd", name)
        assert crd["spec"]["group"] == GROUP
        assert "flywheel" in crd["spec"]["names"].get("categories", []), name
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", conditions
        assert conditions.get("NamesAccepted") == "True", conditions
    # Short names resolve through discovery, as users type them.
    cluster_kubectl.run("get", ",".join(SHORT_NAMES), "-A")


def apply_quickstart(kubectl: Kubectl) -> set[str]:
    """Apply examples/quickstart/*.yaml into the test namespace; return the flywheel refs
    (`kind.group/name`) created."""
    files = quickstart_files()
    assert files, f"no manifests in {QUICKSTART}"
    # A server-side dry run first: the API server validates without persisting.
    for path in files:
        kubectl.apply(path, dry_run="server")
    applied: list[str] = []
    for path in files:
        applied += kubectl.apply(path, extra=["-o", "name"]).stdout.split()
    ours = {ref for ref in applied if f".{GROUP}/" in ref}
    assert ours, f"no {GROUP} objects in {QUICKSTART}: {applied}"
    return ours


def test_quickstart_is_accepted_and_listed(
    flywheel_crds: list[str], cluster_kubectl: Kubectl, kubectl: Kubectl
) -> None:
    ours = apply_quickstart(kubectl)
    listed = set(kubectl.run("get", "flywheel", "-o", "name").stdout.split())
    assert listed == ours

    crds = {
        crd["spec"]["names"]["singular"]: crd
        for crd in (cluster_kubectl.get("crd", name) for name in flywheel_crds)
    }
    by_category = kubectl.run("get", "flywheel").stdout
    headers = table_headers(by_category)
    kinds_present = {ref.split("/", 1)[0].split(".", 1)[0] for ref in ours}  # singular names
    assert len(headers) == len(kinds_present), by_category
    for singular in sorted(kinds_present):
        crd = crds[singular]
        expected = printer_columns(crd)
        assert expected in headers, f"{singular}: expected columns {expected} in:\n{by_category}"
        plural = f"{crd['spec']['names']['plural']}.{GROUP}"
        assert table_headers(kubectl.run("get", plural).stdout) == [expected], plural
    for ref in ours:
        assert ref in by_category, f"{ref} missing from `kubectl get flywheel`"


def test_short_names_list_the_quickstart(flywheel_crds: list[str], kubectl: Kubectl) -> None:
    """`kubectl get dset,fv,tj,md,dm` lists every quickstart object."""
    ours = apply_quickstart(kubectl)
    result = kubectl.run("get", ",".join(SHORT_NAMES), "-o", "name")
    missing = ours - set(result.stdout.split())
    assert not missing, (
        f"`kubectl get {','.join(SHORT_NAMES)}` does not list {sorted(missing)}; "
        f"kubectl said: {result.stderr.strip()}"
    )


def test_ds_is_shadowed_by_daemonsets(flywheel_crds: list[str], kubectl: Kubectl) -> None:
    """Datasets also carry the short name `ds`, but kubectl gives built-in DaemonSets
    priority and says so; the docs point users to `dset`."""
    result = kubectl.run("get", "ds", "-o", "name", check=False)
    assert 'short name "ds" could also match lower priority resource datasets.flywheel.dev' in (
        result.stderr
    )


def test_invalid_manifests_exist() -> None:
    files = invalid_files()
    assert files, f"no manifests in {INVALID_DIR}"
    for path in files:
        case = InvalidCase.load(path)
        assert case.header.get("apiserver"), f"{path.name}: no `# apiserver:` header"
        assert case.documents, f"{path.name}: no YAML documents"


@pytest.mark.parametrize("path", invalid_files(), ids=lambda p: p.stem)
def test_invalid_manifest(path: Path, flywheel_crds: list[str], kubectl: Kubectl) -> None:
    case = InvalidCase.load(path)
    expected = case.header.get("apiserver", "")
    assert expected, f"{path.name}: no `# apiserver:` header"
    # Plain `kubectl apply`, as the header describes: its create uses strict field
    # validation (`unknown field ...`), where server-side apply words errors differently.
    *setup, last = case.documents
    for doc in setup:
        kubectl.apply(doc, server_side=False)  # the object an update step starts from
    if case.accepted:
        kubectl.apply(last, server_side=False)
        return
    result = kubectl.apply(last, server_side=False, check=False)
    assert result.returncode != 0, (
        f"{path.name}: the API server accepted the last document, expected an error "
        f"containing {expected!r}\nstdout: {result.stdout}"
    )
    assert expected in result.stderr, (
        f"{path.name}: rejected, but the error lacks {expected!r}:\n{result.stderr}"
    )
