"""Object-store credentials: from the environment, or from a mounted secret file.

A Dataset's `credentialsSecretRef` is mounted by the operator as a file; locally the
file is looked up under `$FLYWHEEL_SECRETS_DIR/<secret>/<key>`. These functions read the
environment and the secret file; `gcs_options` also writes the process environment
(`GOOGLE_APPLICATION_CREDENTIALS`), because the GCS client takes a service-account key
only through Google's default lookup.
"""

from __future__ import annotations

import configparser
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from flywheel.entrypoints import DEFAULT_SECRETS_DIR, SECRETS_DIR_ENV

S3_ENDPOINT_ENVS = ("FLYWHEEL_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
# An endpoint that accepts connections and never answers must not hang a run.
S3_CONNECT_TIMEOUT_SECONDS = 10.0
S3_REQUEST_TIMEOUT_SECONDS = 60.0


def secret_path(name: str, key: str) -> Path:
    return Path(os.environ.get(SECRETS_DIR_ENV, DEFAULT_SECRETS_DIR)) / name / key


def parse_s3(text: str) -> dict[str, Any]:
    """S3FileSystem options from a JSON object or an AWS credentials INI file.

    >>> parse_s3('{"accessKeyId": "a", "secretAccessKey": "s", "region": "eu-west-1"}')
    {'access_key': 'a', 'secret_key': 's', 'region': 'eu-west-1'}
    """
    text = text.strip()
    if text.startswith("{"):
        data = json.loads(text)
        names = {
            "accessKeyId": "access_key",
            "aws_access_key_id": "access_key",
            "secretAccessKey": "secret_key",
            "aws_secret_access_key": "secret_key",
            "sessionToken": "session_token",
            "aws_session_token": "session_token",
            "region": "region",
            "endpoint": "endpoint_override",
        }
        return {names[k]: v for k, v in data.items() if k in names}
    ini = configparser.ConfigParser()
    ini.read_string(text)
    section = ini["default"] if "default" in ini else ini[ini.sections()[0]]
    names = {
        "aws_access_key_id": "access_key",
        "aws_secret_access_key": "secret_key",
        "aws_session_token": "session_token",
        "region": "region",
        "endpoint_url": "endpoint_override",
    }
    return {names[k]: v for k, v in section.items() if k in names}


def s3_options(secret_file: Path | None) -> dict[str, Any]:
    """Without a secret file, pyarrow reads the AWS_* environment and instance roles."""
    options: dict[str, Any] = {
        "connect_timeout": S3_CONNECT_TIMEOUT_SECONDS,
        "request_timeout": S3_REQUEST_TIMEOUT_SECONDS,
    }
    endpoint = next((os.environ[e] for e in S3_ENDPOINT_ENVS if os.environ.get(e)), None)
    if endpoint:
        options["endpoint_override"] = endpoint
    if secret_file is not None:
        options.update(parse_s3(secret_file.read_text()))
    return options


def gcs_options(secret_file: Path | None) -> dict[str, Any]:
    """An OAuth token file ({"access_token": ...}) or a service-account key file."""
    if secret_file is None:
        return {}
    data = json.loads(secret_file.read_text())
    if "access_token" in data:
        expiry = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=int(data.get("expires_in", 3600)))
        return {"access_token": data["access_token"], "credential_token_expiration": expiry}
    # The GCS client takes service-account keys only through Google's default lookup.
    os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = str(secret_file)
    return {}
