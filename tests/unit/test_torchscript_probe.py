"""TorchScript files: probe sizes from the example, -1 dims that need a minimum size, output
dims that follow the input (issue 29). Small scripted models, built with the real builder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from packager.builder import inspect
from packager.errors import SourceError


class Detector(nn.Module):
    """Fully convolutional, a 7x7 kernel (fails below 7 pixels), ceil-mode pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 7)
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))


class Head(nn.Module):
    """A Linear over 4x6 features: no other size runs."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(24, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ts") / "det.pt"
    torch.jit.script(Detector().eval()).save(str(path))
    return path


def test_dynamic_height_and_width_build_when_small_sizes_fail(detector: Path) -> None:
    info = inspect(detector, input_specs=["x:FP32:3,-1,-1"])
    assert info.signature.inputs[0].dims == (-1, 3, -1, -1)
    assert info.signature.outputs[0].dims == (-1, 4, -1, -1)  # not frozen at the probe's size


def test_the_example_sets_the_probe_sizes_beside_input(detector: Path, tmp_path: Path) -> None:
    npz = tmp_path / "x.npz"
    np.savez(npz, x=np.zeros((1, 3, 40, 60), np.float32))
    info = inspect(detector, input_specs=["x:FP32:3,-1,-1"], example_inputs=npz)
    assert info.signature.outputs[0].dims == (-1, 4, -1, -1)
    np.savez(npz, x=np.zeros((1, 3, 40), np.float32))
    with pytest.raises(SourceError, match=r"example dims \[3, 40\] do not fit --input"):
        inspect(detector, input_specs=["x:FP32:3,-1,-1"], example_inputs=npz)


def test_an_example_alone_lets_the_model_say_which_axes_are_free(
    detector: Path, tmp_path: Path
) -> None:
    npz = tmp_path / "x.npz"
    np.savez(npz, x=np.zeros((2, 3, 24, 32), np.float32))
    info = inspect(detector, example_inputs=npz)
    assert info.signature.inputs[0].dims == (-1, 3, -1, -1)  # the channels stay 3
    head = tmp_path / "head.pt"
    torch.jit.script(Head().eval()).save(str(head))
    np.savez(npz, x=np.zeros((2, 4, 6), np.float32))
    info = inspect(head, example_inputs=npz)
    assert info.signature.inputs[0].dims == (-1, 4, 6)
    assert info.signature.outputs[0].dims == (-1, 2)


def test_a_model_that_fails_at_every_size_names_them(tmp_path: Path) -> None:
    head = tmp_path / "head.pt"
    torch.jit.script(Head().eval()).save(str(head))
    with pytest.raises(SourceError, match=r"every size tried for the -1 dims.*--example-input"):
        inspect(head, input_specs=["x:FP32:-1,-1"])


def test_validate_runs_a_torchscript_file_against_its_config(
    detector: Path, tmp_path: Path
) -> None:
    """The configs issue 29 found wrong would not pass validate: outputs frozen at one size,
    and a dim declared dynamic that the model does not take."""
    from packager.builder import build
    from packager.validation import validate

    repo = tmp_path / "repo"
    build(detector, name="det", output=repo, input_specs=["x:FP32:3,-1,-1"])
    assert validate(repo, checksums=False).ok
    config = repo / "det" / "config.pbtxt"
    text = config.read_text()
    assert "dims: [ 4, -1, -1 ]" in text, text
    config.write_text(text.replace("dims: [ 4, -1, -1 ]", "dims: [ 4, 10, 13 ]"))
    report = validate(repo, checksums=False)
    assert not report.ok
    problems = " ".join(p for m in report.models for p in m.problems)
    assert "output 'OUTPUT__0' dims [4, 10, 13] contradict model.pt" in problems, problems
    head = tmp_path / "head.pt"
    torch.jit.script(Head().eval()).save(str(head))
    build(head, name="head", output=repo, input_specs=["x:FP32:4,6"])
    hconfig = repo / "head" / "config.pbtxt"
    hconfig.write_text(hconfig.read_text().replace("dims: [ 4, 6 ]", "dims: [ -1, -1 ]"))
    problems = " ".join(p for m in validate(repo, checksums=False).models for p in m.problems)
    assert "model.pt does not run at the config's input dims" in problems, problems
