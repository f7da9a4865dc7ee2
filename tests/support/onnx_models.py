"""ONNX models made with the onnx package alone (no torch): for tests of the core install."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def affine_onnx(path: Path) -> Path:
    """y = x @ W + b with a dynamic batch axis: a model made with onnx alone."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.normal(size=(3,)).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def scalar_io_onnx(path: Path) -> Path:
    """y = x * k + k (k a rank-0 input, read at the top level and inside an If branch), and
    the rank-0 output s = k * 2: the shapes Triton cannot serve as they are."""
    k2 = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    then_graph = helper.make_graph(
        [helper.make_node("Add", ["xk", "k"], ["branch_out"])],
        "then",
        [],
        [helper.make_tensor_value_info("branch_out", TensorProto.FLOAT, ["n", 3])],
    )
    else_graph = helper.make_graph(
        [helper.make_node("Sub", ["xk", "k"], ["branch_out2"])],
        "else",
        [],
        [helper.make_tensor_value_info("branch_out2", TensorProto.FLOAT, ["n", 3])],
    )
    nodes = [
        helper.make_node("Mul", ["x", "k"], ["xk"]),
        helper.make_node("Greater", ["k", "two"], ["positive"]),
        helper.make_node("If", ["positive"], ["y"], then_branch=then_graph, else_branch=else_graph),
        helper.make_node("Mul", ["k", "two"], ["s"]),
    ]
    graph = helper.make_graph(
        nodes,
        "scalars",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3]),
            helper.make_tensor_value_info("k", TensorProto.FLOAT, []),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3]),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, []),
        ],
        [k2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def per_sample_scalar_onnx(path: Path) -> Path:
    """y = 3 * x with x and y of shape [batch]: per sample a scalar (dims [1] + reshape [])."""
    three = numpy_helper.from_array(np.array(3.0, np.float32), "three")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "three"], ["y"])],
        "per_sample",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])],
        [three],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def mlp_onnx(path: Path, sizes: tuple[int, ...] = (64, 512, 512, 10)) -> Path:
    """An MLP ``input`` [batch, sizes[0]] -> ``logits`` [batch, sizes[-1]] with ReLUs between,
    fixed random weights (the benchmarks' model)."""
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "input"
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        w = (rng.standard_normal((a, b)) / a**0.5).astype(np.float32)
        inits += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
        ]
        prev = f"a{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Identity", [prev], ["logits"]))
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", sizes[-1]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def opset_onnx(path: Path, opset: int, op: str = "Relu", domain: str = "") -> Path:
    """y = op(x @ W + b) stamped with ``opset`` (IR as ONNX pairs them: 23 -> 11, 21 -> 10);
    ``op``/``domain`` make a model with an operator no runtime knows or a custom domain."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.normal(size=(3,)).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["z"]),
            helper.make_node(op, ["z"], ["y"], domain=domain),
        ],
        "opset_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [w, b],
    )
    imports = [helper.make_opsetid("", opset)]
    if domain:
        imports.append(helper.make_opsetid(domain, 1))
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = helper.find_min_ir_version_for([imports[0]])
    onnx.save(model, str(path))
    return path
