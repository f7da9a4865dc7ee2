"""Time export + verification of the test models, ONNX vs TorchScript, in one run.

    PYTHONPATH=. python benchmarks/export_pytorch.py [--repeat 2] [--models mlp,lstm_speaker]

Prints seconds per export (best of ``--repeat``), the ONNX/TorchScript time ratio, and the
largest verification error seen. The first ONNX export of a process also pays for importing
the exporter; it is timed separately ("warm-up").
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from packager.sources.pytorch.export import export_module
from tests.support.torch_models import MLP, SmallCNN, TextClassifier, TwoInTwoOut, text_inputs
from tests.support.wheel_models import VoiceEncoder

RNG = np.random.default_rng(0)
MODELS: dict[str, tuple[Any, dict[str, Any]]] = {
    "mlp": (MLP, {"input_specs": ["x:FP32:16"]}),
    "cnn": (SmallCNN, {"input_specs": ["image:FP32:3,16,16"]}),
    "text": (TextClassifier, {"example_inputs": text_inputs(2, 7), "dynamic_axes": ["input_ids:1", "attention_mask:1"]}),
    "two_in_dict_out": (TwoInTwoOut, {"example_inputs": {
        "features": RNG.standard_normal((2, 6)).astype(np.float32),
        "category": RNG.integers(0, 10, size=(2, 2)),
    }}),
    # resemblyzer's speaker encoder (3-layer LSTM, 160 frames of 40 mels); random weights.
    "lstm_speaker": (VoiceEncoder, {"example_inputs": {"mels": RNG.random((2, 160, 40), dtype=np.float32)}}),
}  # fmt: skip


def timed(factory: Any, fmt: str, options: dict[str, Any]) -> tuple[float, float]:
    torch.manual_seed(0)
    module = factory()
    start = time.perf_counter()
    loaded = export_module(module, format=fmt, **options)
    seconds = time.perf_counter() - start
    worst = max(c["max_abs_err"] for c in loaded.record["verification"]["checks"])
    loaded.close()
    return seconds, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    args = parser.parse_args()
    warm, _ = timed(MLP, "onnx", MODELS["mlp"][1])
    print(f"warm-up (first ONNX export in the process): {warm:.2f} s")
    print(f"{'model':<18}{'onnx s':>9}{'torchscript s':>15}{'ratio':>8}{'max abs err':>14}")
    for name in args.models.split(","):
        factory, options = MODELS[name]
        best: dict[str, float] = {}
        err = 0.0
        for fmt in ("onnx", "torchscript"):
            runs = [timed(factory, fmt, options) for _ in range(args.repeat)]
            best[fmt] = min(s for s, _ in runs)
            err = max(err, *(e for _, e in runs))
        ratio = best["onnx"] / best["torchscript"]
        print(
            f"{name:<18}{best['onnx']:>9.2f}{best['torchscript']:>15.2f}{ratio:>7.0f}x{err:>14.2e}"
        )


if __name__ == "__main__":
    main()
