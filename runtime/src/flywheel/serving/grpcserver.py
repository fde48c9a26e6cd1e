"""The v2 inference service over gRPC (the `inference.GRPCInferenceService` that
`tritonclient.grpc` and Triton speak), for any `InferenceService`.

Tensors travel as `raw_input_contents` / `raw_output_contents` (little-endian bytes,
BYTES as 4-byte length prefixes), as tritonclient sends them, or as typed `contents`.
"""

from __future__ import annotations

from typing import Any

import grpc  # type: ignore[import-untyped]
from tritonclient.grpc import service_pb2, service_pb2_grpc

from flywheel.serving import oip
from flywheel.serving.service import InferenceService, ServiceError

# OIP datatype -> the typed field of InferTensorContents.
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def decode(request: Any) -> oip.InferRequest:
    tensors = []
    raw = list(request.raw_input_contents)
    for i, t in enumerate(request.inputs):
        shape = [int(d) for d in t.shape]
        if i < len(raw):
            array = oip.from_bytes(raw[i], t.datatype, shape, t.name)
        else:
            values = list(getattr(t.contents, _CONTENTS[t.datatype]))
            array = oip.as_array(values, t.datatype).reshape(shape)
        tensors.append(oip.Tensor(t.name, array))
    outputs: dict[str, dict[str, Any]] | None = {o.name: {} for o in request.outputs} or None
    return oip.InferRequest(inputs=tensors, id=request.id or None, outputs=outputs)


def encode(response: oip.InferResponse, outputs: dict[str, Any] | None) -> Any:
    message = service_pb2.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version or "",
        id=response.id or "",
    )
    for t in response.outputs:
        if outputs and t.name not in outputs:
            continue
        message.outputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
        message.raw_output_contents.append(oip.to_bytes(t.data))
    return message


class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    def __init__(self, service: InferenceService) -> None:
        self.service = service

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerLiveResponse(live=self.service.live())

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerReadyResponse(ready=self.service.ready())

    async def ModelReady(self, request: Any, context: Any) -> Any:
        ok = request.name in self.service.model_names() and self.service.ready()
        return service_pb2.ModelReadyResponse(ready=ok)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerMetadataResponse(name="flywheel", version="2")

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        if request.name not in self.service.model_names():
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no model {request.name!r}")
        meta = self.service.metadata(request.name)
        return service_pb2.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[_tensor_meta(i) for i in meta["inputs"]],
            outputs=[_tensor_meta(o) for o in meta["outputs"]],
        )

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        if request.model_name not in self.service.model_names():
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no model {request.model_name!r}")
        headers = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        try:
            decoded = decode(request)
            response, _ = await self.service.infer(request.model_name, decoded, headers)
        except oip.ProtocolError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except ServiceError as exc:
            await context.abort(_STATUS.get(exc.status, grpc.StatusCode.INTERNAL), str(exc))
        return encode(response, decoded.outputs)


def _tensor_meta(item: dict[str, Any]) -> Any:
    return service_pb2.ModelMetadataResponse.TensorMetadata(
        name=item["name"], datatype=item["datatype"], shape=item["shape"]
    )


async def start(service: InferenceService, host: str, port: int) -> Any:
    """A started `grpc.aio` server; `await server.stop(grace)` ends it."""
    server = grpc.aio.server()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(service), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    await server.start()
    return server
