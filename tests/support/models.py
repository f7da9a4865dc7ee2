"""Small real models exported with torch, for tests of every tier.

Exports use torch's TorchScript-based ONNX exporter (fast, one file) except ``mlp_external``,
which uses the dynamo exporter on purpose: it writes weights to a side ``.onnx.data`` file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn


class TwoInTwoOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 4)
        self.b = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.a(x) + self.b(y)
        return s, torch.relu(s).sum(dim=1, keepdim=True)


class Embed(nn.Module):
    """int64 token ids with a dynamic sequence axis."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(16, 6)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.emb(ids).mean(dim=1)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    ).eval()


def _export(
    module: nn.Module,
    args: tuple,
    path: Path,
    inputs: list[str],
    outputs: list[str],
    axes: dict[str, dict[int, str]],
) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            dynamo=False,
            opset_version=17,
        )
    return path


def export_all(folder: Path) -> dict[str, Path]:
    """Write every test model into ``folder``; returns name -> file."""
    torch.manual_seed(0)
    out: dict[str, Path] = {}
    b = {0: "batch"}
    out["mlp"] = _export(
        mlp(),
        (torch.randn(2, 16),),
        folder / "mlp.onnx",
        ["input"],
        ["output"],
        {"input": b, "output": b},
    )
    out["cnn"] = _export(
        cnn(),
        (torch.randn(2, 3, 8, 8),),
        folder / "cnn.onnx",
        ["image"],
        ["logits"],
        {"image": b, "logits": b},
    )
    two = TwoInTwoOut().eval()
    out["two_io"] = _export(
        two,
        (torch.randn(2, 8), torch.randn(2, 3)),
        folder / "two_io.onnx",
        ["x", "y"],
        ["sum", "total"],
        {"x": b, "y": b, "sum": b, "total": b},
    )
    out["int64"] = _export(
        Embed().eval(),
        (torch.randint(0, 16, (2, 5)),),
        folder / "embed.onnx",
        ["ids"],
        ["vec"],
        {"ids": {0: "batch", 1: "seq"}, "vec": b},
    )
    out["fixed"] = _export(
        mlp(), (torch.randn(1, 16),), folder / "fixed.onnx", ["input"], ["output"], {}
    )
    ts = torch.jit.trace(mlp(), torch.randn(2, 16))
    ts.save(str(folder / "mlp_ts.pt"))
    out["torchscript"] = folder / "mlp_ts.pt"
    return out


def export_external(folder: Path) -> Path:
    """An ONNX file whose weights live in ``model.onnx.data`` (torch's dynamo exporter)."""
    path = folder / "ext.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            mlp(),
            (torch.randn(2, 16),),
            str(path),
            input_names=["input"],
            output_names=["output"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            external_data=True,
            verbose=False,
        )
    return path


def reference(name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """In-process ONNX Runtime results for a model file."""
    import onnxruntime as ort

    sess = ort.InferenceSession(name, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, inputs), strict=True))
