"""Sizes, accuracy through the served model, and local latency of every compression, in one run.

    PYTHONPATH=. python benchmarks/compression.py [--runs 300] [--no-prune]

Trains the test classifier (tests/support/classifier.py: 4 Gaussian blobs, MLP 64-256-256-4),
builds it fp32, dynamic int8 (per-tensor and per-channel), static int8 QDQ (per-tensor and
per-channel), fp16, and pruned 50% + dynamic int8 (from the PyTorch module), serves them all
with the embedded tritonserver, scores each through ``packager.compress.evaluate`` and times
``session.run`` on a batch of 64 in-process (median of ``--runs``). Every ratio is against the
fp32 model measured in the same run. Prints a Markdown table for docs/compression.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from packager.builder import build
from packager.compress import CompressionReport
from packager.compress.evaluate import evaluate, evaluate_local, load_labeled
from packager.compress.report import human_bytes, onnx_stage
from packager.serve.server import LocalServer
from tests.support import classifier


def variants(clf: classifier.Classifier, prune: bool) -> dict[str, tuple[Any, dict[str, Any]]]:
    out: dict[str, tuple[Any, dict[str, Any]]] = {
        "fp32": (clf.onnx, {}),
        "dynamic_int8": (clf.onnx, {"quantize": "dynamic-int8"}),
        "dynamic_int8_pc": (clf.onnx, {"quantize": "dynamic-int8", "per_channel": True}),
        "static_int8": (
            clf.onnx,
            {"quantize": "static-int8", "calibration_data": clf.calibration},
        ),
        "static_int8_pc": (
            clf.onnx,
            {"quantize": "static-int8", "calibration_data": clf.calibration, "per_channel": True},
        ),
        "fp16": (clf.onnx, {"fp16": True}),
    }
    if prune:
        out["pruned50_int8"] = (
            classifier.REFERENCE,
            {
                "weights": clf.weights,
                "example_inputs": clf.example,
                "prune": 0.5,
                "quantize": "dynamic-int8",
            },
        )
    return out


def latency_ms(path: Path, x: np.ndarray, runs: int) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # one thread: stable figures on a shared 2-core machine
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(20):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--no-prune", action="store_true", help="skip the PyTorch export (slow)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "clf").mkdir()
        clf = classifier.train(folder / "clf")
        repo = folder / "repo"
        rows = []
        for name, (model, opts) in variants(clf, not args.no_prune).items():
            start = time.perf_counter()
            result = build(model, name=name, output=repo, **opts)
            took = time.perf_counter() - start
            assert result.model_dir is not None
            artifact = result.model_dir / "1" / "model.onnx"
            comp = result.record.get("compression")
            rows.append([name, artifact, comp, took])
        x = np.load(clf.test)["input"][:64]
        with LocalServer(repo, startup_timeout_s=180) as server:
            fp32_ms = None
            fp32_bytes = None
            print(
                "| model | file size | param bytes | smaller than fp32 | non-zero params | accuracy (served) "
                "| accuracy (in-process) | latency b64 (ms) | speed vs fp32 | build s |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|")
            for name, artifact, _comp, took in rows:
                served = evaluate(name, clf.test, url=server.http_url).metrics["accuracy"]
                local = evaluate_local(artifact, load_labeled(clf.test))["accuracy"]
                stage = onnx_stage(artifact, name)
                ms = latency_ms(artifact, x, args.runs)
                fp32_ms = fp32_ms or ms
                fp32_bytes = fp32_bytes or stage.param_bytes
                print(
                    f"| {name} | {human_bytes(stage.file_bytes or 0)} | "
                    f"{human_bytes(stage.param_bytes)} | {fp32_bytes / stage.param_bytes:.2f}x | "
                    f"{stage.nonzero:,} / {stage.params:,} | {served:.4f} | {local:.4f} | "
                    f"{ms:.3f} | {fp32_ms / ms:.2f}x | {took:.1f} |"
                )
    for name, _, comp, _ in rows:
        if comp and "prune" in comp.get("details", {}):
            print(f"\n{name} (build output):\n" + CompressionReport.from_dict(comp).table())
    print(
        f"\nmachine: {platform.machine()} {_cpu()} ({os.cpu_count()} cores), Python "
        f"{platform.python_version()}; latency: ONNX Runtime CPU, 1 intra-op thread"
    )


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


if __name__ == "__main__":
    main()
