"""Benchmark: streaming text generation, served vs in-process, at 1, 4 and 8 concurrent streams.

Model: the seeded Llama of the tests (tests/support/gen_models.py), built with ``--task
text-generation`` and served on the embedded tritonserver; the baseline is the same engine
(:mod:`packager.generate.engine`) in this process, same torch threads, same requests. Each
stream asks for ``--tokens`` greedy tokens (``ignore_eos``, so every stream has the same length);
``N`` streams start together (``Client.stream`` over gRPC, or HTTP SSE with ``--protocol http``, from N threads;
in-process, N sinks).

Measured per (side, N), rounds interleaved, medians printed:

- time to first token (TTFT): from sending to the first text chunk, mean over the N streams;
- aggregate tokens/s: N x tokens / wall time of the N streams.

Ratios printed: served / in-process TTFT at 1 stream (goal <= 1.5x), and tokens/s at 8 streams /
at 1 stream for each side (goal >= 3x: per-step batching works).

Where the served side's time goes: CPU seconds per 1,000 tokens at 8 streams, by process (the
tritonserver process, its Python-backend stub that runs the engine, and this client process),
read from /proc around the measured rounds, against this process alone in-process. Also
``bench-generate``'s measurement (:mod:`packager.client.genbench`, ``stream_chunks``) at 8
streams in the same run, whose tokens/s must agree with this script's served figure.

    python benchmarks/generation.py [--tokens 64] [--rounds 3] [--threads 1] [--hidden 512] [--protocol http]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packager.builder import build  # noqa: E402
from packager.client import Client, genbench  # noqa: E402
from packager.generate.engine import Engine, QueueSink  # noqa: E402
from packager.generate.sampling import parse_sampling  # noqa: E402
from packager.serve.server import LocalServer  # noqa: E402
from tests.support.gen_models import PROMPTS, make_causal_lm  # noqa: E402

STREAMS = (1, 4, 8)


def measure(n: int, open_stream: Callable[[str], Iterable[str]]) -> tuple[float, float, int]:
    """(mean TTFT s, aggregate tokens/s basis: wall s, chunks) of ``n`` streams started together."""
    firsts: list[float] = [0.0] * n
    counts: list[int] = [0] * n
    barrier = threading.Barrier(n + 1)

    def one(i: int) -> None:
        barrier.wait()
        start = time.perf_counter()
        for k, _chunk in enumerate(open_stream(PROMPTS[i % len(PROMPTS)])):
            if k == 0:
                firsts[i] = time.perf_counter() - start
            counts[i] += 1

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return statistics.mean(firsts), time.perf_counter() - start, sum(counts)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_processes(pid: int) -> dict[str, int]:
    """The tritonserver process and its Python-backend stubs (children), by role."""
    out = {"tritonserver": pid}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        if ppid == pid and name.startswith("triton_python"):  # comm: 15 chars of the stub name
            out[f"stub {stat.parent.name}"] = int(stat.parent.name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--hidden", type=int, default=64, help="model width (64: the tests')")
    parser.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    args = parser.parse_args()
    params = {"temperature": 0, "max_tokens": args.tokens, "ignore_eos": True}

    with tempfile.TemporaryDirectory(prefix="tp-gen-bench-") as tmp:
        folder = make_causal_lm(Path(tmp) / "llama", "llama", context=256, hidden=args.hidden)
        build(
            folder, name="llm", output=Path(tmp) / "repo", parameters={"threads": str(args.threads)}
        )
        engine = Engine.load(str(folder), threads=args.threads).start()
        sampling = parse_sampling(params)

        def local(prompt: str) -> Iterable[str]:
            sink = QueueSink()
            engine.submit(prompt, sampling, sink, stream=True)
            return sink

        with LocalServer(Path(tmp) / "repo", startup_timeout_s=180) as server:
            url = f"grpc://{server.grpc_url}" if args.protocol == "grpc" else server.http_url
            client = Client(url, timeout_s=300)

            def served(prompt: str) -> Iterable[str]:
                return client.stream("llm", prompt, **params)

            sides = {"in-process": local, "served": served}
            for side in sides.values():  # warm both
                measure(2, side)
            results: dict[tuple[str, int], list[tuple[float, float]]] = {}
            procs = {**server_processes(server.pid or 0), "client (this process)": os.getpid()}
            cpu: dict[tuple[str, str], float] = {}  # (side, process) -> CPU s at 8 streams
            tokens8 = 0
            genbench_rates = []
            target = genbench.triton_target(client, "llm")
            prompts = [PROMPTS[i % len(PROMPTS)] for i in range(8)]
            for _ in range(args.rounds):
                for n in STREAMS:
                    for name, side in sides.items():
                        before = {k: cpu_seconds(p) for k, p in procs.items()}
                        ttft, wall, _chunks = measure(n, side)
                        if n == 8:
                            tokens8 += 8 * args.tokens if name == "served" else 0
                            for k, p in procs.items():
                                key = (name, k)
                                cpu[key] = cpu.get(key, 0.0) + cpu_seconds(p) - before[k]
                        results.setdefault((name, n), []).append((ttft, n * args.tokens / wall))
                level = genbench.run_concurrency(target, prompts, params, 8, 8)
                genbench_rates.append(level.summary(None, None)["output_tokens_per_s"])
            client.close()
        engine.stop()

    med = {
        key: (statistics.median(t for t, _ in v), statistics.median(r for _, r in v))
        for key, v in results.items()
    }
    print(
        f"# {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"{args.protocol}, torch threads {args.threads}, Llama hidden {args.hidden}, {args.tokens} tokens/stream, "
        f"median of {args.rounds} rounds"
    )
    print(f"{'side':<11} {'streams':>7} {'TTFT ms':>9} {'tokens/s':>9}")
    for name in sides:
        for n in STREAMS:
            ttft, rate = med[(name, n)]
            print(f"{name:<11} {n:>7} {ttft * 1e3:>9.1f} {rate:>9.0f}")
    ratio = med[("served", 1)][0] / med[("in-process", 1)][0]
    print(f"TTFT served / in-process at 1 stream: {ratio:.2f}x (goal <= 1.5x)")
    for name in sides:
        scale = med[(name, 8)][1] / med[(name, 1)][1]
        print(f"{name}: tokens/s at 8 streams / at 1 stream: {scale:.2f}x (goal >= 3x)")
    for n in STREAMS:
        rate = med[("served", n)][1] / med[("in-process", n)][1]
        print(f"tokens/s served / in-process at {n} streams: {rate:.2f}x")
    print(f"CPU seconds per 1,000 tokens at 8 streams ({tokens8} tokens per side):")
    for name in sides:
        for k in procs:
            share = cpu[(name, k)] / tokens8 * 1000
            if share >= 0.005:
                print(f"  {name:<11} {k:<24} {share:6.2f}")
    agree = statistics.median(genbench_rates) / med[("served", 8)][1]
    print(f"bench-generate tokens/s at 8 streams / this script's served: {agree:.2f}x")


if __name__ == "__main__":
    main()
