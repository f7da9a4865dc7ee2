"""inspect speaks the same options as build: a TorchScript model without a batch axis."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from click.testing import CliRunner

from packager.cli import main


class ColumnSum(torch.nn.Module):
    """No batch axis: it sums over the first dim."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(0, keepdim=True)


def test_inspect_torchscript_with_max_batch_size_0(tmp_path: Path) -> None:
    path = tmp_path / "colsum.pt"
    torch.jit.save(torch.jit.script(ColumnSum()), str(path))
    args = ["inspect", str(path), "--input", "x:FP32:5,3", "--json"]
    plain = json.loads(CliRunner().invoke(main, args).output)
    assert plain["inputs"][0]["dims"] == [-1, 5, 3]  # dims after the batch dim by default
    flat = json.loads(CliRunner().invoke(main, [*args, "--max-batch-size", "0"]).output)
    assert flat["inputs"][0]["dims"] == [5, 3] and flat["outputs"][0]["dims"] == [1, 3]
    assert flat["batch_axis"] is False
