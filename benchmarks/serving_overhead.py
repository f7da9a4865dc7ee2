"""Benchmark: what serving costs, as ratios to in-process ONNX Runtime measured in the same run.

Model: the MLP 64->512->512->10 (ONNX) of issue 16. Baseline: ONNX Runtime in this process, one
thread, a closed loop of ``session.run``. Served on the embedded tritonserver, driven by
``packager.client`` (closed-loop workers) over HTTP and gRPC:

- ``native``: the default build (``onnxruntime_onnx``) loaded by Triton's own ONNX Runtime
  backend, compiled from r24.10 (``packager.serve.native``);
- ``shadow``: the same repository with the native backends off: the model runs through the
  generated Python runtime (the fallback);
- ``python``: the ``--backend python`` build.

Every cell (path, protocol, batch, concurrency) and the in-process baseline are measured once per
round, rounds interleaved, and the median of the rounds is reported, so that the machine's noise
(2 shared cores) hits every configuration alike. Answers are checked bit-identical first.

Printed: samples/s as a ratio of in-process at the same batch, and the batch-1 latency overhead
(served p50 at concurrency 1 minus the in-process mean), native against shadow.

    python benchmarks/serving_overhead.py [--seconds 2] [--rounds 3] [--params intra_op_thread_count=1]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
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
from packager.serve import native  # noqa: E402
from packager.serve.server import LocalServer  # noqa: E402
from tests.support.onnx_models import mlp_onnx  # noqa: E402

BATCHES = (1, 64)
CONCURRENCY = (1, 2)
PROTOCOLS = ("http", "grpc")
PATHS = ("native", "shadow", "python")
CORES = len(os.sched_getaffinity(0))


def in_process_once(session: Any, x: np.ndarray, seconds: float) -> tuple[float, float]:
    """(samples/s, mean latency ms) of one-thread ONNX Runtime on ``x`` for ``seconds``."""
    for _ in range(20):
        session.run(None, {"input": x})
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        session.run(None, {"input": x})
        n += 1
    return n * len(x) / elapsed, 1000 * elapsed / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per cell and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--params",
        default="",
        help="config parameters for every build, e.g. intra_op_thread_count=1",
    )
    args = parser.parse_args()
    params = dict(p.split("=", 1) for p in args.params.split(",") if p)
    import onnxruntime as ort

    st = native.status(native.BACKENDS["onnx"], build=True, progress=print)
    if not st.ready:
        print(f"the native onnxruntime backend is not available: {st.reason}", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="serving-overhead-"))
    try:
        onnx_path = mlp_onnx(work / "mlp.onnx", (64, 512, 512, 10))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        repo = work / "repo"
        common: dict[str, Any] = {"max_batch_size": 64, "parameters": params, "kind": "cpu"}
        build(onnx_path, name="mlp", output=repo, **common)
        build(onnx_path, name="mlp_py", output=repo, backend="python", **common)
        rng = np.random.default_rng(1)
        xs = {b: rng.standard_normal((b, 64)).astype(np.float32) for b in BATCHES}
        base: dict[int, list[tuple[float, float]]] = {b: [] for b in BATCHES}
        cells: dict[tuple[str, str, int, int], list[tuple[float, float]]] = {}
        with (
            LocalServer(repo, native=True) as on,
            LocalServer(repo, native=False) as off,
        ):
            assert on.native and not on.shadowed, on.shadowed
            assert off.shadowed and not off.native
            targets = {
                "native": (on, "mlp"),
                "shadow": (off, "mlp"),
                "python": (on, "mlp_py"),
            }
            clients = {
                (path, proto): Client(
                    server.http_url if proto == "http" else server.grpc_url, protocol=proto
                )
                for path, (server, _) in targets.items()
                for proto in PROTOCOLS
            }
            for (path, _proto), client in clients.items():
                model = targets[path][1]
                for x in xs.values():
                    want = session.run(None, {"input": x})[0]
                    got = client.infer(model, {"input": x})["logits"]
                    assert np.array_equal(got, want), f"{path}: served answers differ"
            for r in range(args.rounds):
                for b, x in xs.items():
                    base[b].append(in_process_once(session, x, args.seconds))
                for (path, proto), client in clients.items():
                    server, model = targets[path]
                    url = server.http_url if proto == "http" else server.grpc_url
                    for b, x in xs.items():
                        for c in CONCURRENCY:
                            res = run_load(url, model, {"input": x}, concurrency=c,
                                           duration_s=args.seconds, warmup_s=0.3,
                                           protocol=proto, client=client)  # fmt: skip
                            assert res.errors == 0, res.first_error
                            cells.setdefault((path, proto, b, c), []).append(
                                (res.throughput, res.p50_ms)
                            )
                print(f"round {r + 1}/{args.rounds} measured", file=sys.stderr)
            for client in clients.values():
                client.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(rows: list[tuple[float, float]], i: int) -> float:
        return statistics.median(row[i] for row in rows)

    print(f"\nmachine: {platform.machine()}, {CORES} cores, Python {platform.python_version()}, "
          f"{st.describe()}, {args.rounds} interleaved rounds of {args.seconds:g} s, "
          f"params {params or 'defaults'}")  # fmt: skip
    print("in-process ONNX Runtime, 1 thread: " + ", ".join(
        f"batch {b}: {med(base[b], 0):,.0f} samples/s ({med(base[b], 1):.3f} ms)" for b in BATCHES))  # fmt: skip
    cols = [(b, c) for b in BATCHES for c in CONCURRENCY]
    print("path    proto " + "".join(f"b{b}/c{c}".rjust(16) for b, c in cols))
    for path in PATHS:
        for proto in PROTOCOLS:
            row = "".join(
                f"{med(cells[(path, proto, b, c)], 0) / med(base[b], 0):5.2f}x "
                f"{med(cells[(path, proto, b, c)], 0) / 1000:6.1f}k".rjust(16)
                for b, c in cols
            )
            print(f"{path:7} {proto:5} {row}")
    print("\nbatch-1 latency at concurrency 1 (served p50; overhead = p50 - in-process mean):")
    base_ms = med(base[1], 1)
    overhead = {}
    for path in PATHS:
        for proto in PROTOCOLS:
            p50 = med(cells[(path, proto, 1, 1)], 1)
            overhead[(path, proto)] = p50 - base_ms
            print(f"  {path:7} {proto:5} p50 {p50:.3f} ms, overhead {p50 - base_ms:.3f} ms")
    for proto in PROTOCOLS:
        ratio = overhead[("native", proto)] / overhead[("shadow", proto)]
        b64 = med(cells[("native", proto, 64, 2)], 0) / med(base[64], 0)
        print(f"{proto}: native batch-64 at concurrency 2 = {b64:.2f}x in-process (bar 0.90x); "
              f"batch-1 overhead native/shadow = {ratio:.2f} (bar 0.50)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
