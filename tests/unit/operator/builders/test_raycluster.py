"""Ray head and worker Pod templates."""

from __future__ import annotations

from flywheel_operator.builders import raycluster
from flywheel_operator.settings import Settings
from tests.unit.operator.conftest import owners


def test_ray_pods_run_as_ray_with_shared_memory_and_claims(settings: Settings) -> None:
    owner = owners()["TrainingJob/churn-mlp"]
    placement = {"nodeSelector": {"pool": "gpu"}}
    template = raycluster.pod_template(
        owner, "ray-worker", "img", {"requests": {}}, placement, settings, ["models"]
    )
    spec = template["spec"]
    assert spec["securityContext"]["runAsUser"] == raycluster.RAY_UID
    assert spec["automountServiceAccountToken"] is False
    assert spec["nodeSelector"] == {"pool": "gpu"}
    [c] = spec["containers"]
    assert (c["name"], c["image"]) == ("ray-worker", "img")
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    assert {"name": "pvc-models", "mountPath": "/mnt/pvc/models"} in c["volumeMounts"]
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "ray-worker"


def test_the_head_asks_for_no_gpu() -> None:
    assert "nvidia.com/gpu" not in raycluster.head_resources()["requests"]
