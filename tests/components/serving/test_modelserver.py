"""Flywheel's v2 model server, read by tritonclient (HTTP and gRPC) and by the backends."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from flywheel.serving import backends, oip, predictor
from tests.components.serving import support
from tests.components.serving.conftest import FEATURES, Served

pytestmark = pytest.mark.runtime

ROWS = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]], dtype=np.float32)


def expected(path: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(f"{path}/model.pt")
    scores: np.ndarray = module(torch.from_numpy(ROWS)).detach().numpy()
    return scores


def test_artifact_loader_reads_model_and_feature_names(artifacts: dict[str, object]) -> None:
    loaded = predictor.load_predictor(str(artifacts["v1"]))
    assert loaded.feature_names == FEATURES
    np.testing.assert_allclose(loaded.predict(ROWS), expected(str(artifacts["v1"])), rtol=1e-6)


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_http(model_v1: Served, artifacts: dict[str, object], binary: bool) -> None:
    client = httpclient.InferenceServerClient(model_v1.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_model_metadata("churn")["parameters"]["features"] == FEATURES
    x = httpclient.InferInput("features", list(ROWS.shape), "FP32")
    x.set_data_from_numpy(ROWS, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput("scores", binary_data=binary)]
    result = client.infer("churn", [x], outputs=outputs, request_id="r7")
    np.testing.assert_allclose(result.as_numpy("scores"), expected(str(artifacts["v1"])), 1e-6)
    assert result.get_response()["id"] == "r7"
    assert result.get_response()["model_version"] == "v1"


def test_tritonclient_grpc(model_v1: Served, artifacts: dict[str, object]) -> None:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{model_v1.grpc_port}")
    assert client.is_server_live() and client.is_model_ready("churn")
    assert client.get_model_metadata("churn").inputs[0].name == "features"
    x = grpcclient.InferInput("features", list(ROWS.shape), "FP32")
    x.set_data_from_numpy(ROWS)
    result = client.infer("churn", [x])
    np.testing.assert_allclose(result.as_numpy("scores"), expected(str(artifacts["v1"])), 1e-6)
    with pytest.raises(Exception, match="no model"):
        client.infer("nope", [x])


def test_a_malformed_request_is_a_400(model_v1: Served) -> None:
    import httpx

    reply = httpx.post(f"{model_v1.url}/v2/models/churn/infer", content=b'{"inputs": 3}')
    assert reply.status_code == 400
    assert "inputs" in reply.json()["error"]
    assert httpx.post(f"{model_v1.url}/v2/models/other/infer", content=b"{}").status_code == 404


@pytest.mark.parametrize(
    "make",
    [
        lambda s: backends.HttpBackend("v1", s.url, "churn"),
        lambda s: backends.HttpBackend("v1", s.url, "churn", binary=False),
        lambda s: backends.TritonBackend("v1", s.url, "churn", "http"),
        lambda s: backends.TritonBackend("v1", f"127.0.0.1:{s.grpc_port}", "churn", "grpc"),
    ],
    ids=["http-binary", "http-json", "triton-http", "triton-grpc"],
)
def test_backends_answer_the_same(
    loop: support.Loop, model_v1: Served, artifacts: dict[str, object], make: object
) -> None:
    async def call() -> oip.InferResponse:
        backend = make(model_v1)  # type: ignore[operator]
        try:
            assert await backend.ready()
            request = oip.InferRequest([oip.Tensor("features", ROWS)], id="q")
            response: oip.InferResponse = await backend.infer(request, timeout=5)
            return response
        finally:
            await backend.close()

    response = loop.run(call())
    np.testing.assert_allclose(response.output("scores").data, expected(str(artifacts["v1"])), 1e-6)


def test_http_backend_reports_unreachable_and_timeout(loop: support.Loop) -> None:
    from tests.components.conftest import free_port

    async def call() -> backends.BackendError:
        backend = backends.HttpBackend("v9", f"http://127.0.0.1:{free_port()}", "churn")
        try:
            await backend.infer(oip.InferRequest([oip.Tensor("features", ROWS)]), 1)
        except backends.BackendError as exc:
            return exc
        finally:
            await backend.close()
        raise AssertionError("no error")

    error = loop.run(call())
    assert "v9" in str(error) and not error.timeout
