"""Benchmark: the OpenAI-compatible service's overhead over Triton's own gRPC stream.

Model: the seeded Llama of the tests (tests/support/gen_models.py) with a chat template, built
with ``--task text-generation`` and served on the embedded tritonserver, with the OpenAI service
(:mod:`packager.openai_api`, gRPC to Triton) beside it. The same requests (``--tokens`` greedy
tokens, ``ignore_eos``) go through both routes, measured by the same code
(:mod:`packager.client.genbench`: Triton's ``stream_chunks`` over gRPC, and a streamed
``/v1/completions`` over HTTP), rounds interleaved, medians printed:

- time to first token at 1 stream, median (goal: OpenAI <= 1.2x of gRPC);
- output tokens/s at 8 streams (goal: within 10 %).

    python benchmarks/openai_api.py [--tokens 64] [--rounds 3] [--requests 8] [--hidden 64]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packager.builder import build  # noqa: E402
from packager.client import Client  # noqa: E402
from packager.client import genbench as gb  # noqa: E402
from packager.openai_api import OpenAIService  # noqa: E402
from packager.serve.server import LocalServer  # noqa: E402
from tests.support.gen_models import make_causal_lm  # noqa: E402

STREAMS = (1, 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=8, help="requests per stream and level")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the model")
    parser.add_argument("--hidden", type=int, default=64, help="model width (64: the tests')")
    args = parser.parse_args()
    sampling = {"temperature": 0, "max_tokens": args.tokens, "ignore_eos": True}
    prompts = gb.synthetic_prompts(16, 8)

    with tempfile.TemporaryDirectory(prefix="tp-openai-bench-") as tmp:
        folder = make_causal_lm(Path(tmp) / "llama", "llama", context=256, hidden=args.hidden)
        repo = Path(tmp) / "repo"
        build(folder, name="llm", output=repo, parameters={"threads": str(args.threads)})
        with LocalServer(repo, startup_timeout_s=180) as server:
            client = Client(f"grpc://{server.grpc_url}", timeout_s=300)
            service = OpenAIService(f"grpc://{server.grpc_url}", port=0, repository=repo).start()
            routes = {
                "gRPC": gb.triton_target(client, "llm"),
                "OpenAI": gb.openai_target(service.url, "llm", None, 300),
            }
            for target in routes.values():  # warm both
                gb.run_concurrency(target, prompts, sampling, 2, 4)
            ttft: dict[tuple[str, int], list[float]] = {}
            rate: dict[tuple[str, int], list[float]] = {}
            for _ in range(args.rounds):
                for n in STREAMS:
                    for name, target in routes.items():
                        level = gb.run_concurrency(target, prompts, sampling, n, n * args.requests)
                        s = level.summary(None, None)
                        assert s["errors"] == 0, s["first_error"]
                        ttft.setdefault((name, n), []).append(s["ttft_ms"]["p50"])
                        rate.setdefault((name, n), []).append(s["output_tokens_per_s"])
            service.stop()
            client.close()

    med_t = {k: statistics.median(v) for k, v in ttft.items()}
    med_r = {k: statistics.median(v) for k, v in rate.items()}
    print(
        f"# {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"torch threads {args.threads}, Llama hidden {args.hidden}, {args.tokens} tokens/request, "
        f"{args.requests} requests per stream, median of {args.rounds} rounds"
    )
    print(f"{'route':<7} {'streams':>7} {'TTFT ms':>9} {'tokens/s':>9}")
    for name in routes:
        for n in STREAMS:
            print(f"{name:<7} {n:>7} {med_t[(name, n)]:>9.1f} {med_r[(name, n)]:>9.0f}")
    print(
        f"TTFT OpenAI / gRPC at 1 stream: {med_t[('OpenAI', 1)] / med_t[('gRPC', 1)]:.2f}x "
        "(goal <= 1.2x)"
    )
    print(
        f"tokens/s OpenAI / gRPC at 8 streams: {med_r[('OpenAI', 8)] / med_r[('gRPC', 8)]:.2f}x "
        "(goal >= 0.9x)"
    )


if __name__ == "__main__":
    main()
