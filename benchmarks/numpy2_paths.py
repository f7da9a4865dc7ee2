"""Benchmark: two ways to serve Python-backend models when the caller's environment has numpy 2.

Triton 2.51's Python backend stub is built for numpy 1.x; with numpy 2 ``pb_utils.Tensor`` and
``as_numpy`` mis-size tensors (the answer is an empty output). Two robust designs:

- **overlay** (the one we ship, :mod:`packager.serve.stub_env`): the stub's interpreter gets numpy
  1.26.4 from a separate folder; the generated runtime is unchanged;
- **dlpack**: keep numpy 2 in the stub and move tensors with ``np.from_dlpack(tensor)`` and
  ``pb_utils.Tensor.from_dlpack(name, array)``, which do not go through the stub's numpy ABI.

Both serve the same ONNX MLP (64->512->512->10, Python backend, 1 instance) and are driven by
``packager.client`` at batch 1 and batch 64. Printed per design: samples/s, p50 latency, whether
every answer is bit-identical to in-process ONNX Runtime, and how many lines the server logged
per request (tracebacks). The two designs run in interleaved rounds; figures are medians.

    python benchmarks/numpy2_paths.py [--rounds 3] [--seconds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packager.builder import build  # noqa: E402
from packager.client import Client  # noqa: E402
from packager.client.bench import run_load  # noqa: E402
from packager.serve import stub_env  # noqa: E402
from packager.serve.server import LocalServer  # noqa: E402
from tests.support.onnx_models import mlp_onnx  # noqa: E402

BATCHES = (1, 64)


def dlpack_variant(model_py: str) -> str:
    """The generated runtime moved to the dlpack calls (and without its numpy-1 check)."""
    replacements = {
        "feeds[name] = tensor.as_numpy()": "feeds[name] = np.from_dlpack(tensor)",
        "pb_utils.Tensor(name, np.ascontiguousarray(value))": (
            "pb_utils.Tensor.from_dlpack(name, np.ascontiguousarray(value))"
        ),
        "        _check_environment(_NEEDS[FORMAT])\n": "",
    }
    for old, new in replacements.items():
        assert old in model_py, f"the runtime template changed: {old!r} not found"
        model_py = model_py.replace(old, new)
    return model_py


def measure(server: LocalServer, reference: Any, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rng = np.random.default_rng(1)
    with Client(server.http_url) as client:
        exact = True
        for _ in range(20):
            x = rng.standard_normal((int(rng.integers(1, 65)), 64)).astype(np.float32)
            got = client.infer("mlp", {"input": x})["logits"]
            exact &= got.shape == (len(x), 10) and np.array_equal(got, reference(x))
        out["exact"] = bool(exact)
        lines_before = len(server.log_text().splitlines())
        requests = 0
        for batch in BATCHES:
            x = rng.standard_normal((batch, 64)).astype(np.float32)
            result = run_load(
                server.http_url, "mlp", {"input": x}, concurrency=2, duration_s=seconds,
                warmup_s=0.5, client=client,
            )  # fmt: skip
            requests += result.requests + result.errors
            out[f"b{batch}"] = (result.throughput, result.p50_ms, result.errors)
        lines = len(server.log_text().splitlines()) - lines_before
        out["log_lines_per_request"] = lines / max(1, requests)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    if stub_env.numpy_major() < 2:
        print("run this with numpy 2 in the environment (scripts/setup.sh installs it)")
        return 2
    import onnxruntime as ort

    work = Path(tempfile.mkdtemp(prefix="numpy2-paths-"))
    try:
        onnx_path = mlp_onnx(work / "mlp.onnx")
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

        def reference(x: np.ndarray) -> np.ndarray:
            return np.asarray(session.run(None, {"input": x})[0])

        repos = {}
        for design in ("overlay", "dlpack"):
            repo = work / design
            build(onnx_path, name="mlp", output=repo, max_batch_size=64, backend="python")
            if design == "dlpack":
                model_py = repo / "mlp" / "1" / "model.py"
                model_py.write_text(dlpack_variant(model_py.read_text()))
            repos[design] = repo
        rows: dict[str, list[dict[str, Any]]] = {d: [] for d in repos}
        for r in range(args.rounds):
            for design, repo in repos.items():
                no_overlay = mock.patch.object(stub_env, "numpy_overlay", lambda *a, **k: None)
                patch = no_overlay if design == "dlpack" else contextlib.nullcontext()
                with patch, LocalServer(repo) as server:
                    rows[design].append(measure(server, reference, args.seconds))
                print(f"round {r + 1}/{args.rounds} {design}: {rows[design][-1]}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nmachine: {platform.machine()}, {platform.python_version()}, numpy {np.__version__}")
    print("design   exact  b1 samples/s  b1 p50 ms  b64 samples/s  b64 p50 ms  log lines/request")
    med: dict[str, dict[str, float]] = {}
    for design, results in rows.items():
        m = {
            f"{k}_{i}": statistics.median(r[k][i] for r in results)
            for k in ("b1", "b64")
            for i in (0, 1)
        }
        m["noise"] = statistics.median(r["log_lines_per_request"] for r in results)
        med[design] = m
        exact = all(r["exact"] for r in results)
        print(
            f"{design:8} {exact!s:6} {m['b1_0']:13.0f} {m['b1_1']:10.2f} {m['b64_0']:14.0f} "
            f"{m['b64_1']:11.2f} {m['noise']:18.2f}"
        )
    print(
        f"\ndlpack / overlay throughput: batch 1 {med['dlpack']['b1_0'] / med['overlay']['b1_0']:.2f}x, "
        f"batch 64 {med['dlpack']['b64_0'] / med['overlay']['b64_0']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
