"""An ONNX model of any size whose weights live in external data files, written in chunks.

``rows(ids) = table_a[ids] + table_b[ids] + bias``: two float32 tables of ``rows x dim`` in one
data file (``weights/tables.bin``, the second at an offset) and the bias in another
(``bias.data``). Every value is an exact small integer (+ 0.5), so the served answer can be
checked exactly for any ids without holding a table: :func:`expected` computes it. The graph is
built with onnx's helpers and refers to the files; no tensor is ever held whole in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

TABLES = "weights/tables.bin"
BIAS = "bias.data"
_CHUNK_BYTES = 64 << 20


def table_a(r0: int, r1: int, dim: int) -> np.ndarray:
    return np.repeat(np.arange(r0, r1, dtype=np.float32)[:, None], dim, axis=1)


def table_b(r0: int, r1: int, dim: int) -> np.ndarray:
    r = np.arange(r0, r1, dtype=np.int64)[:, None]
    c = np.arange(dim, dtype=np.int64)[None, :]
    return ((7 * r + c) % 4096).astype(np.float32)


def expected(ids: np.ndarray, dim: int) -> np.ndarray:
    """The model's answer for ``ids`` (any shape), computed from the formulas."""
    flat = ids.reshape(-1)
    out = np.stack([table_a(i, i + 1, dim)[0] + table_b(i, i + 1, dim)[0] for i in flat])
    return (out + np.float32(0.5)).reshape(*ids.shape, dim)


def _external(name: str, dims: list[int], location: str, offset: int, length: int) -> TensorProto:
    t = TensorProto()
    t.name = name
    t.data_type = TensorProto.FLOAT
    t.dims.extend(dims)
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        entry = t.external_data.add()
        entry.key, entry.value = key, str(value)
    return t


def write_large_onnx(folder: Path, rows: int, dim: int = 1024) -> Path:
    """``folder/model.onnx`` + its data files; returns the model's path. Total bytes:
    ``2 * rows * dim * 4 + dim * 4``. Memory use: one chunk (64 MiB) at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TABLES).parent.mkdir(parents=True, exist_ok=True)
    table_bytes = rows * dim * 4
    step = max(1, _CHUNK_BYTES // (dim * 4))
    with open(folder / TABLES, "wb") as f:
        for make in (table_a, table_b):
            for r0 in range(0, rows, step):
                f.write(make(r0, min(rows, r0 + step), dim).tobytes())
    (folder / BIAS).write_bytes(np.full(dim, 0.5, np.float32).tobytes())
    inits = [
        _external("table_a", [rows, dim], TABLES, 0, table_bytes),
        _external("table_b", [rows, dim], TABLES, table_bytes, table_bytes),
        _external("bias", [dim], BIAS, 0, dim * 4),
    ]
    nodes = [
        helper.make_node("Gather", ["table_a", "ids"], ["a"], axis=0),
        helper.make_node("Gather", ["table_b", "ids"], ["b"], axis=0),
        helper.make_node("Add", ["a", "b"], ["ab"]),
        helper.make_node("Add", ["ab", "bias"], ["rows"]),
    ]
    graph = helper.make_graph(
        nodes,
        "large",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "k"])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["batch", "k", dim])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "model.onnx"
    onnx.save(model, str(path))  # the tensors hold no bytes: only the graph is written
    return path


def data_bytes(rows: int, dim: int = 1024) -> int:
    return 2 * rows * dim * 4 + dim * 4
