"""How an export decides which input axes are dynamic (issue 29), on small models.

The axis decisions come from the model itself: runs at sizes on both sides of the example
(both parities), torch.export's symbolic shapes for ONNX, and the user's pins. Every decision
is recorded with its reason. The faithful copies of real wheel models are exercised in
tests/integration/test_real_models.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from packager.errors import PackagerError
from packager.sources.pytorch.export import export_module, probe_sizes
from packager.sources.verify import onnx_runner, torchscript_runner

RNG = np.random.default_rng(29)


class CeilPoolHead(nn.Module):
    """Ceil-mode pooling, then a Linear sized for 8x8: 7x7 gives the same 4x4 map, 9x9 does not."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 1)
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.head = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(self.conv(x))
        return self.head(y.reshape(y.shape[0], -1))


class CeilPoolFCN(nn.Module):
    """Fully convolutional with ceil-mode pooling: 8 and 7 give 4x4 maps, 9 gives 5x5."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 1)
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))


class SizeAsNumber(nn.Module):
    """Runs at any length in eager mode, but int() turns the length into a Python number,
    which torch.export (and the tracer) record as a constant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(1) * int(x.shape[1])


def test_probe_sizes_lie_on_both_sides_with_both_parities() -> None:
    assert probe_sizes(48) == [47, 49, 50]
    assert probe_sizes(2) == [3, 4]  # never 1: torch.export fixes size-1 dims
    assert probe_sizes(3) == [2, 4, 5]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_ceil_mode_pooling_with_a_linear_head_keeps_its_size(fmt: str) -> None:
    """Probing at 7 alone would call 8x8 dynamic; 9 fails, so height and width stay fixed."""
    x = RNG.standard_normal((2, 2, 8, 8)).astype(np.float32)
    loaded = export_module(CeilPoolHead(), format=fmt, example_inputs={"x": x})
    try:
        assert loaded.signature.inputs[0].dims == (-1, 2, 8, 8)
        assert loaded.record["axes_fixed"] == {"x": {"1": 2, "2": 8, "3": 8}}
        why = loaded.record["axis_decisions"]
        assert why["x:2"].startswith(
            "fixed at 8: the size the module requires there, like a layer's input width (at 9: "
        ), why
        assert "mat1 and mat2" in why["x:2"]
    finally:
        loaded.close()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_fully_convolutional_outputs_follow_the_input_size(fmt: str) -> None:
    """Output dims come from the graph (ONNX) or from runs that change them (TorchScript):
    the shrunk size 7 maps to the same 4x4 as 8, so a larger size must be tried too."""
    x = RNG.standard_normal((2, 2, 8, 8)).astype(np.float32)
    loaded = export_module(CeilPoolFCN(), format=fmt, example_inputs={"x": x})
    try:
        assert loaded.signature.inputs[0].dims == (-1, 2, -1, -1)
        out = loaded.signature.outputs[0]
        assert out.dims == (-1, 3, -1, -1)
        assert loaded.record["axis_decisions"]["x:2"].startswith("dynamic: the module runs at")
        artifact = loaded.files[next(iter(loaded.files))]
        run = (
            onnx_runner(artifact, [out.name])
            if fmt == "onnx"
            else torchscript_runner(artifact, ["x"], [out.name])
        )
        for side in (5, 8, 13):  # three sizes: the served shape follows each one
            got = run({"x": RNG.standard_normal((1, 2, side, side)).astype(np.float32)})[out.name]
            assert got.shape == (1, 3, (side + 1) // 2, (side + 1) // 2)
    finally:
        loaded.close()


def test_an_axis_torch_export_specialises_is_fixed_with_the_reason() -> None:
    x = RNG.standard_normal((2, 5, 4)).astype(np.float32)
    loaded = export_module(SizeAsNumber(), format="onnx", example_inputs={"x": x})
    try:
        assert loaded.signature.inputs[0].dims == (-1, 5, -1)  # the features stay free
        assert loaded.record["axes_fixed"]["x"]["1"] == 5
        assert "torch.export specialised it" in loaded.record["axis_decisions"]["x:1"]
        assert loaded.record["axes_found_dynamic"] == {"x": [2]}
    finally:
        loaded.close()
    # The tracer bakes the number too: verification at other lengths fails, and the export
    # is redone with the axis fixed.
    traced = export_module(SizeAsNumber(), format="torchscript", example_inputs={"x": x})
    try:
        assert traced.signature.inputs[0].dims[1] == 5
        assert "the exporter fixed it" in traced.record["axis_decisions"]["x:1"]
    finally:
        traced.close()


def test_a_pinned_axis_stays_fixed_without_probing() -> None:
    x = RNG.standard_normal((2, 2, 8, 8)).astype(np.float32)
    loaded = export_module(
        CeilPoolFCN(), format="torchscript", example_inputs={"x": x}, fixed_axes=["x:3"]
    )
    try:
        assert loaded.signature.inputs[0].dims == (-1, 2, -1, 8)
        assert loaded.record["axis_decisions"]["x:3"] == "pinned (--fixed-axis)"
    finally:
        loaded.close()


@pytest.mark.parametrize(
    ("fixed", "dynamic", "match"),
    [
        (["x:0"], None, r"--fixed-axis x:0 is out of range: axis 0 is the batch"),
        (["y:1"], None, r"--fixed-axis names 'y', which is not an input"),
        (["x:2"], ["x:2"], r"axis 2 of 'x' is declared both dynamic and fixed"),
        (["x"], None, r"--fixed-axis 'x' is not NAME:AXIS"),
    ],
)
def test_bad_pins_are_explained(fixed: list[str], dynamic: list[str] | None, match: str) -> None:
    x = RNG.standard_normal((2, 2, 8, 8)).astype(np.float32)
    with pytest.raises(PackagerError, match=match):
        export_module(
            CeilPoolFCN(),
            format="torchscript",
            example_inputs={"x": x},
            fixed_axes=fixed,
            dynamic_axes=dynamic,
        )
