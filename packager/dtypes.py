"""The one table of tensor element types.

Every conversion between numpy, torch, ONNX ``TensorProto`` element types, Triton config
``TYPE_*`` names and Triton wire datatypes (``FP32``, ``BYTES``...) goes through this module.
torch and onnx are never imported here: their types are looked up by name so that the client
and ``--help`` stay light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from packager.errors import DTypeError


@dataclass(frozen=True)
class DType:
    """One element type as every library in the pipeline spells it."""

    wire: str  # Triton wire datatype, e.g. "FP32" (also the KServe v2 protocol name)
    numpy: np.dtype[Any]
    torch: str | None  # attribute name on the torch module, e.g. "float32"
    onnx: int | None  # onnx.TensorProto.DataType value
    itemsize: int  # bytes per element; 0 for variable-length BYTES

    @property
    def config(self) -> str:
        """The ``data_type`` enum name in config.pbtxt, e.g. ``TYPE_FP32``.

        Triton spells BYTES as ``TYPE_STRING`` in model configs; everywhere else it is BYTES.
        """
        return "TYPE_STRING" if self.wire == "BYTES" else f"TYPE_{self.wire}"

    def __str__(self) -> str:
        return self.wire


# onnx.TensorProto values, spelled out so that this table does not import onnx.
_ONNX = {
    "FLOAT": 1, "UINT8": 2, "INT8": 3, "UINT16": 4, "INT16": 5, "INT32": 6, "INT64": 7,
    "STRING": 8, "BOOL": 9, "FLOAT16": 10, "DOUBLE": 11, "UINT32": 12, "UINT64": 13, "BFLOAT16": 16,
}  # fmt: skip

_TABLE: tuple[DType, ...] = (
    DType("BOOL", np.dtype(np.bool_), "bool", _ONNX["BOOL"], 1),
    DType("UINT8", np.dtype(np.uint8), "uint8", _ONNX["UINT8"], 1),
    DType("UINT16", np.dtype(np.uint16), "uint16", _ONNX["UINT16"], 2),
    DType("UINT32", np.dtype(np.uint32), "uint32", _ONNX["UINT32"], 4),
    DType("UINT64", np.dtype(np.uint64), "uint64", _ONNX["UINT64"], 8),
    DType("INT8", np.dtype(np.int8), "int8", _ONNX["INT8"], 1),
    DType("INT16", np.dtype(np.int16), "int16", _ONNX["INT16"], 2),
    DType("INT32", np.dtype(np.int32), "int32", _ONNX["INT32"], 4),
    DType("INT64", np.dtype(np.int64), "int64", _ONNX["INT64"], 8),
    DType("FP16", np.dtype(np.float16), "float16", _ONNX["FLOAT16"], 2),
    DType("FP32", np.dtype(np.float32), "float32", _ONNX["FLOAT"], 4),
    DType("FP64", np.dtype(np.float64), "float64", _ONNX["DOUBLE"], 8),
    # numpy has no bfloat16; Triton carries it on the wire as 2-byte values.
    DType("BF16", np.dtype(np.uint16), "bfloat16", _ONNX["BFLOAT16"], 2),
    DType("BYTES", np.dtype(np.object_), None, _ONNX["STRING"], 0),
)

ALL: tuple[DType, ...] = _TABLE
BY_WIRE: dict[str, DType] = {d.wire: d for d in _TABLE}
_BY_ONNX: dict[int, DType] = {d.onnx: d for d in _TABLE if d.onnx is not None}
_BY_TORCH: dict[str, DType] = {d.torch: d for d in _TABLE if d.torch is not None}
# BF16 shares numpy uint16 with UINT16: the numpy lookup must answer UINT16.
_BY_NUMPY: dict[np.dtype[Any], DType] = {d.numpy: d for d in reversed(_TABLE) if d.wire != "BF16"}
_ALIASES: dict[str, str] = {
    "FLOAT": "FP32", "FLOAT32": "FP32", "FLOAT16": "FP16", "HALF": "FP16", "FLOAT64": "FP64",
    "DOUBLE": "FP64", "BFLOAT16": "BF16", "STRING": "BYTES", "STR": "BYTES", "OBJECT": "BYTES",
    "INT": "INT32", "LONG": "INT64",
}  # fmt: skip

NAMES: tuple[str, ...] = tuple(d.wire for d in _TABLE)


def numpy_attributes() -> tuple[tuple[str, str], ...]:
    """(config type, numpy attribute) of every dtype numpy holds as itself (not BF16), in table
    order: the map the generated Python step (templates/python_step.py.j2) is rendered with."""
    return tuple(
        (d.config, d.numpy.name + ("_" if d.numpy.name in ("bool", "object") else ""))
        for d in _TABLE
        if d.wire != "BF16"
    )


def parse(name: str | DType) -> DType:
    """Accept ``FP32``, ``fp32``, ``float32``, ``TYPE_FP32``, ``TYPE_STRING``, ``torch.float32``..."""
    if isinstance(name, DType):
        return name
    key = str(name).strip().upper()
    for prefix in ("TYPE_", "TORCH."):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    key = _ALIASES.get(key, key)
    try:
        return BY_WIRE[key]
    except KeyError:
        raise DTypeError(f"unknown data type {name!r}; use one of: {', '.join(NAMES)}") from None


def from_numpy(dtype: Any) -> DType:
    """Map a numpy dtype (or anything ``np.dtype`` accepts); unicode/bytes strings map to BYTES."""
    dt = np.dtype(dtype)
    if dt.kind in ("U", "S", "O"):
        return BY_WIRE["BYTES"]
    try:
        return _BY_NUMPY[dt.newbyteorder("=") if dt.byteorder not in ("=", "|") else dt]
    except KeyError:
        raise DTypeError(
            f"numpy dtype {dt} has no Triton equivalent; supported: "
            f"{', '.join(str(d.numpy) for d in _TABLE if d.wire not in ('BF16', 'BYTES'))}, str/bytes"
        ) from None


def from_onnx(elem_type: int) -> DType:
    """Map an ``onnx.TensorProto`` element type number."""
    try:
        return _BY_ONNX[elem_type]
    except KeyError:
        raise DTypeError(
            f"ONNX element type {elem_type} is not supported by Triton "
            f"(complex, float8 and 4-bit types have no Triton equivalent)"
        ) from None


def from_torch(dtype: Any) -> DType:
    """Map a ``torch.dtype`` (or its name) without importing torch here."""
    key = str(dtype).removeprefix("torch.")
    try:
        return _BY_TORCH[key]
    except KeyError:
        raise DTypeError(f"torch dtype {dtype} has no Triton equivalent") from None


def from_config(name: str) -> DType:
    """Map a config.pbtxt ``TYPE_*`` enum name."""
    if not name.startswith("TYPE_"):
        raise DTypeError(f"{name!r} is not a config data_type (expected TYPE_*)")
    return parse(name)


def random_array(dtype: DType, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random data of ``dtype`` for examples, probes and load tests (one rule for all of them).

    Integers are small and non-negative (safe as token ids, indices and counts); floats are
    standard normal; BYTES are a fixed word; BOOL is a coin flip.
    """
    if dtype.wire == "BOOL":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.wire == "BYTES":
        return np.full(shape, b"sample", dtype=object)
    if dtype.numpy.kind in "iu":
        return rng.integers(0, 8, size=shape).astype(dtype.numpy)
    return rng.standard_normal(size=shape).astype(dtype.numpy)
