"""The Open Inference Protocol v2 (KServe v2 / Triton) REST codec: tensors, requests,
responses, with Triton's binary tensor extension.

A request body is JSON, or JSON followed by raw tensor bytes when the header
`Inference-Header-Content-Length` gives the JSON's length and an input carries
`parameters.binary_data_size` (what `tritonclient.http` sends by default):

    {"id": "r1", "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 2],
                             "data": [0.5, 1.5]}]}
    -> InferRequest(id="r1", inputs=[Tensor("features", "FP32", [1, 2], array(...))])

Tensors are numpy arrays; BYTES tensors are object arrays of `bytes`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_SIZE = "binary_data_size"

# OIP v2 datatype -> numpy dtype (BYTES: object arrays of bytes).
DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}


# numpy dtype -> OIP v2 datatype: one dict lookup per tensor on the hot path.
_NAMES: dict[np.dtype[Any], str] = {np.dtype(t): name for name, t in DATATYPES.items()}


class ProtocolError(ValueError):
    """A request or response that does not follow the protocol (HTTP 400)."""


def datatype_of(array: np.ndarray) -> str:
    """The OIP v2 datatype of a numpy array.

    >>> datatype_of(np.zeros(2, np.float32))
    'FP32'
    """
    name = _NAMES.get(array.dtype)
    if name is not None:
        return name
    if array.dtype.kind in "SU":
        return "BYTES"
    raise ProtocolError(f"no OIP v2 datatype for numpy {array.dtype}")


@dataclasses.dataclass
class Tensor:
    name: str
    data: np.ndarray
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def datatype(self) -> str:
        return datatype_of(self.data)

    @property
    def shape(self) -> list[int]:
        return list(self.data.shape)

    @classmethod
    def of(cls, name: str, data: Any, datatype: str | None = None) -> Tensor:
        """A tensor from anything numpy takes; `datatype` fixes the numpy type."""
        if datatype is not None:
            return cls(name, as_array(data, datatype).reshape(np.shape(data)))
        return cls(name, np.asarray(data))


@dataclasses.dataclass
class InferRequest:
    inputs: list[Tensor]
    id: str | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Requested outputs: name -> parameters ({"binary_data": true} asks for raw bytes).
    outputs: dict[str, dict[str, Any]] | None = None

    def input(self, name: str | None = None) -> Tensor:
        """The named input, or the first one."""
        if not self.inputs:
            raise ProtocolError("the request has no inputs")
        if name is None:
            return self.inputs[0]
        for t in self.inputs:
            if t.name == name:
                return t
        raise ProtocolError(f"no input named {name!r}")


@dataclasses.dataclass
class InferResponse:
    model_name: str
    outputs: list[Tensor]
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)

    def output(self, name: str | None = None) -> Tensor:
        if not self.outputs:
            raise ProtocolError("the response has no outputs")
        if name is None:
            return self.outputs[0]
        for t in self.outputs:
            if t.name == name:
                return t
        raise ProtocolError(f"no output named {name!r}")


# --- decoding ------------------------------------------------------------------------


def split_body(body: bytes, header_length: str | int | None) -> tuple[dict[str, Any], bytes]:
    """The JSON document and the binary tail of a request or response body."""
    size = len(body) if header_length is None or header_length == "" else int(header_length)
    if size < 0 or size > len(body):
        raise ProtocolError(f"{HEADER_LENGTH} {size} is outside the body of {len(body)} bytes")
    try:
        document = json.loads(body[:size]) if size else {}
    except ValueError as exc:
        raise ProtocolError(f"the body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ProtocolError("the body must be a JSON object")
    return document, body[size:]


def decode_request(body: bytes, header_length: str | int | None = None) -> InferRequest:
    document, tail = split_body(body, header_length)
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError("'inputs' must be a non-empty list")
    inputs, rest = _tensors(raw_inputs, tail)
    if rest:
        raise ProtocolError(f"{len(rest)} bytes of binary data are not claimed by any input")
    outputs = None
    if isinstance(document.get("outputs"), list):
        outputs = {
            str(o["name"]): dict(o.get("parameters") or {})
            for o in document["outputs"]
            if isinstance(o, dict) and "name" in o
        }
    return InferRequest(
        inputs=inputs,
        id=_optional_str(document.get("id")),
        parameters=dict(document.get("parameters") or {}),
        outputs=outputs,
    )


def decode_response(body: bytes, header_length: str | int | None = None) -> InferResponse:
    document, tail = split_body(body, header_length)
    if "error" in document:
        raise ProtocolError(str(document["error"]))
    outputs, _ = _tensors(document.get("outputs") or [], tail)
    return InferResponse(
        model_name=str(document.get("model_name", "")),
        model_version=_optional_str(document.get("model_version")),
        id=_optional_str(document.get("id")),
        parameters=dict(document.get("parameters") or {}),
        outputs=outputs,
    )


def _tensors(raw: list[Any], tail: bytes) -> tuple[list[Tensor], bytes]:
    out = []
    offset = 0
    for item in raw:
        if not isinstance(item, dict):
            raise ProtocolError("every tensor must be a JSON object")
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(name, str) or datatype not in DATATYPES:
            raise ProtocolError(
                f"tensor {name!r}: needs a name and a datatype in {', '.join(DATATYPES)}"
            )
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ProtocolError(f"tensor {name!r}: shape must be a list of non-negative ints")
        parameters = dict(item.get("parameters") or {})
        size = parameters.pop(BINARY_SIZE, None)
        if size is not None:
            chunk = tail[offset : offset + int(size)]
            if len(chunk) != int(size):
                raise ProtocolError(f"tensor {name!r}: binary data is shorter than {size} bytes")
            offset += int(size)
            array = from_bytes(chunk, datatype, shape, name)
        else:
            if "data" not in item:
                raise ProtocolError(f"tensor {name!r}: no data")
            array = as_array(item["data"], datatype)
            count = math.prod(shape)  # exact, and ~60x cheaper than numpy's for a short list
            if array.size != count:
                raise ProtocolError(
                    f"tensor {name!r}: {array.size} values do not fill shape {shape}"
                )
            array = array.reshape(shape)
        out.append(Tensor(name, array, parameters))
    return out, tail[offset:]


def as_array(data: Any, datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        flat = np.asarray(data, dtype=object).reshape(-1)
        return np.array([v.encode() if isinstance(v, str) else bytes(v) for v in flat], object)
    try:
        return np.asarray(data, dtype=DATATYPES[datatype]).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"data is not {datatype}: {exc}") from None


def from_bytes(chunk: bytes, datatype: str, shape: list[int], name: str) -> np.ndarray:
    if datatype == "BYTES":
        items = []
        pos = 0
        while pos < len(chunk):
            (n,) = struct.unpack_from("<I", chunk, pos)
            items.append(chunk[pos + 4 : pos + 4 + n])
            pos += 4 + n
        return np.array(items, dtype=object).reshape(shape)
    dtype = np.dtype(DATATYPES[datatype])
    if len(chunk) != math.prod(shape) * dtype.itemsize:
        raise ProtocolError(f"tensor {name!r}: {len(chunk)} bytes do not fill shape {shape}")
    return np.frombuffer(chunk, dtype=dtype.newbyteorder("<")).reshape(shape)


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


# --- encoding ------------------------------------------------------------------------


def encode_request(request: InferRequest, binary: bool = False) -> tuple[bytes, dict[str, str]]:
    """The body and the headers to send (the header length when `binary`)."""
    document: dict[str, Any] = {}
    if request.id is not None:
        document["id"] = request.id
    if request.parameters:
        document["parameters"] = request.parameters
    if request.outputs is not None:
        document["outputs"] = [{"name": n, "parameters": p} for n, p in request.outputs.items()]
    return _encode(document, "inputs", request.inputs, lambda _: binary)


def encode_response(
    response: InferResponse,
    requested: Mapping[str, Mapping[str, Any]] | None = None,
    binary_default: bool = False,
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a response; outputs go binary when the request asked."""
    outputs = response.outputs
    if requested:
        outputs = [t for t in outputs if t.name in requested]
    document: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version is not None:
        document["model_version"] = response.model_version
    if response.id is not None:
        document["id"] = response.id
    if response.parameters:
        document["parameters"] = response.parameters

    def wants_binary(t: Tensor) -> bool:
        asked = (requested or {}).get(t.name, {})
        return bool(asked.get("binary_data", binary_default))

    return _encode(document, "outputs", outputs, wants_binary)


def _encode(
    document: dict[str, Any], key: str, tensors: Sequence[Tensor], binary: Any
) -> tuple[bytes, dict[str, str]]:
    chunks: list[bytes] = []
    items = []
    for t in tensors:
        item: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": t.shape}
        parameters = dict(t.parameters)
        if binary(t):
            raw = to_bytes(t.data)
            parameters[BINARY_SIZE] = len(raw)
            chunks.append(raw)
        else:
            item["data"] = _to_json_data(t.data)
        if parameters:
            item["parameters"] = parameters
        items.append(item)
    document[key] = items
    head = json.dumps(document, separators=(",", ":")).encode()
    headers = {"content-type": "application/json"}
    if chunks:
        headers = {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(head))}
        return b"".join([head, *chunks]), headers
    return head, headers


def to_bytes(array: np.ndarray) -> bytes:
    if datatype_of(array) == "BYTES":
        out = []
        for v in array.reshape(-1):
            b = v.encode() if isinstance(v, str) else bytes(v)
            out.append(struct.pack("<I", len(b)) + b)
        return b"".join(out)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def _to_json_data(array: np.ndarray) -> list[Any]:
    flat = array.reshape(-1)
    if datatype_of(array) == "BYTES":
        return [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in flat]
    values: list[Any] = flat.tolist()
    return values


# --- metadata ------------------------------------------------------------------------


def model_metadata(
    name: str,
    versions: Sequence[str],
    inputs: Sequence[Mapping[str, Any]],
    outputs: Sequence[Mapping[str, Any]],
    platform: str = "flywheel",
) -> dict[str, Any]:
    """`GET /v2/models/{name}`: name, versions, platform, inputs and outputs."""
    return {
        "name": name,
        "versions": list(versions),
        "platform": platform,
        "inputs": [dict(i) for i in inputs],
        "outputs": [dict(o) for o in outputs],
    }


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()
