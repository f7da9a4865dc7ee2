"""Soak benchmark: hold a packaged model under load and count what goes wrong.

Builds a 16->32->4 ONNX MLP with the packager (Python-backend runtime, 2 CPU instances,
dynamic batching), serves it on the embedded tritonserver, and for each protocol (HTTP, gRPC)
runs ``--concurrency`` closed-loop threads sharing one :class:`packager.client.Client` for
``--duration`` seconds. Every answer is compared with ONNX Runtime run in this process on the
same input (each thread cycles through 256 different inputs). Prints, per protocol:

- requests answered, errors, wrong answers, calls still running at the end ("hung");
- latency p50 / p99 / max;
- the client's RSS at the start and the end of the window, and its slope (MB per minute,
  least squares over one sample a second), and the same for the server's process group.

    python benchmarks/soak.py                      # 60 s at concurrency 32, HTTP then gRPC
    python benchmarks/soak.py --duration 10 --concurrency 8 --json

Exit status 0 when there were no errors, no wrong answers and nothing hung. The latency and
memory figures are reported, not judged: they depend on the machine and on other load.
``tests/reliability/test_soak_short.py`` runs :func:`soak` for a few seconds in the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from packager.client import Client  # noqa: E402
from packager.client.core import parse_url  # noqa: E402
from packager.errors import ClientError  # noqa: E402

_PAGE = os.sysconf("SC_PAGE_SIZE")
_MAX_SAMPLES = 2_000_000  # latency slots, allocated up front so that bookkeeping never grows


@dataclass(frozen=True)
class SoakResult:
    """One protocol's soak."""

    protocol: str
    concurrency: int
    duration_s: float
    requests: int  # answered and correct
    errors: int  # ClientError raised
    wrong: int  # answered, but not what ONNX Runtime computes
    hung: int  # worker threads still running 30 s after the end of the window
    first_error: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    client_rss_start_mb: float
    client_rss_end_mb: float
    client_rss_slope_mb_per_min: float
    server_rss_start_mb: float
    server_rss_end_mb: float

    @property
    def ok(self) -> bool:
        return self.errors == 0 and self.wrong == 0 and self.hung == 0


def rss_mb(pids: list[int]) -> float:
    """Resident memory of these processes, MB (0 for those that are gone)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):  # the process is gone
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    return total / 2**20


def soak(
    url: str,
    model: str,
    inputs: np.ndarray,
    expected: np.ndarray,
    *,
    input_name: str = "input",
    output_name: str = "output",
    concurrency: int = 32,
    duration_s: float = 60.0,
    warmup_s: float = 5.0,
    server_pids: Callable[[], list[int]] | None = None,
    timeout_s: float = 30.0,
) -> SoakResult:
    """Closed-loop load on ``model``: every answer checked against ``expected`` (same order as
    ``inputs``, one sample per row; each request sends one row with a batch dim)."""
    # Written now (np.zeros would map its pages lazily, as the slots fill): the bookkeeping's
    # pages are all in the starting RSS and cannot pass for growth of the client's memory.
    latencies = np.full(_MAX_SAMPLES, np.nan)
    slot = itertools.count()
    counts = {"ok": 0, "errors": 0, "wrong": 0}
    lock = threading.Lock()
    first_error: list[str] = []
    me = [os.getpid()]
    start = time.perf_counter()
    begin, end = start + warmup_s, start + warmup_s + duration_s

    with Client(url, timeout_s=timeout_s) as client:

        def worker(w: int) -> None:
            infer, clock = client.infer, time.perf_counter
            n = len(inputs)
            for k in itertools.count(w * 7919):
                t0 = clock()
                if t0 >= end:
                    return
                i = k % n
                try:
                    out = infer(model, {input_name: inputs[i : i + 1]})[output_name]
                    good = out.shape == (1, *expected.shape[1:]) and bool(
                        np.allclose(out[0], expected[i], rtol=1e-5, atol=1e-6)
                    )
                    kind = "ok" if good else "wrong"
                except ClientError as exc:
                    kind = "errors"
                    if not first_error:
                        first_error.append(f"{type(exc).__name__}: {exc}")
                t1 = clock()
                if begin <= t1 < end:
                    with lock:
                        counts[kind] += 1
                    if kind == "ok":
                        latencies[next(slot) % _MAX_SAMPLES] = t1 - t0

        threads = [
            threading.Thread(target=worker, args=(w,), name=f"soak-{w}", daemon=True)
            for w in range(concurrency)
        ]
        for t in threads:
            t.start()
        time.sleep(max(0.0, begin - time.perf_counter()))
        samples: list[tuple[float, float]] = []
        server_start = rss_mb(server_pids()) if server_pids else float("nan")
        while (now := time.perf_counter()) < end:
            samples.append((now - begin, rss_mb(me)))
            time.sleep(min(1.0, max(0.0, end - now)))
        samples.append((time.perf_counter() - begin, rss_mb(me)))
        server_end = rss_mb(server_pids()) if server_pids else float("nan")
        for t in threads:
            t.join(timeout_s)
        hung = sum(t.is_alive() for t in threads)

    n = min(counts["ok"], _MAX_SAMPLES)
    lat = latencies[:n] * 1e3
    p50, p99 = (float(v) for v in np.percentile(lat, [50, 99])) if n else (np.nan, np.nan)
    times, rss = np.array(samples).T
    slope = float(np.polyfit(times, rss, 1)[0]) * 60 if len(samples) > 2 else float("nan")
    return SoakResult(
        protocol=parse_url(url).protocol,
        concurrency=concurrency,
        duration_s=duration_s,
        requests=counts["ok"],
        errors=counts["errors"],
        wrong=counts["wrong"],
        hung=hung,
        first_error=first_error[0] if first_error else "",
        requests_per_s=counts["ok"] / duration_s,
        p50_ms=p50,
        p99_ms=p99,
        max_ms=float(lat.max()) if n else float("nan"),
        client_rss_start_mb=float(rss[0]),
        client_rss_end_mb=float(rss[-1]),
        client_rss_slope_mb_per_min=slope,
        server_rss_start_mb=server_start,
        server_rss_end_mb=server_end,
    )


def build_repository(folder: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """The MLP packaged by triton-packager; 256 inputs and ONNX Runtime's outputs for them."""
    import onnxruntime as ort

    from packager.builder import build
    from tests.support.client_models import mlp_onnx

    onnx_file = mlp_onnx(folder / "mlp.onnx")
    repo = folder / "repo"
    build(str(onnx_file), name="mlp", output=repo, backend="python", instances=2, kind="cpu")
    x = np.random.default_rng(1).standard_normal((256, 16)).astype(np.float32)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    return repo, x, session.run(["output"], {"input": x})[0]


def print_table(results: list[SoakResult]) -> None:
    rows = [
        ("requests answered", lambda r: f"{r.requests:,}"),
        ("requests/s", lambda r: f"{r.requests_per_s:,.0f}"),
        ("errors", lambda r: str(r.errors)),
        ("wrong answers", lambda r: str(r.wrong)),
        ("hung calls", lambda r: str(r.hung)),
        ("latency p50 (ms)", lambda r: f"{r.p50_ms:.2f}"),
        ("latency p99 (ms)", lambda r: f"{r.p99_ms:.2f}"),
        ("latency max (ms)", lambda r: f"{r.max_ms:.1f}"),
        ("client RSS start (MB)", lambda r: f"{r.client_rss_start_mb:.1f}"),
        ("client RSS end (MB)", lambda r: f"{r.client_rss_end_mb:.1f}"),
        ("client RSS slope (MB/min)", lambda r: f"{r.client_rss_slope_mb_per_min:+.2f}"),
        ("server RSS start (MB)", lambda r: f"{r.server_rss_start_mb:.0f}"),
        ("server RSS end (MB)", lambda r: f"{r.server_rss_end_mb:.0f}"),
    ]
    print(f"{'':28}" + "".join(f"{r.protocol.upper():>14}" for r in results))
    for label, cell in rows:
        print(f"{label:28}" + "".join(f"{cell(r):>14}" for r in results))
    for r in results:
        if r.first_error:
            print(f"{r.protocol}: first error: {r.first_error}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per protocol")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--protocols", nargs="+", default=["http", "grpc"])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    from packager.serve.server import LocalServer
    from tests.support.servers import group_members

    with tempfile.TemporaryDirectory(prefix="tp-soak-") as tmp:
        repo, x, expected = build_repository(Path(tmp))
        with LocalServer(repo, startup_timeout_s=300) as server:
            pids = lambda: group_members(server.pid or 0)  # noqa: E731
            urls = {"http": server.http_url, "grpc": f"grpc://{server.grpc_url}"}
            results = []
            for proto in args.protocols:
                if not args.json:
                    print(
                        f"soaking {proto}: {args.duration:g} s at concurrency {args.concurrency} ..."
                    )
                results.append(
                    soak(
                        urls[proto],
                        "mlp",
                        x,
                        expected,
                        concurrency=args.concurrency,
                        duration_s=args.duration,
                        warmup_s=args.warmup,
                        server_pids=pids,
                    )
                )
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(
            f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        )
        print_table(results)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
