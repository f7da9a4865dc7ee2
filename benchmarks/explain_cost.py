"""Benchmark: what an explanation costs, served vs in-process, and what batching buys.

Model: the benchmarks' MLP 64 -> 512 -> 512 -> 10 (ONNX), built with max_batch_size 64 and
served on the embedded tritonserver. One tabular sample of 64 features, KernelSHAP with
--samples coalitions (sampled: 64 features are too many to enumerate), the same seed everywhere.

Measured in one run: perturbed inputs evaluated per second
- in-process (ONNX Runtime in this process, ``onnx_runner``) at batch 64 and batch 1;
- served over HTTP and gRPC (``packager.client``) at --batch-size 64 and 1;
and the ratios: served/in-process at batch 64, batch 64/batch 1 served. Attributions are checked
equal (served vs in-process) before any figure is printed.

    python benchmarks/explain_cost.py [--samples 4096] [--repeats 5] [--pictures docs/images]

With --pictures, also writes the three pictures of docs/explain.md (bars, heatmap, words).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packager.builder import build  # noqa: E402
from packager.client import Client  # noqa: E402
from packager.explain import explain  # noqa: E402
from packager.serve.server import LocalServer  # noqa: E402
from packager.sources.verify import onnx_runner  # noqa: E402
from tests.support.onnx_models import mlp_onnx  # noqa: E402


def rate(e: Any) -> float:
    return e.evaluations / e.elapsed_s


def measure(server: LocalServer, path: Path, samples: int, repeats: int) -> None:
    """Every configuration once per round, ``repeats`` rounds: the machine is shared, so ratios
    are taken within a round (same load) and the median over rounds is reported."""
    x = np.random.default_rng(0).normal(size=64).astype(np.float32)
    kw = {"method": "kernelshap", "samples": samples, "seed": 0}
    local = onnx_runner(path)
    http, grpc = Client(server.http_url), Client(f"grpc://{server.grpc_url}")
    sources = {"in-process": local, "served http": http, "served grpc": grpc}
    configs = {f"{name}, batch {b}": (src, b) for name, src in sources.items() for b in (64, 1)}
    for src in sources.values():  # warm-up: connections, sessions, the server's first batches
        explain(src, "mlp", {"input": x}, **{**kw, "samples": 256})
    rounds: list[dict[str, Any]] = []
    for _ in range(repeats):
        rounds.append(
            {
                name: explain(src, "mlp", {"input": x}, batch_size=b, **kw)
                for name, (src, b) in configs.items()
            }
        )
    http.close()
    grpc.close()
    ref = rounds[0]["in-process, batch 64"]
    for runs in rounds:
        for name, e in runs.items():
            worst = float(np.abs(e.attributions - ref.attributions).max())
            assert worst < 1e-5, (name, worst)

    def median(values: list[float]) -> float:
        return float(np.median(values))

    print(
        f"KernelSHAP, 64 features, {ref.evaluations} evaluations per run, {repeats} rounds "
        "(medians); attributions equal"
    )
    print(f"{'run':<24} {'requests':>8} {'seconds':>8} {'evals/s':>10}")
    for name in configs:
        e = rounds[0][name]
        secs = median([r[name].elapsed_s for r in rounds])
        print(f"{name:<24} {e.requests:>8} {secs:>8.3f} {e.evaluations / secs:>10,.0f}")
    for proto in ("http", "grpc"):
        s64, s1 = f"served {proto}, batch 64", f"served {proto}, batch 1"
        batching = median([rate(r[s64]) / rate(r[s1]) for r in rounds])
        overhead = median([rate(r[s64]) / rate(r["in-process, batch 64"]) for r in rounds])
        print(
            f"{proto}: batch 64 / batch 1 = {batching:.1f}x; served / in-process at batch 64 "
            f"= {overhead:.2f}x"
        )


def pictures(server: LocalServer, root: Path, out: Path) -> None:
    """The docs' pictures: bars (the MLP), a heatmap (a window detector), words (text)."""
    from packager.explain.plot import save_plot
    from tests.integration.test_explain import classifier_folder

    out.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(0).normal(size=64).astype(np.float32)
    with Client(server.http_url) as client:
        save_plot(explain(client, "mlp", {"input": x}), out / "explain_tabular.png")
        img = np.random.default_rng(1).uniform(0, 0.3, size=(32, 32)).astype(np.float32)
        img[6:14, 16:26] += 0.7  # a bright object, half inside the detector's window
        img[20:28, 4:12] += 0.7  # another, outside it
        e = explain(client, "window", {"image": img}, patch=4)
        save_plot(e, out / "explain_image.png")
    repo = root / "text_repo"
    from packager.builder import BuildOptions

    build(classifier_folder(root / "clf"), BuildOptions("sentiment", output=repo, text=True))
    with LocalServer(repo) as text_server, Client(text_server.http_url) as client:
        e = explain(
            client, "sentiment", "The match was a thrilling, wonderful game.", output="PROBS"
        )
        save_plot(e, out / "explain_text.png")
        (out / "explain_text.html").write_text(e.html())
    print(f"pictures written to {out}")


def window_onnx(path: Path) -> Path:
    """score = mean of image[4:16, 12:24] - mean of the rest: a 'detector' of one window."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.full((32, 32), -1 / (32 * 32 - 144), np.float32)
    w[4:16, 12:24] = 1 / 144
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["score"]),
        ],
        "window",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 32, 32])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(w.reshape(-1, 1), "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pictures", type=Path, default=None)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(
        f"{platform.processor() or platform.machine()}, {cores} cores, Python {platform.python_version()}"
    )
    root = Path(tempfile.mkdtemp(prefix="explain-cost-"))
    try:
        path = mlp_onnx(root / "mlp.onnx")
        repo = root / "repo"
        build(path, name="mlp", output=repo, max_batch_size=64)
        build(window_onnx(root / "window.onnx"), name="window", output=repo)
        with LocalServer(repo) as server:
            measure(server, path, args.samples, args.repeats)
            if args.pictures is not None:
                pictures(server, root, args.pictures)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
