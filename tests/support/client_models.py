"""Small real Python-backend models for the client tests and benchmark (model.py + config.pbtxt).

- ``mlp``: a 16->32->4 ONNX MLP run by ONNX Runtime inside ``execute`` (dynamic batching,
  priority levels); :func:`mlp_reference` runs the same ONNX file in-process.
- ``addsub``: two FP32 inputs -> sum and difference; does not batch (max_batch_size 0).
- ``echo``: BYTES in -> upper-cased BYTES out, plus ``meta`` (JSON: request parameters and id);
  the text ``"fail"`` makes it answer with an error.
- ``slow``: sleeps ``seconds`` then echoes it (for timeouts).
- ``versioned``: versions 1 and 2 answer ``x + version``.
- ``spare``: ``x * 2``; tests unload and load it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MLP_PY = """\
import os
import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        # One session.run for the whole dynamic batch.
        xs = [pb_utils.get_input_tensor_by_name(r, "input").as_numpy() for r in requests]
        y = self.session.run(["output"], {"input": np.concatenate(xs) if len(xs) > 1 else xs[0]})[0]
        out, start = [], 0
        for x in xs:
            part = y[start : start + len(x)]
            start += len(x)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("output", part)]))
        return out
"""

ADDSUB_PY = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            a = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(r, "INPUT1").as_numpy()
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", a + b), pb_utils.Tensor("OUTPUT1", a - b)]))
        return out
"""

ECHO_PY = """\
import json
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            text = pb_utils.get_input_tensor_by_name(r, "text").as_numpy()
            if text.size and text.flat[0] == b"fail":
                out.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError("echo was asked to fail")))
                continue
            upper = np.array([t.upper() for t in text.flat], dtype=object).reshape(text.shape)
            meta = json.dumps({"parameters": json.loads(r.parameters() or "{}"),
                               "id": r.request_id()})
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("upper", upper),
                pb_utils.Tensor("meta", np.array([meta.encode()], dtype=object))]))
        return out
"""

SLOW_PY = """\
import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            seconds = pb_utils.get_input_tensor_by_name(r, "seconds").as_numpy()
            time.sleep(float(seconds.flat[0]))
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("slept", seconds)]))
        return out
"""

PLUS_PY = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "x").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("y", x {op} {k})]))
        return out
"""

CONFIGS = {
    "mlp": """\
name: "mlp"
backend: "python"
max_batch_size: {mlp_max_batch}
input [ {{ name: "input" data_type: TYPE_FP32 dims: [ 16 ] }} ]
output [ {{ name: "output" data_type: TYPE_FP32 dims: [ 4 ] }} ]
instance_group [ {{ count: {mlp_instances} kind: KIND_CPU }} ]
dynamic_batching {{ priority_levels: 2 default_priority_level: 2 }}
""",
    "addsub": """\
name: "addsub"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
        { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
         { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 4 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
""",
    "echo": """\
name: "echo"
backend: "python"
max_batch_size: 8
input [ { name: "text" data_type: TYPE_STRING dims: [ -1 ] } ]
output [ { name: "upper" data_type: TYPE_STRING dims: [ -1 ] },
         { name: "meta" data_type: TYPE_STRING dims: [ 1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
""",
    "slow": """\
name: "slow"
backend: "python"
max_batch_size: 0
input [ { name: "seconds" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "slept" data_type: TYPE_FP32 dims: [ 1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
""",
    "versioned": """\
name: "versioned"
backend: "python"
max_batch_size: 4
version_policy: { all { } }
input [ { name: "x" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 2 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
""",
    "spare": """\
name: "spare"
backend: "python"
max_batch_size: 4
input [ { name: "x" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 2 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
""",
}

MODELS = tuple(CONFIGS)


def mlp_onnx(path: Path, seed: int = 0) -> Path:
    """A 16->32->4 MLP (Gemm, Relu, Gemm) with fixed random weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = {
        "w1": rng.standard_normal((16, 32)).astype(np.float32),
        "b1": rng.standard_normal(32).astype(np.float32),
        "w2": rng.standard_normal((32, 4)).astype(np.float32),
        "b2": rng.standard_normal(4).astype(np.float32),
    }
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["input", "w1", "b1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "w2", "b2"], ["output"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(a, n) for n, a in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def mlp_reference(repo: Path, x: np.ndarray) -> np.ndarray:
    """The MLP's output computed in this process by ONNX Runtime."""
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(repo / "mlp" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    return session.run(["output"], {"input": x})[0]


def write_repository(
    repo: Path,
    models: tuple[str, ...] = MODELS,
    *,
    mlp_max_batch: int = 64,
    mlp_instances: int = 1,
) -> Path:
    """Write the chosen models into ``repo`` (created); returns ``repo``."""
    sources = {
        "mlp": {"1": MLP_PY},
        "addsub": {"1": ADDSUB_PY},
        "echo": {"1": ECHO_PY},
        "slow": {"1": SLOW_PY},
        "versioned": {"1": PLUS_PY.format(op="+", k=1), "2": PLUS_PY.format(op="+", k=2)},
        "spare": {"1": PLUS_PY.format(op="*", k=2)},
    }
    for name in models:
        config = CONFIGS[name]
        if name == "mlp":
            config = config.format(mlp_max_batch=mlp_max_batch, mlp_instances=mlp_instances)
        (repo / name).mkdir(parents=True, exist_ok=True)
        (repo / name / "config.pbtxt").write_text(config)
        for version, code in sources[name].items():
            (repo / name / version).mkdir(exist_ok=True)
            (repo / name / version / "model.py").write_text(code)
        if name == "mlp":
            mlp_onnx(repo / "mlp" / "1" / "model.onnx")
    return repo
