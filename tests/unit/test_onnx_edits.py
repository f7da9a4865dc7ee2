"""Rank-0 model tensors: lifted to [1] in the graph (no batch axis) or reshape [] (per sample)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from packager.builder import build
from packager.errors import SourceError
from packager.render import parse_config, spec_from_config
from packager.sources.onnx_edits import lift_scalars, scalar_names
from tests.support.onnx_models import per_sample_scalar_onnx, scalar_io_onnx


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [np.asarray(v) for v in session.run(None, feeds)]


def test_lifted_graph_gives_the_same_answers(tmp_path: Path) -> None:
    original = onnx.load(str(scalar_io_onnx(tmp_path / "s.onnx")))
    lifted = onnx.load(str(tmp_path / "s.onnx"))
    assert scalar_names(lifted) == (["k"], ["s"])
    assert lift_scalars(lifted) == ["k", "s"]
    onnx.checker.check_model(lifted, full_check=True)
    assert scalar_names(lifted) == ([], [])
    assert [i.name for i in lifted.graph.input] == ["x", "k"]  # names users see are kept
    assert [o.name for o in lifted.graph.output] == ["y", "s"]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for k in (5.0, -1.0):  # both branches of the If, which reads k from the outer scope
        y, s = run(original, {"x": x, "k": np.array(k, np.float32)})
        y1, s1 = run(lifted, {"x": x, "k": np.array([k], np.float32)})
        np.testing.assert_array_equal(y1, y)
        assert s1.shape == (1,) and s1[0] == s


def test_build_lifts_rank0_tensors_and_records_it(tmp_path: Path) -> None:
    result = build(scalar_io_onnx(tmp_path / "s.onnx"), name="s", output=tmp_path / "repo")
    dims = {t.name: t.dims for t in (*result.spec.inputs, *result.spec.outputs)}
    assert dims == {"x": (-1, 3), "k": (1,), "y": (-1, 3), "s": (1,)}
    assert result.spec.max_batch_size == 0
    assert result.record["onnx"]["rank0_made_1"] == ["k", "s"]
    served = onnx.load(str(tmp_path / "repo" / "s" / "1" / "model.onnx"))
    assert scalar_names(served) == ([], [])
    assert onnx.load(str(tmp_path / "s.onnx")).graph.input[1].type.tensor_type.shape.dim == []


def test_a_per_sample_scalar_of_a_batching_model_is_dims_1_with_reshape(tmp_path: Path) -> None:
    result = build(per_sample_scalar_onnx(tmp_path / "p.onnx"), name="p", output=tmp_path / "r")
    assert result.spec.max_batch_size > 0
    assert "  dims: [ 1 ]\n  reshape { shape: [ ] }" in result.config
    again = spec_from_config(parse_config(result.config))
    assert [t.reshape for t in again.inputs + again.outputs] == [(), ()]


def test_a_torchscript_argument_that_is_not_a_tensor_is_named(tmp_path: Path) -> None:
    import torch

    class Scale(torch.nn.Module):
        def forward(self, x: torch.Tensor, factor: int) -> torch.Tensor:
            return x * factor

    path = tmp_path / "scale.pt"
    torch.jit.save(torch.jit.script(Scale()), str(path))
    with pytest.raises(SourceError, match=r"argument 'factor' is int, not a tensor; Triton passes"):
        build(path, name="scale", output=tmp_path / "r", input_specs=["x:FP32:3", "factor:INT64:1"])
    assert not (tmp_path / "r").exists()
