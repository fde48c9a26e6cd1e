"""Where a model version runs. Every backend answers one v2 inference request:

    await backend.infer(request, timeout=0.5) -> InferResponse   (raises BackendError)

- `HttpBackend`: any server speaking the Open Inference Protocol v2 over REST (Flywheel's
  model server, KServe, Triton), over a pool of keep-alive connections (httpclient.py).
- `TritonBackend`: Triton through `tritonclient` (its aio HTTP or gRPC client).
- `RayServeBackend`: a Ray Serve deployment through its `DeploymentHandle`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import numpy as np

from flywheel.serving import httpclient, oip

# httpclient gives header names in lower case.
_LENGTH_HEADER = oip.HEADER_LENGTH.lower()


class BackendError(Exception):
    """A failed call: the version erred, timed out or could not be reached, or
    (`rejected`) refused the request itself as malformed: the caller's fault, not the
    version's, so it never counts against the version."""

    def __init__(self, message: str, timeout: bool = False, rejected: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.rejected = rejected


class Backend(Protocol):
    version: str

    async def infer(self, request: oip.InferRequest, timeout: float) -> oip.InferResponse: ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


class HttpBackend:
    """A v2 REST server at `url` serving `model`; tensors go as binary when `binary`."""

    def __init__(
        self,
        version: str,
        url: str,
        model: str,
        binary: bool = True,
        max_connections: int = 256,
    ) -> None:
        self.version = version
        self.model = model
        self.binary = binary
        self._infer_path = f"/v2/models/{model}/infer"
        self._client = httpclient.HttpClient(url.rstrip("/"), max_connections)

    async def infer(self, request: oip.InferRequest, timeout: float) -> oip.InferResponse:
        if self.binary and request.outputs is None:
            # Ask for binary outputs too; reading them is cheaper than parsing JSON floats.
            request = oip.InferRequest(
                request.inputs, request.id, {**request.parameters, "binary_data_output": True}
            )
        body, headers = oip.encode_request(request, binary=self.binary)
        try:
            reply = await self._client.request("POST", self._infer_path, body, headers, timeout)
        except httpclient.HttpTimeout as exc:
            raise BackendError(f"{self.version}: timed out after {timeout:.3f}s", True) from exc
        except httpclient.HttpError as exc:
            raise BackendError(f"{self.version}: {exc}") from exc
        if reply.status != 200:
            raise BackendError(
                f"{self.version}: HTTP {reply.status}: {reply.text[:200]}",
                rejected=reply.status == 400,
            )
        try:
            return oip.decode_response(reply.body, reply.headers.get(_LENGTH_HEADER))
        except oip.ProtocolError as exc:
            raise BackendError(f"{self.version}: bad response: {exc}") from exc

    async def ready(self) -> bool:
        try:
            reply = await self._client.request("GET", "/v2/health/ready", timeout=2.0)
        except httpclient.HttpError:
            return False
        return reply.status == 200

    async def close(self) -> None:
        await self._client.close()


class TritonBackend:
    """Triton (or any v2 server) through tritonclient's aio client.

    `url` is host:port; `protocol` "http" (port 8000) or "grpc" (port 8001).
    """

    def __init__(self, version: str, url: str, model: str, protocol: str = "http") -> None:
        if protocol == "grpc":
            import tritonclient.grpc.aio as client
        elif protocol == "http":
            import tritonclient.http.aio as client
        else:
            raise ValueError(f"protocol must be http or grpc, not {protocol!r}")
        from tritonclient.utils import InferenceServerException

        self.version = version
        self.model = model
        self.protocol = protocol
        self.url = url.removeprefix("http://")
        self._client_module = client
        self._client_instance: Any = None
        self._error = InferenceServerException

    @property
    def _client(self) -> Any:
        # Made on first use: tritonclient's aio clients bind to the loop that makes them.
        if self._client_instance is None:
            self._client_instance = self._client_module.InferenceServerClient(self.url)
        return self._client_instance

    async def infer(self, request: oip.InferRequest, timeout: float) -> oip.InferResponse:
        client = self._client_module
        inputs = []
        for t in request.inputs:
            i = client.InferInput(t.name, t.shape, t.datatype)
            i.set_data_from_numpy(t.data)
            inputs.append(i)
        outputs = (
            [client.InferRequestedOutput(n) for n in request.outputs] if request.outputs else None
        )
        kwargs: dict[str, Any] = {"outputs": outputs, "request_id": request.id or ""}
        if self.protocol == "grpc":
            kwargs["client_timeout"] = timeout
        try:
            call = self._client.infer(self.model, inputs, **kwargs)
            result = await asyncio.wait_for(call, timeout)
        except TimeoutError as exc:
            raise BackendError(f"{self.version}: timed out after {timeout:.3f}s", True) from exc
        except self._error as exc:
            code = str(exc.status() or "")
            rejected = code in ("400", "StatusCode.INVALID_ARGUMENT")
            raise BackendError(f"{self.version}: {exc}", "Deadline" in code, rejected) from exc
        except Exception as exc:  # transport errors come in many types (aiohttp, grpc)
            raise BackendError(f"{self.version}: {type(exc).__name__}: {exc}") from exc
        response = result.get_response()
        if self.protocol == "grpc":
            names = [o.name for o in response.outputs]
        else:
            names = [o["name"] for o in response.get("outputs", [])]
        return oip.InferResponse(
            model_name=self.model,
            model_version=self.version,
            id=request.id,
            outputs=[oip.Tensor(n, np.asarray(result.as_numpy(n))) for n in names],
        )

    async def ready(self) -> bool:
        try:
            return bool(await self._client.is_server_ready())
        except Exception:
            return False

    async def close(self) -> None:
        if self._client_instance is not None:
            await self._client_instance.close()


class RayServeBackend:
    """A Ray Serve deployment, found by application and deployment name.

    Calls its `infer(InferRequest) -> InferResponse` method through the handle, so
    tensors travel as pickled numpy arrays, never as JSON.
    """

    def __init__(self, version: str, app_name: str, deployment: str = "Model") -> None:
        from ray import serve

        self.version = version
        self.app_name = app_name
        # No existence check: it is a blocking call to the controller, and a router
        # learns of a version (in `reconfigure`) before sending it traffic.
        handle = serve.get_deployment_handle(deployment, app_name, _check_exists=False)
        # By value over Serve's replica-to-replica gRPC, with plain pickle (the v2
        # dataclasses are importable): no object store round trip, no cloudpickle. The
        # cheapest hop Serve 2.60 offers; measured in tests/bench/test_bench_rayserve.py.
        self._infer = handle.options(
            method_name="infer",
            _by_reference=False,
            request_serialization="pickle",
            response_serialization="pickle",
        )

    async def infer(self, request: oip.InferRequest, timeout: float) -> oip.InferResponse:
        response = self._infer.remote(request)
        try:
            # A timeout scope rather than wait_for: no extra task per call.
            async with asyncio.timeout(timeout):
                result: oip.InferResponse = await response
        except TimeoutError as exc:
            response.cancel()  # type: ignore[no-untyped-call]
            raise BackendError(f"{self.version}: timed out after {timeout:.3f}s", True) from exc
        except oip.ProtocolError as exc:  # Ray re-raises the replica's error as its type too
            raise BackendError(f"{self.version}: {exc}", rejected=True) from exc
        except Exception as exc:  # a replica's exception, or Serve's own
            raise BackendError(f"{self.version}: {type(exc).__name__}: {exc}") from exc
        return result

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None
