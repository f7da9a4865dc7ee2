"""A small classifier trained in seconds on a synthetic task, for compression and evaluation tests.

Four Gaussian blobs in 64 dimensions, close enough together that the trained MLP
(64 -> 256 -> 256 -> 4) scores about 90% on held-out data: high enough to be a real model, low
enough that a compression that hurts shows up in the accuracy. The hidden layers are wide so the
weights dominate the file and int8 can make it about 4x smaller.

Training runs once per test process (:func:`trained`), whichever test module asks first.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FEATURES = 64
CLASSES = 4
HIDDEN = 256
REFERENCE = "tests.support.classifier:make"  # module:factory for build from PyTorch


def make() -> object:
    """The untrained architecture (the factory that ``build`` imports)."""
    from torch import nn

    return nn.Sequential(
        nn.Linear(FEATURES, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, CLASSES),
    )


@dataclass(frozen=True)
class Classifier:
    folder: Path
    onnx: Path  # fp32 model, input "input" [-1, 64] -> output "logits" [-1, 4]
    weights: Path  # state_dict for make()
    test: Path  # .npz: input (1000 x 64 float32), labels (1000 int64)
    calibration: Path  # .npz: input (256 x 64 float32)
    example: Path  # .npz: input (4 x 64) for exporting from PyTorch
    accuracy: float  # of the fp32 model on the test data (torch)


def _blobs(rng: np.random.Generator, centers: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, CLASSES, n)
    x = centers[y] + rng.normal(0.0, 1.5, (n, FEATURES))
    return x.astype(np.float32), y.astype(np.int64)


def train(folder: Path) -> Classifier:
    import torch
    from torch import nn

    rng = np.random.default_rng(0)
    centers = rng.normal(0.0, 0.5, (CLASSES, FEATURES))
    x_train, y_train = _blobs(rng, centers, 1000)
    x_test, y_test = _blobs(rng, centers, 1000)
    torch.manual_seed(0)
    model = make()
    assert isinstance(model, nn.Module)
    x, y = torch.from_numpy(x_train), torch.from_numpy(y_train)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster on a busy 2-core machine
    try:
        _adam(model, lambda: nn.functional.cross_entropy(model(x), y), steps=30, lr=3e-3)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    with torch.no_grad():
        acc = float((model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    onnx_path = folder / "classifier.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.from_numpy(x_test[:2]),),
            str(onnx_path),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,  # the TorchScript-based exporter: fast, one file
            opset_version=17,
        )
    torch.save(model.state_dict(), folder / "classifier.pt")
    np.savez(folder / "test.npz", input=x_test, labels=y_test)
    np.savez(folder / "calib.npz", input=x_train[:256])
    np.savez(folder / "example.npz", input=x_test[:4])
    return Classifier(
        folder,
        onnx_path,
        folder / "classifier.pt",
        folder / "test.npz",
        folder / "calib.npz",
        folder / "example.npz",
        acc,
    )


def _adam(model: object, loss: object, steps: int, lr: float) -> None:
    """Full-batch Adam written out: torch.optim's first use imports torch._dynamo (seconds)."""
    import torch

    params = list(model.parameters())  # type: ignore[attr-defined]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-8
    for t in range(1, steps + 1):
        for p in params:
            p.grad = None
        loss().backward()  # type: ignore[operator]
        with torch.no_grad():
            for p, mi, vi in zip(params, m, v, strict=True):
                mi.mul_(b1).add_(p.grad, alpha=1 - b1)
                vi.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                step = lr / (1 - b1**t)
                p.addcdiv_(mi, (vi / (1 - b2**t)).sqrt_().add_(eps), value=-step)


_TRAINED: Classifier | None = None


def trained() -> Classifier:
    """The classifier, trained on first use and kept for the rest of the test process."""
    global _TRAINED
    if _TRAINED is None:
        folder = Path(tempfile.mkdtemp(prefix="tp-classifier-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _TRAINED = train(folder)
    return _TRAINED
