"""s3:// sources and destinations of a Dataset against a real S3-compatible server.

`flywheel run` reads the source with the key of its `credentialsSecretRef` (the secret
file under $FLYWHEEL_SECRETS_DIR), and publishes the snapshot to an s3:// destination
with the key from its environment. The server (tests/s3server.py) refuses any request not
signed with its key, so a key that is not used, or not the right one, fails the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from tests.s3server import S3Server

SECRET = {"name": "store-credentials", "key": "credentials.json"}
ROWS = "".join(f"{i},{i % 7},2026-01-0{1 + i % 9}T00:00:00Z\n" for i in range(200))


def dataset(source: str, destination: str) -> dict[str, Any]:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "events"},
        "spec": {
            "source": {"uri": source, "format": "csv", "credentialsSecretRef": SECRET},
            "destination": destination,
            "schema": {
                "columns": [
                    {"name": "id", "type": "int64"},
                    {"name": "bucket", "type": "int64"},
                    {"name": "ts", "type": "timestamp"},
                ],
            },
        },
    }


def flywheel_run(
    tmp_path: Path, manifest: dict[str, Any], secret: dict[str, str], env: dict[str, str]
) -> tuple[int, dict[str, Any], str]:
    """`flywheel run -o json` as a user runs it; returns its exit code, the Dataset's
    status and stderr."""
    (tmp_path / "dataset.yaml").write_text(yaml.safe_dump(manifest))
    secrets = tmp_path / "secrets"
    (secrets / SECRET["name"]).mkdir(parents=True)
    (secrets / SECRET["name"] / SECRET["key"]).write_text(json.dumps(secret))
    # Only what a user's shell would hold: no AWS_* of this machine, no instance metadata.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FLYWHEEL_"))}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("flywheel")), "run",
         "-f", str(tmp_path / "dataset.yaml"),
         "--artifact-root", str(tmp_path / "artifacts"), "-o", "json"],
        env={**base, "AWS_EC2_METADATA_DISABLED": "true",
             "FLYWHEEL_SECRETS_DIR": str(secrets), **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.stdout.strip(), done.stderr[-3000:]
    [item] = json.loads(done.stdout)["items"]
    return done.returncode, item["status"], done.stderr


def test_s3_source_with_its_secret_and_s3_destination(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = f"flywheel-{uuid.uuid4().hex[:8]}"
    store = s3_server.filesystem()
    store.create_dir(bucket)
    with store.open_output_stream(f"{bucket}/raw/events.csv") as f:
        f.write(("id,bucket,ts\n" + ROWS).encode())

    # The secret names the endpoint; the destination's key comes from the environment.
    code, status, err = flywheel_run(
        tmp_path,
        dataset(f"s3://{bucket}/raw/events.csv", f"s3://{bucket}/datasets/events"),
        s3_server.credentials(),
        s3_server.env(),
    )
    assert code == 0 and status["phase"] == "Ready", (json.dumps(status["conditions"]), err[-3000:])
    assert status["rows"] == 200 and status["badRows"] == 0, status
    version = status["version"]
    snapshot = f"{bucket}/datasets/events/versions/{version}"
    assert status["snapshotUri"] == f"s3://{snapshot}/data", status
    assert status["profileUri"].startswith("s3://"), status
    # The snapshot is in the bucket, whole, and nothing was written locally.
    table = pq.read_table(f"{snapshot}/data", filesystem=store)
    assert table.num_rows == 200 and set(table.column_names) >= {"id", "bucket", "ts"}
    assert sorted(table.column("id").to_pylist()) == list(range(200))
    current = json.loads(store.open_input_stream(f"{bucket}/datasets/events/current.json").read())
    assert current["version"] == version, current
    assert not (tmp_path / "artifacts" / "datasets").exists()


def test_a_wrong_key_in_the_secret_fails_without_showing_it(
    s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = f"flywheel-{uuid.uuid4().hex[:8]}"
    store = s3_server.filesystem()
    store.create_dir(bucket)
    with store.open_output_stream(f"{bucket}/events.csv") as f:
        f.write(("id,bucket,ts\n" + ROWS).encode())
    wrong = "not-the-secret-" + uuid.uuid4().hex
    code, status, err = flywheel_run(
        tmp_path,
        dataset(f"s3://{bucket}/events.csv", f"s3://{bucket}/datasets/events"),
        s3_server.credentials(secret_key=wrong),
        s3_server.env(),
    )
    assert code == 1 and status["phase"] == "Failed", (status, err[-3000:])
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False", ready
    # Refused by the store, on the source the secret is for.
    assert "ACCESS_DENIED" in ready["message"] and "events.csv" in ready["message"], ready
    assert wrong not in json.dumps(status) and wrong not in err
    # Nothing was published.
    assert not store.get_file_info(f"{bucket}/datasets/events/current.json").is_file
