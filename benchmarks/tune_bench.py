"""Benchmark: `tune` on a compute-bound model, tuned config vs. one instance without dynamic batching.

Builds an MLP 256 -> 2048 -> 2048 -> 10 (ONNX; about 4.7 M multiply-adds per sample, so batching
pays) into a scratch repository, serves it on the embedded tritonserver (explicit model control;
the native ONNX model runs through the Python-backend ONNX Runtime runtime), and in one run:

1. tunes it at concurrency 16 under a p99 budget (full search over a small grid);
2. re-measures the winner and the baseline (1 instance, dynamic batching off) back to back,
   alternating, ``--rounds`` times each, and reports the medians.

Passes (exit 0) when the winner's throughput at concurrency 16 is at least 2x the baseline's
and its p99 is within the budget. Absolute figures depend on the machine (printed); the ratio
is measured in the same run.

    python benchmarks/tune_bench.py [--max-latency-ms 150] [--budget-s 300] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONCURRENCY = 16


def export_mlp(path: Path) -> Path:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(256, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10)
    ).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(2, 256),),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            dynamo=False,
            opset_version=17,
        )
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-latency-ms", type=float, default=150.0)
    parser.add_argument("--budget-s", type=float, default=300.0)
    parser.add_argument("--duration-s", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2, help="A/B re-measurements of each")
    parser.add_argument("--output-dir", type=Path, default=None, help="keep the reports here")
    args = parser.parse_args()

    from packager.builder import build
    from packager.repository import read_config
    from packager.serve.server import LocalServer
    from packager.tune.report import machine, table
    from packager.tune.run import default_load, tune
    from packager.tune.search import Candidate, Point
    from packager.tune.server import ServerTarget

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        onnx_path = export_mlp(Path(tmp) / "mlp.onnx")
        build(onnx_path, name="mlp", output=repo, max_batch_size=32)
        out = args.output_dir or Path(tmp) / "reports"
        with LocalServer(repo, model_control_mode="explicit") as server:
            result = tune(
                repo / "mlp",
                url=server.http_url,
                concurrency=(CONCURRENCY,),
                max_latency_ms=args.max_latency_ms,
                instances=(1, 2),
                max_batch_sizes=(16, 32),
                queue_delays_us=(0, 1000),
                search="full",
                duration_s=args.duration_s,
                warmup_s=1.0,
                budget_s=args.budget_s,
                output_dir=out,
                progress=say,
            )
            print(table(result))
            print(result.summary())
            if result.winner is None:
                print("FAIL: no candidate met the latency budget")
                return 1
            winner = result.winner.candidate
            baseline = Candidate(1, 32, False)
            say(f"A/B: {winner.label} vs {baseline.label}, {args.rounds} round(s) each")
            target = ServerTarget(
                server.http_url,
                repo / "mlp",
                read_config(repo / "mlp"),
                concurrency=(CONCURRENCY,),
                duration_s=args.duration_s,
                warmup_s=1.0,
                load=default_load(),
            )
            target.open()
            points: dict[Candidate, list[Point]] = {winner: [], baseline: []}
            try:
                for _ in range(args.rounds):
                    for c in (baseline, winner):
                        trial = target.evaluate(c)
                        if trial.error:
                            print(f"FAIL: {c.label}: {trial.error}")
                            return 1
                        points[c] += trial.points
                        say(
                            f"  {c.label}: {trial.points[0].throughput:.1f}/s p99 {trial.points[0].p99_ms:.1f} ms"
                        )
            finally:
                target.close()

    def med(c: Candidate, attr: str) -> float:
        return statistics.median(getattr(p, attr) for p in points[c])

    thr_w, thr_b = med(winner, "throughput"), med(baseline, "throughput")
    p99_w, p99_b = med(winner, "p99_ms"), med(baseline, "p99_ms")
    ratio = thr_w / thr_b if thr_b else float("inf")
    m = machine()
    print()
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['system']}, Python {m['python']}")
    print(f"server: embedded tritonserver {result.server_version}; search {result.search}, "
          f"{len(result.trials)} candidates in {result.elapsed_s:.0f} s")  # fmt: skip
    print(f"| config (concurrency {CONCURRENCY}) | infer/s | p99 ms |")
    print("|---|---:|---:|")
    print(
        f"| baseline {baseline.label} (1 instance, no dynamic batching) | {thr_b:.1f} | {p99_b:.1f} |"
    )
    print(f"| tuned {winner.label} | {thr_w:.1f} | {p99_w:.1f} |")
    print(f"throughput ratio tuned/baseline: {ratio:.2f}x (target >= 2x); "
          f"tuned p99 {p99_w:.1f} ms (budget {args.max_latency_ms:g} ms)")  # fmt: skip
    ok = ratio >= 2.0 and p99_w <= args.max_latency_ms
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
