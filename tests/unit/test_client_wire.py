"""Requests and answers on the wire, without a server: HTTP/1.1 framing, KServe v2 binary
tensors over HTTP, and Triton's gRPC messages."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2

from packager.client.core import Prepared, serialize_bytes
from packager.client.errors import ConnectionClosed, ServerReply
from packager.client.grpcwire import GrpcCodec
from packager.client.http11 import ProtocolError, ResponseParser, render_head, render_headers
from packager.client.httpwire import HttpCodec, metadata_from_json
from packager.errors import InferenceServerError, InvalidInput

# -- HTTP/1.1 framing -------------------------------------------------------------------------


def parse_all(data: bytes, cut: int | None = None) -> ResponseParser:
    parser = ResponseParser()
    pieces = [data] if cut is None else [data[:cut], data[cut:]]
    for piece in pieces:
        parser.feed(piece)
    return parser


def test_head_and_headers() -> None:
    head = render_head("POST", "/v2/x", b"h:1", 5, render_headers({"A": "b"}))
    assert head == b"POST /v2/x HTTP/1.1\r\nHost: h:1\r\nContent-Length: 5\r\nA: b\r\n\r\n"
    with pytest.raises(ValueError, match="line break"):
        render_headers({"A": "b\r\nEvil: 1"})


RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Thing: 7\r\n\r\nhello"


@given(st.integers(min_value=0, max_value=len(RESPONSE)))
def test_content_length_response_in_any_two_pieces(cut: int) -> None:
    p = parse_all(RESPONSE, cut)
    assert p.done and p.status == 200 and bytes(p.body) == b"hello"
    assert p.headers["x-thing"] == "7" and p.keep_alive


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4\r\nWiki\r\n6;ext=1\r\npedia \r\n0\r\nTrailer: x\r\n\r\n"
)


@given(st.integers(min_value=0, max_value=len(CHUNKED)))
def test_chunked_response_in_any_two_pieces(cut: int) -> None:
    p = parse_all(CHUNKED, cut)
    assert p.done and bytes(p.body) == b"Wikipedia "


def test_body_until_close_and_connection_close() -> None:
    p = parse_all(b"HTTP/1.0 200 OK\r\n\r\nabc")
    assert not p.done
    p.eof()
    assert p.done and bytes(p.body) == b"abc" and not p.keep_alive
    p = parse_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert p.done and not p.keep_alive


def test_early_eof_and_garbage_are_connection_errors() -> None:
    p = parse_all(RESPONSE[:-2])
    with pytest.raises(ConnectionClosed):
        p.eof()
    with pytest.raises(ProtocolError, match="not an HTTP"):
        parse_all(b"SSH-2.0-OpenSSH\r\n\r\n")


def test_receiving_into_the_body_view() -> None:
    p = ResponseParser()
    p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nab")
    view = p.body_view()
    assert view is not None and len(view) == 4
    view[:4] = b"cdef"
    p.advance(4)
    assert p.done and bytes(p.body) == b"abcdef" and p.body_view() is None


# -- KServe v2 over HTTP ----------------------------------------------------------------------


def test_infer_request_is_json_header_then_raw_tensors() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    text = np.array([["ab"]], dtype=object)
    inputs = [
        Prepared("x", "FP32", (2, 3), x),
        Prepared("s", "BYTES", (1, 1), serialize_bytes(text)),
    ]
    call = HttpCodec().infer("m/1", "2", inputs, request_id="r", priority=1, parameters={"k": 3})
    assert call.method == "POST" and call.path == "/v2/models/m%2F1/versions/2/infer"
    header = call.body[0]
    assert call.headers == b"Inference-Header-Content-Length: %d\r\n" % len(header)
    doc = json.loads(header)
    assert doc["inputs"][0] == {
        "name": "x",
        "shape": [2, 3],
        "datatype": "FP32",
        "parameters": {"binary_data_size": 24},
    }
    assert doc["inputs"][1]["parameters"] == {"binary_data_size": 6}
    assert doc["parameters"] == {"k": 3, "binary_data_output": True, "priority": 1}
    assert doc["id"] == "r"
    assert call.body[1] is x  # the array itself is sent, not a copy


def test_plain_request_headers_are_cached_per_shape() -> None:
    codec = HttpCodec()
    one = codec.infer("m", "", [Prepared("x", "FP32", (1, 2), np.zeros((1, 2), np.float32))])
    again = codec.infer("m", "", [Prepared("x", "FP32", (1, 2), np.ones((1, 2), np.float32))])
    other = codec.infer("m", "", [Prepared("x", "FP32", (3, 2), np.ones((3, 2), np.float32))])
    assert again.body[0] is one.body[0]  # same JSON header object, new data
    assert np.array_equal(again.body[1], np.ones((1, 2)))
    assert json.loads(other.body[0])["inputs"][0]["shape"] == [3, 2]
    with_id = codec.infer("m", "", one_input(), request_id="a")
    assert json.loads(with_id.body[0])["id"] == "a"


def one_input() -> list[Prepared]:
    return [Prepared("x", "FP32", (1, 2), np.zeros((1, 2), np.float32))]


def test_requested_outputs_are_binary() -> None:
    call = HttpCodec().infer("m", "", [], ["a"])
    doc = json.loads(call.body[0])
    assert doc["outputs"] == [{"name": "a", "parameters": {"binary_data": True}}]
    assert "binary_data_output" not in doc["parameters"]


def infer_response(outputs: list[tuple[str, str, list[int], bytes]]) -> tuple[dict, bytearray]:
    doc = {
        "model_name": "m",
        "outputs": [
            {"name": n, "datatype": d, "shape": s, "parameters": {"binary_data_size": len(b)}}
            for n, d, s, b in outputs
        ],
    }
    header = json.dumps(doc).encode()
    body = bytearray(header + b"".join(b for *_, b in outputs))
    return {"inference-header-content-length": str(len(header))}, body


def test_infer_response_to_arrays_without_copies() -> None:
    y = np.arange(4, dtype=np.int64).reshape(2, 2)
    words = np.array([b"x", b"\x00yz"], dtype=object)
    headers, body = infer_response(
        [("y", "INT64", [2, 2], y.tobytes()), ("w", "BYTES", [2], serialize_bytes(words))]
    )
    out = HttpCodec().infer("m", "", []).parse(200, headers, body)
    assert np.array_equal(out["y"], y) and out["y"].dtype == np.int64
    again = HttpCodec().infer("m", "", []).parse(200, headers, bytearray(body))  # cached layout
    assert np.array_equal(again["y"], y) and list(again["w"]) == list(out["w"])
    assert np.shares_memory(out["y"], np.frombuffer(body, np.uint8))
    assert list(out["w"]) == [b"x", b"\x00yz"]


def test_an_empty_answer_for_a_non_empty_shape_is_the_servers_error() -> None:
    """What Triton 2.51's Python backend under numpy 2 sends: HTTP 200, shape [5, 3], 0 bytes."""
    headers, body = infer_response([("y", "FP32", [5, 3], b"")])
    with pytest.raises(InferenceServerError, match=r"'y' with 0 bytes.*\[5, 3\].*needs 60"):
        HttpCodec().infer("m", "", []).parse(200, headers, body)
    resp = service_pb2.ModelInferResponse()
    resp.outputs.add(name="y", datatype="FP32", shape=[5, 3])
    resp.raw_output_contents.append(b"")
    with pytest.raises(InferenceServerError, match="numpy 2"):
        GrpcCodec().infer("m", "", []).parse(resp)


def test_infer_response_with_json_data() -> None:
    doc = {"outputs": [{"name": "y", "datatype": "FP32", "shape": [2], "data": [1.5, 2]}]}
    out = HttpCodec().infer("m", "", []).parse(200, {}, json.dumps(doc).encode())
    assert out["y"].dtype == np.float32 and list(out["y"]) == [1.5, 2.0]


def test_error_answer_becomes_server_reply() -> None:
    call = HttpCodec().infer("m", "", [])
    with pytest.raises(ServerReply) as info:
        call.parse(400, {}, b'{"error":"bad input"}')
    assert (info.value.status, info.value.message) == (400, "bad input")
    with pytest.raises(ServerReply, match="not json"):
        call.parse(502, {}, b"not json")


def test_control_calls() -> None:
    codec = HttpCodec()
    assert codec.model_ready("a b", "3").path == "/v2/models/a%20b/versions/3/ready"
    assert codec.model_ready("m", "").parse(400, {}, b"") is False
    assert codec.statistics("", "").path == "/v2/models/stats"
    rows = codec.index().parse(
        200, {}, b'[{"name":"m","version":"1","state":"READY"},{"name":"n"}]'
    )
    assert [tuple(r) for r in rows] == [("m", "1", "READY", ""), ("n", "", "", "")]
    assert json.loads(codec.load("m", '{"x":1}').body[0]) == {"parameters": {"config": '{"x":1}'}}
    assert json.loads(codec.unload("m", True).body[0]) == {
        "parameters": {"unload_dependents": True}
    }
    config = codec.config("m", "").parse(
        200,
        {},
        b'{"name":"m","max_batch_size":4,"future_field":1,"input":[{"name":"x","dims":[2]}]}',
    )
    assert config.max_batch_size == 4 and list(config.input[0].dims) == [2]
    info = codec.server_metadata().parse(
        200, {}, b'{"name":"triton","version":"2.51.0","extensions":["classification"]}'
    )
    assert tuple(info) == ("triton", "2.51.0", ("classification",))


def test_metadata_from_json() -> None:
    meta = metadata_from_json(
        {
            "name": "m",
            "versions": ["1", "2"],
            "platform": "python",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
            "outputs": [],
        }
    )
    assert meta.versions == ("1", "2") and meta.inputs[0].shape == (-1, 3)


# -- gRPC -------------------------------------------------------------------------------------


def test_grpc_infer_request_and_response() -> None:
    x = np.arange(3, dtype=np.int32).reshape(1, 3)
    call = GrpcCodec().infer(
        "m",
        "2",
        [Prepared("x", "INT32", (1, 3), x)],
        ["y"],
        request_id="r",
        priority=2,
        parameters={"flag": True, "n": 3, "f": 0.5, "s": "t"},
    )
    req = call.request
    assert (call.rpc, req.model_name, req.model_version, req.id) == ("ModelInfer", "m", "2", "r")
    assert list(req.inputs[0].shape) == [1, 3] and req.raw_input_contents[0] == x.tobytes()
    assert [o.name for o in req.outputs] == ["y"]
    assert req.parameters["priority"].uint64_param == 2
    assert req.parameters["flag"].bool_param is True
    assert req.parameters["n"].int64_param == 3
    assert req.parameters["f"].double_param == 0.5 and req.parameters["s"].string_param == "t"

    resp = service_pb2.ModelInferResponse()
    t = resp.outputs.add(name="y", datatype="FP16", shape=[3])
    resp.raw_output_contents.append(np.ones(3, np.float16).tobytes())
    t = resp.outputs.add(name="w", datatype="BYTES", shape=[1])
    resp.raw_output_contents.append(serialize_bytes(np.array([b"ok"], dtype=object)))
    assert t.name == "w"
    out = call.parse(resp)
    assert out["y"].dtype == np.float16 and list(out["y"]) == [1, 1, 1]
    assert list(out["w"]) == [b"ok"]


def test_grpc_parameter_types_are_checked() -> None:
    with pytest.raises(InvalidInput, match="request parameter 'bad' is a list"):
        GrpcCodec().infer("m", "", [], parameters={"bad": [1]})


def test_grpc_control_calls() -> None:
    codec = GrpcCodec()
    assert codec.model_ready("m", "1").parse(service_pb2.ModelReadyResponse(ready=True)) is True
    index = service_pb2.RepositoryIndexResponse()
    index.models.add(name="m", version="1", state="READY", reason="")
    assert codec.index().parse(index)[0].state == "READY"
    assert codec.load("m", "{}").request.parameters["config"].string_param == "{}"
    assert codec.unload("m", True).request.parameters["unload_dependents"].bool_param
    meta = service_pb2.ServerMetadataResponse(name="triton", version="2.51.0", extensions=["x"])
    assert codec.server_metadata().parse(meta) == ("triton", "2.51.0", ("x",))
