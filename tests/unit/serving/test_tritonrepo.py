"""The Triton repository's config.pbtxt: training's signature under the deployment's
serving settings."""

from __future__ import annotations

import pytest

from flywheel.api.modeldeployment import TritonOptions
from flywheel.serving import tritonrepo
from flywheel_operator.builders import modeldeployment

TRAINED = """name: "churn-mlp"
backend: "pytorch"
max_batch_size: 1024
input [
  {
    name: "features"  # a comment with a ] bracket
    data_type: TYPE_FP32
    dims: [ 7 ]
  }
]
output [ { name: "output__0" data_type: TYPE_FP32 dims: [ 1 ] } ]
dynamic_batching {
  max_queue_delay_microseconds: 500
}
instance_group [
  {
    count: 1
    kind: KIND_CPU
  }
]
"""


def test_fields_are_the_top_level_entries_in_order() -> None:
    keys = [k for k, _ in tritonrepo.fields(TRAINED)]
    assert keys == [
        "name", "backend", "max_batch_size", "input", "output", "dynamic_batching",
        "instance_group",
    ]  # fmt: skip


def test_the_serving_settings_replace_training_s_and_keep_the_signature() -> None:
    options = TritonOptions.model_validate(
        {"instanceCount": 2, "maxBatchSize": 32,
         "dynamicBatching": {"preferredBatchSizes": [8, 16]}}
    )  # fmt: skip
    settings = modeldeployment.triton_config(options, gpus=1)
    merged = tritonrepo.merge_config(TRAINED, settings, "churn")
    keys = [k for k, _ in tritonrepo.fields(merged)]
    assert keys == [
        "name", "backend", "input", "output", "max_batch_size", "instance_group",
        "dynamic_batching",
    ]  # fmt: skip
    assert merged.startswith('name: "churn"\nbackend: "pytorch"\n')
    assert "count: 2 kind: KIND_GPU" in merged and "KIND_CPU" not in merged
    assert "max_batch_size: 32" in merged and "1024" not in merged
    assert "dims: [ 7 ]" in merged  # the signature stays training's
    # Idempotent: a restarted init container lays out the same file.
    assert tritonrepo.merge_config(merged, settings, "churn") == merged


def test_a_broken_config_names_the_problem() -> None:
    with pytest.raises(ValueError, match="unbalanced"):
        tritonrepo.fields("input [ { name: 'x' ")
