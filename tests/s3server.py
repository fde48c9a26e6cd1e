"""A real S3-compatible server on 127.0.0.1 for the tests: moto's server mode.

moto runs from a venv of its own (`<cache>/moto-<version>`, made on first use with the
project's uv, whose download cache it reuses), so none of its dependencies reach the
project's environment. The server enforces signatures: after the first requests, which
create one IAM user with an S3 policy and its access key, every request must be signed
with that key. A wrong or missing key is refused (403), as a real store refuses it.

Only S3 is served. `gs://` is not: no GCS server runs in the tests, so gs:// sources and
destinations and their credentials are tested only as far as the options built for them
(tests/unit/test_storage.py). A GCS emulator would first have to be shown to serve
pyarrow's GCS client (resumable uploads, its JSON API) before a test could rely on it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cluster.controlplane import cache_dir
from tests.cluster.kubectl import wait_for

MOTO_VERSION = "5.1.22"
REGION = "us-east-1"

# Runs in moto's venv, against the server, during its unauthenticated first requests.
_CREATE_KEY = """
import boto3, json, sys
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")
iam.create_user(UserName="flywheel")
iam.put_user_policy(UserName="flywheel", PolicyName="s3", PolicyDocument=json.dumps(
    {"Version": "2012-10-17",
     "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="flywheel")["AccessKey"]
print(json.dumps({"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))
"""
_SETUP_REQUESTS = 3  # the three IAM calls above

# moto_server, with one fix: moto checks a signature against the query string as it
# decoded it (`prefix=a/b`), while clients sign it as sent (`prefix=a%2Fb`), so every
# signed ListObjectsV2 would be refused (moto issue 5948). The check uses the raw URI.
_SERVE = """
import sys
import flask
from moto.iam import access_control
from moto.server import main

_create = access_control.IAMRequestBase._create_aws_request

def _create_aws_request(self):
    request = _create(self)
    if flask.has_request_context():
        raw = flask.request.environ.get("RAW_URI") or flask.request.environ.get("REQUEST_URI")
        if raw:
            request.url = raw
    return request

access_control.IAMRequestBase._create_aws_request = _create_aws_request
sys.exit(main(sys.argv[1:]))
"""


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:<port>
    access_key: str
    secret_key: str

    def credentials(self, secret_key: str | None = None) -> dict[str, str]:
        """The JSON a credentialsSecretRef holds (see flywheel.storage.credentials)."""
        return {
            "accessKeyId": self.access_key,
            "secretAccessKey": secret_key or self.secret_key,
            "region": REGION,
            "endpoint": self.endpoint,
        }

    def env(self) -> dict[str, str]:
        """The environment a process reaches the store with, without a secret file."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",  # never ask an instance-metadata address
            "FLYWHEEL_S3_ENDPOINT": self.endpoint,
        }

    def filesystem(self) -> Any:
        from pyarrow import fs

        return fs.S3FileSystem(
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=REGION,
            endpoint_override=self.endpoint,
            allow_bucket_creation=True,
        )


def moto_python() -> Path:
    """moto's venv, made once per version (a lock keeps concurrent sessions apart)."""
    venv = cache_dir() / f"moto-{MOTO_VERSION}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if stamp.exists():
        return python
    uv = Path(sys.executable).with_name("uv")
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"moto-{MOTO_VERSION}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            # --clear: what an interrupted install left is made anew.
            subprocess.run(
                [str(uv), "venv", "-q", "--clear", "--python", "python3", str(venv)], check=True
            )
            subprocess.run(
                [str(uv), "pip", "install", "-q", "--python", str(python),
                 f"moto[server]=={MOTO_VERSION}"],
                check=True,
            )  # fmt: skip
            stamp.touch()
    return python


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def running(log: Path) -> Iterator[S3Server]:
    """moto_server on a free loopback port until the block ends; its key made first."""
    python = moto_python()
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(_SETUP_REQUESTS)}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(python), "-c", _SERVE, "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        wait_for(
            lambda: proc.poll() is None and _answers(f"{endpoint}/moto-api/"),
            what=f"moto_server on {endpoint} (log: {log})",
            timeout=60,
        )
        created = subprocess.run(
            [str(python), "-c", _CREATE_KEY, endpoint],
            check=True, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        key = json.loads(created.stdout)
        yield S3Server(endpoint, key["id"], key["secret"])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
