"""KServe v2 over gRPC: Triton's protobuf requests to build and answers to parse (pure).

Uses the generated messages shipped in ``tritonclient.grpc`` (``service_pb2``,
``model_config_pb2``). Each function returns a :class:`GrpcCall`: which RPC to call with which
message, and how to read the answer; the sync and async gRPC transports send it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from tritonclient.grpc import service_pb2

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
from packager.errors import InvalidInput

__all__ = ["GrpcCall", "GrpcCodec"]

_NUMPY = {d.wire: d.numpy for d in dtypes.ALL}


class GrpcCall(NamedTuple):
    """One RPC: ``getattr(stub, rpc)(request)``, then ``parse(response)``."""

    rpc: str
    request: Any
    parse: Callable[[Any], Any]
    what: str


def _ready(response: Any) -> bool:
    return bool(response.ready)


def _live(response: Any) -> bool:
    return bool(response.live)


def _same(response: Any) -> Any:
    return response


def _none(_response: Any) -> None:
    return None


def _metas(items: Any) -> tuple[TensorMeta, ...]:
    return tuple(TensorMeta(t.name, t.datatype, tuple(int(d) for d in t.shape)) for t in items)


def _metadata(r: Any) -> ModelMetadata:
    return ModelMetadata(r.name, tuple(r.versions), r.platform, _metas(r.inputs), _metas(r.outputs))


def _config(r: Any) -> Any:
    return r.config


def _index(r: Any) -> list[ModelInfo]:
    return [ModelInfo(m.name, m.version, m.state, m.reason) for m in r.models]


def _set_param(param: Any, value: Any, key: str) -> None:
    # bool before int: bool is an int in Python.
    if isinstance(value, bool):
        param.bool_param = value
    elif isinstance(value, int):
        param.int64_param = value
    elif isinstance(value, float):
        param.double_param = value
    elif isinstance(value, str):
        param.string_param = value
    else:
        raise InvalidInput(
            f"request parameter {key!r} is a {type(value).__name__}; use bool, int, float or str"
        )


class GrpcCodec:
    """Builds :class:`GrpcCall` objects; holds no channel."""

    def live(self) -> GrpcCall:
        return GrpcCall("ServerLive", service_pb2.ServerLiveRequest(), _live, "is_live")

    def ready(self) -> GrpcCall:
        return GrpcCall("ServerReady", service_pb2.ServerReadyRequest(), _ready, "is_ready")

    def server_metadata(self) -> GrpcCall:
        def parse(r: Any) -> ServerInfo:
            return ServerInfo(r.name, r.version, tuple(r.extensions))

        req = service_pb2.ServerMetadataRequest()
        return GrpcCall("ServerMetadata", req, parse, "server_metadata")

    def model_ready(self, model: str, version: str) -> GrpcCall:
        req = service_pb2.ModelReadyRequest(name=model, version=version)
        return GrpcCall("ModelReady", req, _ready, f"is_ready '{model}'")

    def metadata(self, model: str, version: str) -> GrpcCall:
        req = service_pb2.ModelMetadataRequest(name=model, version=version)
        return GrpcCall("ModelMetadata", req, _metadata, f"metadata '{model}'")

    def config(self, model: str, version: str) -> GrpcCall:
        req = service_pb2.ModelConfigRequest(name=model, version=version)
        return GrpcCall("ModelConfig", req, _config, f"config '{model}'")

    def statistics(self, model: str, version: str) -> GrpcCall:
        req = service_pb2.ModelStatisticsRequest(name=model, version=version)
        return GrpcCall("ModelStatistics", req, _same, f"statistics '{model or '*'}'")

    def index(self) -> GrpcCall:
        return GrpcCall("RepositoryIndex", service_pb2.RepositoryIndexRequest(), _index, "models")

    def load(self, model: str, config: str | None) -> GrpcCall:
        req = service_pb2.RepositoryModelLoadRequest(model_name=model)
        if config:
            req.parameters["config"].string_param = config
        return GrpcCall("RepositoryModelLoad", req, _none, f"load_model '{model}'")

    def unload(self, model: str, unload_dependents: bool) -> GrpcCall:
        req = service_pb2.RepositoryModelUnloadRequest(model_name=model)
        if unload_dependents:
            req.parameters["unload_dependents"].bool_param = True
        return GrpcCall("RepositoryModelUnload", req, _none, f"unload_model '{model}'")

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
    ) -> GrpcCall:
        req = service_pb2.ModelInferRequest(model_name=model, model_version=version, id=request_id)
        for p in inputs:
            t = req.inputs.add()
            t.name = p.name
            t.datatype = p.wire
            t.shape.extend(p.shape)
            # protobuf bytes fields need bytes: the one copy gRPC cannot avoid.
            req.raw_input_contents.append(p.data if p.wire == "BYTES" else p.data.tobytes())
        for name in outputs or ():
            req.outputs.add().name = name
        if priority:
            req.parameters["priority"].uint64_param = priority
        for key, value in (parameters or {}).items():
            _set_param(req.parameters[key], value, key)
        return GrpcCall("ModelInfer", req, _parse_infer, f"infer '{model}'")


def _parse_infer(r: Any) -> dict[str, np.ndarray]:
    """Outputs as arrays; numeric ones are read-only views of the response (no copy)."""
    out: dict[str, np.ndarray] = {}
    raw = r.raw_output_contents
    for i, t in enumerate(r.outputs):
        shape = tuple(t.shape)
        if t.datatype == "BYTES":
            out[t.name] = deserialize_bytes(raw[i], shape)
        else:
            out[t.name] = numeric_output(t.name, raw[i], _NUMPY[t.datatype], shape, len(raw[i]))
    return out
