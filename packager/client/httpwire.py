"""KServe v2 over HTTP/1.1 as Triton speaks it: requests to build and answers to parse (pure).

Each function returns an :class:`HttpCall`: what to send and how to read the answer. The sync
and async HTTP transports send it; nothing here does I/O. Tensors always travel in Triton's
binary extension: a JSON header, then raw little-endian bytes (``Inference-Header-Content-Length``
says where the JSON ends).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import quote

import numpy as np

from packager import dtypes
from packager.client.core import (
    ModelInfo,
    ModelMetadata,
    Prepared,
    ServerInfo,
    TensorMeta,
    deserialize_bytes,
    numeric_output,
)
from packager.client.errors import ServerReply

__all__ = ["HEADER_LENGTH", "HttpCall", "HttpCodec"]

HEADER_LENGTH = "Inference-Header-Content-Length"
_HEADER_LENGTH_LOWER = HEADER_LENGTH.lower()
_NUMPY = {d.wire: d.numpy for d in dtypes.ALL}
_dumps = json.JSONEncoder(separators=(",", ":")).encode


class HttpCall(NamedTuple):
    """One HTTP exchange: ``parse(status, headers, body)`` turns the answer into a result."""

    method: str
    path: str  # starts with /v2, without the endpoint's base path
    body: Sequence[Any]  # buffers sent back to back (bytes, or C-contiguous ndarrays)
    headers: bytes  # extra header lines, rendered ("Name: value\r\n"...)
    parse: Callable[[int, Mapping[str, str], Any], Any]
    what: str  # names the call in error messages


def _model_path(model: str, version: str) -> str:
    path = f"/v2/models/{quote(model, safe='')}"
    return f"{path}/versions/{quote(str(version), safe='')}" if version else path


def _error_message(body: Any) -> str:
    try:
        return str(json.loads(bytes(body))["error"])
    except (ValueError, KeyError, TypeError):
        text = bytes(body).decode("utf-8", "replace").strip()
        return text or "(empty answer)"


def _json_or_raise(status: int, _headers: Mapping[str, str], body: Any) -> Any:
    if status != 200:
        raise ServerReply(status, _error_message(body))
    return json.loads(bytes(body)) if body else None


def _is_ok(status: int, _headers: Mapping[str, str], _body: Any) -> bool:
    return status == 200


def _ok_or_raise(status: int, headers: Mapping[str, str], body: Any) -> None:
    _json_or_raise(status, headers, body)


def _tensor_metas(items: Sequence[Mapping[str, Any]]) -> tuple[TensorMeta, ...]:
    return tuple(
        TensorMeta(t["name"], t["datatype"], tuple(int(d) for d in t["shape"])) for t in items
    )


def metadata_from_json(doc: Mapping[str, Any]) -> ModelMetadata:
    return ModelMetadata(
        name=doc["name"],
        versions=tuple(str(v) for v in doc.get("versions", ())),
        platform=doc.get("platform", ""),
        inputs=_tensor_metas(doc.get("inputs", ())),
        outputs=_tensor_metas(doc.get("outputs", ())),
    )


def _to_proto(message_type: Any, doc: Any) -> Any:
    from google.protobuf import json_format

    # Triton's JSON may name fields newer than the tritonclient protos: skip what we do not know.
    return json_format.ParseDict(doc, message_type(), ignore_unknown_fields=True)


class HttpCodec:
    """Builds :class:`HttpCall` objects; one instance per client (it holds no connection).

    The JSON header of a plain inference request (no parameters, priority, id or chosen
    outputs) depends only on the model and the inputs' names, types and sizes: it is cached.
    """

    def __init__(self) -> None:
        self._headers: dict[tuple[Any, ...], tuple[str, bytes, bytes]] = {}

    def live(self) -> HttpCall:
        return HttpCall("GET", "/v2/health/live", (), b"", _is_ok, "is_live")

    def ready(self) -> HttpCall:
        return HttpCall("GET", "/v2/health/ready", (), b"", _is_ok, "is_ready")

    def server_metadata(self) -> HttpCall:
        def parse(status: int, headers: Mapping[str, str], body: Any) -> ServerInfo:
            doc = _json_or_raise(status, headers, body) or {}
            return ServerInfo(
                str(doc.get("name", "")),
                str(doc.get("version", "")),
                tuple(doc.get("extensions", ())),
            )

        return HttpCall("GET", "/v2", (), b"", parse, "server_metadata")

    def model_ready(self, model: str, version: str) -> HttpCall:
        path = _model_path(model, version) + "/ready"
        return HttpCall("GET", path, (), b"", _is_ok, f"is_ready '{model}'")

    def metadata(self, model: str, version: str) -> HttpCall:
        def parse(status: int, headers: Mapping[str, str], body: Any) -> ModelMetadata:
            return metadata_from_json(_json_or_raise(status, headers, body))

        return HttpCall("GET", _model_path(model, version), (), b"", parse, f"metadata '{model}'")

    def config(self, model: str, version: str) -> HttpCall:
        def parse(status: int, headers: Mapping[str, str], body: Any) -> Any:
            from tritonclient.grpc import model_config_pb2

            return _to_proto(model_config_pb2.ModelConfig, _json_or_raise(status, headers, body))

        path = _model_path(model, version) + "/config"
        return HttpCall("GET", path, (), b"", parse, f"config '{model}'")

    def statistics(self, model: str, version: str) -> HttpCall:
        def parse(status: int, headers: Mapping[str, str], body: Any) -> Any:
            from tritonclient.grpc import service_pb2

            doc = _json_or_raise(status, headers, body)
            return _to_proto(service_pb2.ModelStatisticsResponse, doc)

        path = (_model_path(model, version) if model else "/v2/models") + "/stats"
        return HttpCall("GET", path, (), b"", parse, f"statistics '{model or '*'}'")

    def index(self) -> HttpCall:
        def parse(status: int, headers: Mapping[str, str], body: Any) -> list[ModelInfo]:
            rows = _json_or_raise(status, headers, body) or []
            return [
                ModelInfo(
                    r["name"], str(r.get("version", "")), r.get("state", ""), r.get("reason", "")
                )
                for r in rows
            ]

        return HttpCall("POST", "/v2/repository/index", (b"{}",), b"", parse, "models")

    def load(self, model: str, config: str | None) -> HttpCall:
        doc: dict[str, Any] = {"parameters": {"config": config}} if config else {}
        path = f"/v2/repository/models/{quote(model, safe='')}/load"
        body = (json.dumps(doc).encode(),)
        return HttpCall("POST", path, body, b"", _ok_or_raise, f"load_model '{model}'")

    def unload(self, model: str, unload_dependents: bool) -> HttpCall:
        doc = {"parameters": {"unload_dependents": True}} if unload_dependents else {}
        path = f"/v2/repository/models/{quote(model, safe='')}/unload"
        body = (json.dumps(doc).encode(),)
        return HttpCall("POST", path, body, b"", _ok_or_raise, f"unload_model '{model}'")

    def infer(
        self,
        model: str,
        version: str,
        inputs: Sequence[Prepared],
        outputs: Sequence[str] | None = None,
        *,
        request_id: str = "",
        priority: int = 0,
        parameters: Mapping[str, Any] | None = None,
    ) -> HttpCall:
        plain = not (outputs or request_id or priority or parameters)
        key: tuple[Any, ...] = ()
        if plain:
            key = (model, version, *[(p.name, p.wire, p.shape, _nbytes(p)) for p in inputs])
            hit = self._headers.get(key)
            if hit is not None:
                path, header, lines = hit
                return HttpCall(
                    "POST", path, [header, *[p.data for p in inputs]], lines, _parse_infer,
                    f"infer '{model}'",
                )  # fmt: skip
        tensors = [
            {
                "name": p.name,
                "shape": p.shape,
                "datatype": p.wire,
                "parameters": {"binary_data_size": _nbytes(p)},
            }
            for p in inputs
        ]
        doc: dict[str, Any] = {"inputs": tensors}
        params: dict[str, Any] = dict(parameters) if parameters else {}
        if outputs:
            doc["outputs"] = [{"name": n, "parameters": {"binary_data": True}} for n in outputs]
        else:
            params["binary_data_output"] = True
        if priority:
            params["priority"] = priority
        if request_id:
            doc["id"] = request_id
        doc["parameters"] = params
        header = _dumps(doc).encode()
        path = _model_path(model, version) + "/infer"
        lines = b"%s: %d\r\n" % (HEADER_LENGTH.encode(), len(header))
        if plain:
            if len(self._headers) >= 512:  # many distinct shapes: start over, stay small
                self._headers.clear()
            self._headers[key] = (path, header, lines)
        body = [header, *[p.data for p in inputs]]
        return HttpCall("POST", path, body, lines, _parse_infer, f"infer '{model}'")


def _nbytes(p: Prepared) -> int:
    return len(p.data) if p.wire == "BYTES" else int(p.data.nbytes)


# A response's JSON header is the same for every request of one shape: remember its layout
# (name, datatype, shape, byte size per output) by the header's bytes, and skip the JSON parse.
_LAYOUTS: dict[bytes, tuple[tuple[str, str, tuple[int, ...], int], ...]] = {}


def _layout(header: bytes) -> tuple[tuple[str, str, tuple[int, ...], int], ...] | None:
    """Per-output (name, wire, shape, nbytes), or None when an output came as JSON data."""
    doc = json.loads(header)
    layout = []
    for t in doc.get("outputs", ()):
        params = t.get("parameters") or {}
        if "binary_data_size" not in params:
            return None
        layout.append(
            (t["name"], t["datatype"], tuple(t["shape"]), int(params["binary_data_size"]))
        )
    if len(_LAYOUTS) >= 256:
        _LAYOUTS.clear()
    _LAYOUTS[header] = found = tuple(layout)
    return found


def _parse_infer(status: int, headers: Mapping[str, str], body: Any) -> dict[str, np.ndarray]:
    if status != 200:
        raise ServerReply(status, _error_message(body))
    size = headers.get(_HEADER_LENGTH_LOWER)
    hlen = int(size) if size is not None else len(body)
    header = bytes(body[:hlen])
    layout = _LAYOUTS.get(header) or _layout(header)
    if layout is None:
        return _parse_json_outputs(json.loads(header), body, hlen)
    out: dict[str, np.ndarray] = {}
    pos = hlen
    for name, wire, shape, nbytes in layout:
        if wire == "BYTES":
            out[name] = deserialize_bytes(memoryview(body)[pos : pos + nbytes], shape)
        else:
            out[name] = numeric_output(name, body, _NUMPY[wire], shape, nbytes, pos)
        pos += nbytes
    return out


def _parse_json_outputs(doc: Mapping[str, Any], body: Any, pos: int) -> dict[str, np.ndarray]:
    """Outputs where some came as JSON ``data`` (only when a caller asked for that)."""
    out: dict[str, np.ndarray] = {}
    for t in doc.get("outputs", ()):
        shape, wire = t["shape"], t["datatype"]
        nbytes = (t.get("parameters") or {}).get("binary_data_size")
        if nbytes is None:
            dtype = object if wire == "BYTES" else _NUMPY[wire]
            out[t["name"]] = np.array(t.get("data", []), dtype=dtype).reshape(shape)
            continue
        if wire == "BYTES":
            out[t["name"]] = deserialize_bytes(memoryview(body)[pos : pos + nbytes], shape)
        else:
            out[t["name"]] = numeric_output(
                t["name"], body, _NUMPY[wire], tuple(shape), nbytes, pos
            )
        pos += nbytes
    return out
