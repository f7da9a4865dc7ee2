"""Benchmark: what serving costs, as ratios to in-process ONNX Runtime measured in the same run.

Model: the MLP 64->512->512->10 (ONNX) of issue 16. Baseline: ONNX Runtime in this process, one
thread, a closed loop of ``session.run`` at batch 1, 8 and 64. Served: the same file built by
default (onnxruntime_onnx, run here through the shadow's Python runtime) and with
``--backend python``, on the embedded tritonserver, driven by ``packager.client`` (HTTP,
closed-loop workers) at concurrency 1, 2 and 4.

Each served configuration is measured under named runtime settings (config parameters of the
generated runtime), so that the settings before and after a change are compared in one run:

- ``before``: what the runtime did before issue 16 (ONNX Runtime threads = cores / instances,
  its worker threads spinning while idle);
- ``after``: the defaults now.

Printed: samples/s and the served/in-process ratio per batch and concurrency, and the batch-1
latency overhead (served p50 / in-process mean). Answers are checked bit-identical first.

    python benchmarks/serving_overhead.py [--seconds 2] [--settings before,after]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packager.builder import build  # noqa: E402
from packager.client import Client  # noqa: E402
from packager.client.bench import run_load  # noqa: E402
from packager.serve.server import LocalServer  # noqa: E402
from tests.support.onnx_models import mlp_onnx  # noqa: E402

BATCHES = (1, 8, 64)
CONCURRENCY = (1, 2, 4)
CORES = len(os.sched_getaffinity(0))
# Runtime settings by name: config parameters of the generated Python runtime.
SETTINGS: dict[str, dict[str, str]] = {
    "before": {"intra_op_thread_count": str(CORES), "allow_spinning": "1"},
    "after": {},  # the defaults
    "1-thread": {"intra_op_thread_count": "1"},
    "2-inst": {"intra_op_thread_count": "1", "instances": "2"},
}


def in_process(path: Path, seconds: float) -> dict[int, tuple[float, float]]:
    """batch -> (samples/s, mean latency ms) for one-thread ONNX Runtime in this process."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    out = {}
    rng = np.random.default_rng(0)
    for batch in BATCHES:
        x = rng.standard_normal((batch, 64)).astype(np.float32)
        for _ in range(50):
            session.run(None, {"input": x})
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            session.run(None, {"input": x})
            n += 1
        out[batch] = (n * batch / elapsed, 1000 * elapsed / n)
    return out


def served(
    repo: Path, model: str, reference: Any, seconds: float
) -> dict[Any, tuple[float, float]]:
    """(batch, concurrency) -> (samples/s, p50 ms); answers checked against ``reference``."""
    out: dict[Any, tuple[float, float]] = {}
    rng = np.random.default_rng(1)
    with LocalServer(repo) as server, Client(server.http_url) as client:
        for batch in BATCHES:
            x = rng.standard_normal((batch, 64)).astype(np.float32)
            got = client.infer(model, {"input": x})["logits"]
            assert np.array_equal(got, reference(x)), f"{model}: served answers differ"
            for c in CONCURRENCY:
                r = run_load(server.http_url, model, {"input": x}, concurrency=c,
                             duration_s=seconds, warmup_s=0.5, client=client)  # fmt: skip
                assert r.errors == 0, r.first_error
                out[(batch, c)] = (r.throughput, r.p50_ms)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--settings", default="before,after")
    args = parser.parse_args()
    names = [s for s in args.settings.split(",") if s]
    import onnxruntime as ort

    work = Path(tempfile.mkdtemp(prefix="serving-overhead-"))
    try:
        onnx_path = mlp_onnx(work / "mlp.onnx", (64, 512, 512, 10))
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

        def reference(x: np.ndarray) -> np.ndarray:
            return np.asarray(session.run(None, {"input": x})[0])

        base = in_process(onnx_path, args.seconds)
        rows = []
        for setting in names:
            repo = work / setting
            params = dict(SETTINGS[setting])
            instances = int(params.pop("instances", "1"))
            common = {"max_batch_size": 64, "parameters": params, "instances": instances,
                      "kind": "cpu"}  # fmt: skip
            build(onnx_path, name="native", output=repo, **common)
            build(onnx_path, name="python", output=repo, backend="python", **common)
            for model in ("native", "python"):
                rows.append((setting, model, served(repo, model, reference, args.seconds)))
                print(f"measured {setting} {model}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nmachine: {platform.machine()}, {CORES} cores, Python {platform.python_version()}")
    print("in-process ONNX Runtime, 1 thread: " + ", ".join(
        f"batch {b}: {base[b][0]:,.0f} samples/s ({base[b][1]:.3f} ms)" for b in BATCHES))  # fmt: skip
    head = "settings  build    " + "  ".join(
        f"b{b}/c{c}".rjust(13) for b in BATCHES for c in CONCURRENCY
    )
    print(head)
    for setting, model, res in rows:
        cells = "  ".join(
            f"{res[(b, c)][0] / base[b][0]:5.2f}x {res[(b, c)][0] / 1000:5.1f}k".rjust(13)
            for b in BATCHES for c in CONCURRENCY
        )  # fmt: skip
        print(f"{setting:9} {model:7}  {cells}")
    print("\nbatch-1 latency overhead (served p50 at concurrency 1 / in-process mean):")
    for setting, model, res in rows:
        print(
            f"  {setting:7} {model:7} {res[(1, 1)][1] / base[1][1]:6.1f}x ({res[(1, 1)][1]:.3f} ms)"
        )
    best64 = {(s, m): max(res[(64, c)][0] for c in CONCURRENCY) / base[64][0] for s, m, res in rows}
    print(
        "\nbest batch-64 throughput ratio: "
        + ", ".join(f"{s} {m} {r:.2f}x" for (s, m), r in best64.items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
