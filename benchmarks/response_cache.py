"""Benchmark: Triton's response cache, hit vs miss latency, in one run.

Serves a 512->2048->2048->512 ONNX MLP (Triton's ONNX Runtime backend, one CPU instance, built
with ``response_cache=True``) on the embedded tritonserver, which ``LocalServer`` starts with
``--cache-config local,size=...`` by itself. Then, over HTTP at concurrency 1 with batches of 16:

- hit: the same request again and again (answered from the cache after the first);
- miss: a new random request each time (every one runs the model, and is then cached).

Hits and misses are measured in interleaved rounds (hit, miss, hit, miss, ...), each figure the
median latency of its requests over all rounds, so that load from other work on the machine hits
both alike. Prints both latencies, the miss/hit ratio, and the server's cache counters.

    python benchmarks/response_cache.py [--rounds 5] [--requests 40]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packager.builder import build  # noqa: E402
from packager.client import Client  # noqa: E402
from packager.serve.server import LocalServer  # noqa: E402

BATCH = 16


def model(path: Path) -> Path:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(512, 2048), torch.nn.ReLU(),
        torch.nn.Linear(2048, 2048), torch.nn.ReLU(),
        torch.nn.Linear(2048, 512),
    )  # fmt: skip
    torch.onnx.export(
        net.eval(), (torch.randn(2, 512),), str(path), input_names=["x"], output_names=["y"],
        dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, dynamo=False,
    )  # fmt: skip
    return path


def latencies(client: Client, inputs: list[np.ndarray]) -> list[float]:
    out = []
    for x in inputs:
        start = time.perf_counter()
        client.infer("mlp", {"x": x})
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=40, help="requests per round and kind")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        build(model(Path(tmp) / "mlp.onnx"), name="mlp", output=repo, response_cache=True,
              kind="cpu")  # fmt: skip
        with LocalServer(repo) as server, Client(server.http_url) as client:
            same = rng.standard_normal((BATCH, 512)).astype(np.float32)
            client.infer("mlp", {"x": same})  # the one miss that fills the cache for "hit"
            hits: list[float] = []
            misses: list[float] = []
            for _ in range(args.rounds):
                hits += latencies(client, [same] * args.requests)
                fresh = rng.standard_normal((args.requests, BATCH, 512)).astype(np.float32)
                misses += latencies(client, list(fresh))
            stats = client.statistics("mlp").model_stats[0].inference_stats
    hit_ms = statistics.median(hits) * 1e3
    miss_ms = statistics.median(misses) * 1e3
    print(f"machine: {platform.processor() or platform.machine()}, {len(hits)} hits and "
          f"{len(misses)} misses in {args.rounds} interleaved rounds")  # fmt: skip
    print(f"hit  (same request, from the cache): median {hit_ms:.2f} ms")
    print(f"miss (new request, runs the model):  median {miss_ms:.2f} ms")
    print(f"miss / hit latency: {miss_ms / hit_ms:.1f}x")
    print(f"server counters: cache hits {stats.cache_hit.count}, misses {stats.cache_miss.count}")


if __name__ == "__main__":
    main()
