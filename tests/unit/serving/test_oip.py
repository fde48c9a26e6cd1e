from __future__ import annotations

import json

import numpy as np
import pytest

from flywheel.serving import oip


def test_json_request_round_trip() -> None:
    body = json.dumps(
        {
            "id": "r1",
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4]]},
                {"name": "s", "datatype": "BYTES", "shape": [1], "data": ["a"]},
            ],
            "outputs": [{"name": "scores"}],
        }
    ).encode()
    request = oip.decode_request(body)
    assert request.id == "r1"
    assert request.input("x").data.dtype == np.float32
    assert request.input("x").data.tolist() == [[1, 2], [3, 4]]
    assert request.input("s").data.tolist() == [b"a"]
    assert request.outputs == {"scores": {}}
    again = oip.decode_request(oip.encode_request(request)[0])
    assert again.input("x").data.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize("datatype", sorted(oip.DATATYPES))
def test_binary_round_trip_of_every_datatype(datatype: str) -> None:
    data = [b"ab", b"", b"c"] if datatype == "BYTES" else [1, 0, 1]
    tensor = oip.Tensor.of("t", [data], datatype)
    body, headers = oip.encode_request(oip.InferRequest([tensor], id="b"), binary=True)
    assert headers[oip.HEADER_LENGTH] != str(len(body))
    decoded = oip.decode_request(body, headers[oip.HEADER_LENGTH]).input("t")
    assert decoded.datatype == datatype
    assert decoded.shape == [1, 3]
    assert decoded.data.tolist() == np.asarray(tensor.data).tolist()


def test_response_outputs_binary_only_when_asked() -> None:
    response = oip.InferResponse("m", [oip.Tensor.of("scores", [0.25, 0.5], "FP32")], "v1")
    body, headers = oip.encode_response(response, {"scores": {"binary_data": True}})
    decoded = oip.decode_response(body, headers[oip.HEADER_LENGTH])
    assert decoded.output().data.tolist() == [0.25, 0.5]
    body, headers = oip.encode_response(response)
    assert oip.HEADER_LENGTH not in headers
    assert json.loads(body)["outputs"][0]["data"] == [0.25, 0.5]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({}, "non-empty list"),
        ({"inputs": [{"name": "x", "datatype": "FP33", "shape": [1], "data": [1]}]}, "datatype"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1]}]}, "fill"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ["a"]}]}, "FP32"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}]}, "shape"),
    ],
)
def test_bad_requests_say_why(document: dict[str, object], message: str) -> None:
    with pytest.raises(oip.ProtocolError, match=message):
        oip.decode_request(json.dumps(document).encode())


def test_binary_size_beyond_the_body() -> None:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [2],
                    "parameters": {"binary_data_size": 8},
                }
            ]
        }
    ).encode()
    with pytest.raises(oip.ProtocolError, match="shorter"):
        oip.decode_request(head + b"\0\0\0\0", len(head))
