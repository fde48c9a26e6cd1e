"""Apply the quickstart to a cluster the way its Pods can run it.

The quickstart's Datasets read `./data/...`, paths on the machine that applies them; a
Pod has no such files. This copies the generated CSVs into the artifact claim (where the
runtime mounts it, as pvc://flywheel-artifacts/quickstart/) and applies the manifests with
the sources rewritten to those pvc:// URIs.

    .venv/bin/python hack/kind/quickstart.py --context kind-flywheel --namespace ml \\
        --image flywheel/runtime:dev
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from tests.e2e import support  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--context", default="kind-flywheel")
    parser.add_argument("--namespace", default="ml")
    parser.add_argument("--image", default="flywheel/runtime:dev", help="runs the loader Pod")
    args = parser.parse_args()
    kubectl = support.find_kubectl()
    if kubectl is None:
        print("error: kubectl not found on PATH or in .venv/bin (make dev)", file=sys.stderr)
        return 1
    cluster = support.Cluster(kubectl, args.context)
    ok, detail = cluster.reachable()
    if not ok:
        print(f"error: context {args.context} not reachable: {detail}", file=sys.stderr)
        return 1
    namespace = args.namespace
    existing = cluster.run("get", "namespace", namespace, check=False)
    if existing.returncode != 0:
        cluster.run("create", "namespace", namespace)
    prefix = support.load_quickstart_data(cluster, namespace, args.image, sys.executable)
    docs = []
    for path in sorted(support.QUICKSTART.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    manifests = support.in_cluster_quickstart(docs, fast_rollout=False)
    items = {"apiVersion": "v1", "kind": "List", "items": manifests}
    cluster.run(
        "apply", "--server-side", "--field-manager=flywheel-quickstart", "-f", "-",
        namespace=namespace, input=json.dumps(items),
    )  # fmt: skip
    print(f"quickstart applied in namespace {namespace}; Dataset sources read {prefix}")
    print(f"  kubectl get flywheel -n {namespace}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
