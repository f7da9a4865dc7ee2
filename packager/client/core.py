"""The pure part of the client: addresses, model facts, and checking inputs before they are sent.

Nothing here touches the network. :class:`~packager.client.Client` and
:class:`~packager.client.AsyncClient` both call these functions, so that they differ only in how
they send. Every dtype question goes through :mod:`packager.dtypes`.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

import numpy as np

from packager import dtypes
from packager.dtypes import DType
from packager.errors import InferenceServerError, InvalidInput
from packager.releases import DEFAULT_HOST, TRITON_PORTS

__all__ = [
    "Endpoint",
    "InputFacts",
    "ModelFacts",
    "ModelInfo",
    "ModelMetadata",
    "Prepared",
    "RetryPolicy",
    "SequenceFlags",
    "TLSOptions",
    "TensorMeta",
    "concat_outputs",
    "default_url",
    "deserialize_bytes",
    "facts_from",
    "parse_url",
    "prepare_inputs",
    "serialize_bytes",
    "split_batches",
]

Protocol = Literal["http", "grpc"]
_SCHEMES: dict[str, tuple[Protocol, bool]] = {
    "http": ("http", False),
    "https": ("http", True),
    "grpc": ("grpc", False),
    "grpcs": ("grpc", True),
}
PROTOCOLS: tuple[Protocol, ...] = ("http", "grpc")


@dataclass(frozen=True)
class Endpoint:
    """Where a server listens: ``protocol``, ``host``, ``port``, HTTP ``base_path``, ``tls``."""

    protocol: Protocol
    host: str
    port: int
    base_path: str = ""
    tls: bool = False

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        scheme = {("http", False): "http", ("http", True): "https"}.get(
            (self.protocol, self.tls), "grpcs" if self.tls else "grpc"
        )
        return f"{scheme}://{self.address}{self.base_path}"


def default_url(protocol: str | None = None) -> str:
    """Where a client calls without a URL: the local server's port of ``protocol`` (HTTP)."""
    proto = protocol or "http"
    return f"{proto}://{DEFAULT_HOST}:{TRITON_PORTS[proto]}"


def parse_url(url: str | None, protocol: str | None = None) -> Endpoint:
    """``"localhost:8000"``, ``"http://h:8000/prefix"``, ``"grpc://h:8001"``, ``"grpcs://h"``...

    HTTP is the default; ``protocol`` (``"http"``/``"grpc"``) applies to URLs without a scheme
    and must agree with one that has a scheme. No URL (None or "") means the local server on
    the protocol's default port, so ``protocol="grpc"`` alone calls ``localhost:8001``.
    """
    if protocol is not None and protocol not in PROTOCOLS:
        raise InvalidInput(f"protocol must be 'http' or 'grpc'; got {protocol!r}")
    text = (url or "").strip() or default_url(protocol)
    if "://" not in text:
        text = f"{protocol or 'http'}://{text}"
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise InvalidInput(
            f"unsupported URL scheme {parts.scheme!r} in {url!r}; use http://, https://, "
            "grpc:// or grpcs:// (or host:port for HTTP)"
        )
    proto, tls = _SCHEMES[scheme]
    if protocol is not None and protocol != proto:
        raise InvalidInput(
            f"URL {url!r} is {proto} but protocol {protocol!r} was asked for; drop one of "
            f"them or make them agree (e.g. {default_url(protocol)})"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"bad port in URL {url!r}: {exc}") from None
    if not parts.hostname:
        raise InvalidInput(f"URL {url!r} has no host; use e.g. localhost:8000")
    base = parts.path.rstrip("/")
    if base and proto == "grpc":
        raise InvalidInput(f"gRPC URLs take no path; got {url!r}")
    return Endpoint(proto, parts.hostname, port or TRITON_PORTS[proto], base, tls)


@dataclass(frozen=True)
class TLSOptions:
    """Certificates for https:// and grpcs:// (PEM files); ``verify=False`` skips checks (HTTP)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True


@dataclass(frozen=True)
class RetryPolicy:
    """Retries for connection-level failures only (never for errors the server answered with)."""

    retries: int = 2
    backoff_s: float = 0.05
    max_backoff_s: float = 1.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based): exponential, capped."""
        return float(min(self.max_backoff_s, self.backoff_s * (2**attempt)))


@dataclass(frozen=True)
class SequenceFlags:
    """Which sequence a request of a stateful model belongs to, and whether it starts or ends
    it (Triton's ``sequence_id`` / ``sequence_start`` / ``sequence_end`` request parameters)."""

    sequence_id: int | str
    start: bool = False
    end: bool = False

    @classmethod
    def of(cls, sequence_id: int | str, start: bool, end: bool) -> SequenceFlags | None:
        """The flags of one ``infer`` call, or None for a request outside any sequence."""
        if isinstance(sequence_id, bool) or not isinstance(sequence_id, (int, str)):
            raise InvalidInput(
                f"sequence_id must be a positive integer or a non-empty string; got {sequence_id!r}"
            )
        if not sequence_id:  # 0 or "": no sequence
            if start or end:
                raise InvalidInput(
                    "sequence_start / sequence_end need a sequence_id (a positive integer or a "
                    "non-empty string), or use client.sequence(model)"
                )
            return None
        if isinstance(sequence_id, int) and not 0 < sequence_id < 2**64:
            raise InvalidInput(f"sequence_id must be in 1..2^64-1; got {sequence_id}")
        return cls(sequence_id, bool(start), bool(end))

    def parameters(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sequence_id": self.sequence_id}
        if self.start:
            out["sequence_start"] = True
        if self.end:
            out["sequence_end"] = True
        return out


class ServerInfo(NamedTuple):
    """The server's metadata: its name, release version and protocol extensions."""

    name: str
    version: str
    extensions: tuple[str, ...]


class ModelInfo(NamedTuple):
    """One row of the server's repository index."""

    name: str
    version: str
    state: str  # READY, UNAVAILABLE, LOADING, UNLOADING, or "" when never loaded
    reason: str


@dataclass(frozen=True)
class TensorMeta:
    """A model input or output as the server's metadata describes it (batch dim included)."""

    name: str
    datatype: str  # wire name, e.g. "FP32"
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelMetadata:
    """What ``GET /v2/models/<name>`` (or gRPC ModelMetadata) answers."""

    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]


@dataclass(frozen=True)
class InputFacts:
    """One input as the client checks it: dtype and config dims (without the batch dim)."""

    name: str
    dtype: DType
    dims: tuple[int, ...]
    optional: bool = False


@dataclass(frozen=True)
class ModelFacts:
    """Metadata + config of one (model, version), fetched once and cached by the clients."""

    name: str
    version: str
    max_batch_size: int
    inputs: dict[str, InputFacts]
    outputs: dict[str, DType]
    metadata: ModelMetadata
    config: Any = field(repr=False)  # model_config_pb2.ModelConfig

    @property
    def required(self) -> list[str]:
        return [n for n, f in self.inputs.items() if not f.optional]


def facts_from(metadata: ModelMetadata, config: Any, version: str) -> ModelFacts:
    """Combine metadata (datatypes) and config (dims, max_batch_size, optional inputs)."""
    from tritonclient.grpc import model_config_pb2

    type_name = model_config_pb2.DataType.Name
    inputs: dict[str, InputFacts] = {}
    by_name = {i.name: i for i in config.input}
    for meta in metadata.inputs:
        cfg = by_name.get(meta.name)
        mbs = config.max_batch_size
        dims = tuple(cfg.dims) if cfg is not None else tuple(meta.shape[1 if mbs else 0 :])
        dtype = dtypes.from_config(type_name(cfg.data_type)) if cfg else dtypes.parse(meta.datatype)
        inputs[meta.name] = InputFacts(meta.name, dtype, dims, bool(cfg and cfg.optional))
    outputs = {o.name: dtypes.parse(o.datatype) for o in metadata.outputs}
    return ModelFacts(
        metadata.name, version, int(config.max_batch_size), inputs, outputs, metadata, config
    )


class Prepared(NamedTuple):
    """One checked input, ready for the wire: ``data`` is C-contiguous (BYTES: serialized)."""

    name: str
    wire: str
    shape: tuple[int, ...]
    data: Any  # np.ndarray (numeric, C-contiguous) or bytes (serialized BYTES)


def _texts_as_rows(facts: ModelFacts, spec: InputFacts, value: Any) -> Any:
    """A plain list of strings for a text model (one BYTES input of dims [1], batching):
    one request row per string, so that ``infer("name", ["a text", "another"])`` works."""
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, (str, bytes)) for v in value)
        and spec.dtype.wire == "BYTES"
        and spec.dims == (1,)
        and facts.max_batch_size > 0
    ):
        return np.array(value, dtype=object).reshape(len(value), 1)
    return value


def prepare_inputs(facts: ModelFacts, inputs: Any) -> list[Prepared]:
    """Check names, dtypes and shapes against the model; cast only where no value can change.

    ``inputs`` is a mapping name -> array, or one array-like when the model has one input.
    """
    if not isinstance(inputs, Mapping):
        if len(facts.inputs) != 1:
            raise InvalidInput(
                f"model '{facts.name}' has {len(facts.inputs)} inputs ({_names(facts.inputs)}); "
                "pass a dict {name: array}"
            )
        only = next(iter(facts.inputs.values()))
        inputs = {only.name: _texts_as_rows(facts, only, inputs)}
    out: list[Prepared] = []
    for name, value in inputs.items():
        spec = facts.inputs.get(name)
        if spec is None:
            raise InvalidInput(
                f"model '{facts.name}' has no input {name!r}; inputs are: {_names(facts.inputs)}"
            )
        out.append(_prepare_one(facts, spec, value))
    if facts.max_batch_size > 0 and len({p.shape[0] for p in out}) > 1:
        # Triton refuses it ("batch size does not match other inputs"): say so before sending.
        sizes = ", ".join(f"{p.name} {p.shape[0]}" for p in out)
        raise InvalidInput(
            f"inputs of model '{facts.name}' must have the same batch size (first dim); got {sizes}"
        )
    if len(out) < len(facts.inputs):
        missing = [n for n in facts.required if n not in inputs]
        if missing:
            raise InvalidInput(
                f"model '{facts.name}' needs input(s) {', '.join(missing)}; "
                f"inputs are: {_names(facts.inputs)}"
            )
    return out


def _names(items: Mapping[str, Any]) -> str:
    return ", ".join(items) or "(none)"


def _prepare_one(facts: ModelFacts, spec: InputFacts, value: Any) -> Prepared:
    want = spec.dtype
    if want.wire == "BYTES":
        arr = value if isinstance(value, np.ndarray) else np.asarray(value, dtype=object)
        if arr.dtype.kind not in "OSU":
            raise InvalidInput(
                f"input '{spec.name}' of model '{facts.name}' is BYTES (strings); got an array "
                f"of {arr.dtype}; pass str or bytes values"
            )
        _check_shape(facts, spec, arr.shape)
        return Prepared(spec.name, "BYTES", arr.shape, serialize_bytes(arr, spec.name))
    if isinstance(value, np.ndarray):
        arr = value
        if arr.dtype != want.numpy:
            arr = _safe_cast(facts, spec, arr)
    else:
        # Python lists and scalars carry no dtype of their own: convert them to the model's.
        try:
            arr = np.asarray(value, dtype=want.numpy)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                f"input '{spec.name}' of model '{facts.name}' could not be read as "
                f"{want.wire} ({exc})"
            ) from None
    _check_shape(facts, spec, arr.shape)
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    # BF16 travels as uint16 in numpy: the wire name comes from the model, not from the array.
    return Prepared(spec.name, want.wire, arr.shape, arr)


def _safe_cast(facts: ModelFacts, spec: InputFacts, arr: np.ndarray) -> np.ndarray:
    want = spec.dtype
    if want.wire == "BF16" and arr.dtype == np.uint16:
        return arr
    if arr.dtype.kind in "OSU":
        raise InvalidInput(
            f"input '{spec.name}' of model '{facts.name}' is {want.wire}; got strings ({arr.dtype})"
        )
    if np.can_cast(arr.dtype, want.numpy, casting="safe"):
        return arr.astype(want.numpy)
    raise InvalidInput(
        f"input '{spec.name}' of model '{facts.name}' is {want.wire} ({want.numpy}); got "
        f"{arr.dtype}, which cannot be cast without losing values; convert it yourself, e.g. "
        f"x.astype(np.{want.numpy})"
    )


def _check_shape(facts: ModelFacts, spec: InputFacts, shape: tuple[int, ...]) -> None:
    dims = spec.dims
    mbs = facts.max_batch_size
    if mbs > 0:
        if len(shape) != len(dims) + 1:
            raise InvalidInput(
                f"input '{spec.name}' of model '{facts.name}' takes shape "
                f"{_fmt(('batch', *dims))} (batch up to {mbs}); got {_fmt(shape)}. For one sample "
                "use infer_sample() (the CLI: infer --sample), which adds the batch dimension"
            )
        if not 1 <= shape[0] <= mbs:
            raise InvalidInput(
                f"input '{spec.name}' of model '{facts.name}' has batch size {shape[0]}; the "
                f"model takes 1 to {mbs}. Use infer_batch() (the CLI: infer --split) to split a larger batch"
            )
        rest = shape[1:]
    else:
        rest = shape
        if len(shape) != len(dims):
            raise InvalidInput(
                f"input '{spec.name}' of model '{facts.name}' takes shape {_fmt(dims)} (the model "
                f"does not batch); got {_fmt(shape)}"
            )
    for want, got in zip(dims, rest, strict=True):
        if want != -1 and want != got:
            full = ("batch", *dims) if mbs > 0 else dims
            raise InvalidInput(
                f"input '{spec.name}' of model '{facts.name}' takes shape {_fmt(full)}; "
                f"got {_fmt(shape)}"
            )


def _fmt(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def serialize_bytes(arr: np.ndarray, name: str = "") -> bytes:
    """Triton's BYTES layout: each element as a 4-byte little-endian length, then its bytes."""
    pack = struct.Struct("<I").pack
    parts: list[bytes] = []
    for item in arr.flat:
        if isinstance(item, bytes):
            raw = item
        elif isinstance(item, str):
            raw = item.encode("utf-8")
        elif isinstance(item, (bytearray, memoryview, np.bytes_)):
            raw = bytes(item)
        else:
            raise InvalidInput(
                f"BYTES input '{name}' holds a {type(item).__name__} ({item!r}); "
                "pass str or bytes values"
            )
        parts.append(pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def numeric_output(
    name: str, buf: Any, dtype: np.dtype[Any], shape: tuple[int, ...], nbytes: int, offset: int = 0
) -> np.ndarray:
    """Output ``name``: a view of ``nbytes`` bytes of ``buf`` at ``offset`` (no copy).

    A size that disagrees with the shape the server itself reported is the server's fault, and
    is said so: a Python-backend model on Triton 2.51 whose server-side Python has numpy 2
    answers exactly like this (HTTP 200, no bytes), and a bare reshape error would hide it.
    """
    count = 1
    for d in shape:
        count *= d
    if nbytes != count * dtype.itemsize:
        raise InferenceServerError(
            f"the server answered output '{name}' with {nbytes} bytes, but its shape "
            f"{list(shape)} of {dtype} needs {count * dtype.itemsize}: the model's runtime on the "
            "server is broken (a Python-backend model whose server-side Python has numpy 2 does "
            "this on Triton 2.51); see the server's log"
        )
    return np.frombuffer(buf, dtype, count, offset).reshape(shape)


def deserialize_bytes(buf: Any, shape: Sequence[int]) -> np.ndarray:
    """The inverse of :func:`serialize_bytes`: an object array of ``bytes`` of ``shape``."""
    view = memoryview(buf).cast("B")
    unpack = struct.Struct("<I").unpack_from
    items: list[bytes] = []
    pos, end = 0, len(view)
    while pos < end:
        (n,) = unpack(view, pos)
        pos += 4
        items.append(bytes(view[pos : pos + n]))
        pos += n
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(tuple(shape))


def split_batches(
    facts: ModelFacts, inputs: Any, batch_size: int | None
) -> tuple[list[dict[str, np.ndarray]], int]:
    """Views of ``inputs`` cut along the batch dim into chunks of at most ``batch_size``."""
    if facts.max_batch_size <= 0:
        raise InvalidInput(
            f"model '{facts.name}' does not batch (max_batch_size 0); call infer() instead"
        )
    if not isinstance(inputs, Mapping):
        if len(facts.inputs) != 1:
            raise InvalidInput(
                f"model '{facts.name}' has inputs {_names(facts.inputs)}; pass a dict"
            )
        inputs = {next(iter(facts.inputs)): inputs}
    arrays = {
        k: v
        if isinstance(v, np.ndarray)
        else np.asarray(v, dtype=facts.inputs[k].dtype.numpy if k in facts.inputs else None)
        for k, v in inputs.items()
    }
    sizes = {k: (a.shape[0] if a.ndim else -1) for k, a in arrays.items()}
    if len(set(sizes.values())) != 1 or -1 in sizes.values():
        raise InvalidInput(
            f"infer_batch needs every input with the same leading (batch) size; got {sizes}"
        )
    total = next(iter(sizes.values()))
    if total == 0:
        raise InvalidInput("infer_batch got no samples (batch size 0)")
    size = batch_size or facts.max_batch_size
    if not 1 <= size <= facts.max_batch_size:
        raise InvalidInput(
            f"batch_size must be 1 to {facts.max_batch_size} (the model's max_batch_size); "
            f"got {size}"
        )
    chunks = [{k: a[i : i + size] for k, a in arrays.items()} for i in range(0, total, size)]
    return chunks, total


def concat_outputs(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Reassemble per-chunk outputs, in order, along the batch dim."""
    if not parts:
        return {}
    if len(parts) == 1:
        return dict(parts[0])
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
