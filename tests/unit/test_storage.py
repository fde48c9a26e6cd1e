"""URIs to filesystems and credentials parsing: no network, no object store."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyarrow import fs as pafs

from flywheel.storage import credentials, publish, uris


def test_relative_paths_resolve_against_the_base_dir() -> None:
    loc = uris.resolve("./data/../x.csv", Path("/srv/m"))
    assert isinstance(loc.filesystem, pafs.LocalFileSystem)
    assert loc.path == "/srv/m/x.csv" and loc.uri == "file:///srv/m/x.csv"


def test_file_uri_and_absolute_path() -> None:
    assert uris.resolve("file:///a/b.parquet").path == "/a/b.parquet"
    assert uris.resolve("/a/b.parquet").path == "/a/b.parquet"


def test_pvc_uri_uses_the_mount_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_PVC_ROOT", "/mnt/claims")
    loc = uris.resolve("pvc://raw-data/events/2026/")
    assert loc.path == "/mnt/claims/raw-data/events/2026"
    assert loc.uri == "pvc://raw-data/events/2026/"


def test_http_is_a_single_remote_file() -> None:
    loc = uris.resolve("https://example.com/x.csv")
    assert loc.is_http and loc.path == "https://example.com/x.csv"


def test_s3_location_with_an_endpoint_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLYWHEEL_S3_ENDPOINT", "http://127.0.0.1:9")
    loc = uris.resolve("s3://bucket/raw/events.parquet")
    assert isinstance(loc.filesystem, pafs.S3FileSystem)
    assert loc.path == "bucket/raw/events.parquet"


def test_unknown_scheme_is_rejected() -> None:
    with pytest.raises(ValueError, match="unsupported URI scheme"):
        uris.resolve("ftp://x/y")


def test_s3_credentials_from_json_and_ini() -> None:
    assert credentials.parse_s3(
        '{"accessKeyId": "a", "secretAccessKey": "s", "sessionToken": "t", "endpoint": "e"}'
    ) == {"access_key": "a", "secret_key": "s", "session_token": "t", "endpoint_override": "e"}
    ini = "[default]\naws_access_key_id = a\naws_secret_access_key = s\nregion = eu-west-1\n"
    assert credentials.parse_s3(ini) == {
        "access_key": "a",
        "secret_key": "s",
        "region": "eu-west-1",
    }


def test_secret_files_are_looked_up_under_the_secrets_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLYWHEEL_SECRETS_DIR", "/run/s")
    assert credentials.secret_path("aws", "credentials") == Path("/run/s/aws/credentials")


def test_gcs_token_file(tmp_path: Path) -> None:
    token = tmp_path / "token.json"
    token.write_text('{"access_token": "ya29.x", "expires_in": 60}')
    options = credentials.gcs_options(token)
    assert options["access_token"] == "ya29.x"
    assert "credential_token_expiration" in options


def test_publish_writes_small_files_atomically_and_reads_them_back(tmp_path: Path) -> None:
    root = uris.resolve(str(tmp_path))
    publish.write_atomic(root.join("a.json"), publish.dumps({"x": 1}))
    assert publish.read_json(root.join("a.json")) == {"x": 1}
    assert publish.read_json(root.join("missing.json")) is None
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary left behind


def test_paths_on_a_mounted_claim_are_reported_as_pvc_uris(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLYWHEEL_PVC_ROOT", "/mnt/pvc")
    assert uris.resolve("/mnt/pvc/art/datasets/x").uri == "pvc://art/datasets/x"
    assert uris.resolve("/elsewhere/x").uri == "file:///elsewhere/x"
    monkeypatch.delenv("FLYWHEEL_PVC_ROOT")
    assert uris.resolve("/mnt/pvc/art/x").uri == "file:///mnt/pvc/art/x"


def test_the_artifact_root_is_a_local_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_PVC_ROOT", "/mnt/pvc")
    assert uris.local_directory("pvc://flywheel-artifacts/") == Path("/mnt/pvc/flywheel-artifacts")
    assert uris.local_directory("./a", Path("/srv")) == Path("/srv/a")
    with pytest.raises(ValueError, match="must be a local path"):
        uris.local_directory("s3://bucket/artifacts")


def test_validate_never_imports_the_data_plane() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from flywheel import cli; cli.build_parser(); "
        "heavy = [m for m in ('pyarrow', 'numpy', 'redis') if m in sys.modules]; "
        "print(*heavy, file=sys.stderr); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_a_hashing_sink_gives_the_digest_content_version_reads_back(tmp_path: Path) -> None:
    staging = uris.resolve(str(tmp_path / "staging"))
    staging.filesystem.create_dir(staging.join("data").path, recursive=True)
    sink = publish.HashingSink(staging.filesystem.open_output_stream(staging.join("data/a").path))
    for block in (b"x" * 5000, b"", b"yz"):
        sink.write(block)
    sink.close()
    publish.write_atomic(staging.join("b.json"), b"{}")
    digest = sink.digest()
    assert digest == publish.Digest(publish.file_digest(staging.join("data/a")), 5002)
    read_back = publish.content_version(staging, "salt")
    assert publish.content_version(staging, "salt", {"data/a": digest}) == read_back
    # A size that disagrees with the store is not trusted: the file is read again.
    wrong = publish.Digest("0" * 64, 5001)
    assert publish.content_version(staging, "salt", {"data/a": wrong}) == read_back
