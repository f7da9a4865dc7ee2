"""Example pipeline: one ensemble request vs. three client round trips vs. in-process steps.

Serves a copy of model_repository/ on the embedded tritonserver and times, in the same run,
sequential requests of one text each:

- ``ensemble``: one request to text_classifier (Triton chains the three models);
- ``three calls``: the client calls tokenizer, classifier and postprocess itself;
- ``in-process``: the three steps called directly (no server).

Prints medians and ratios; absolute figures depend on the machine, ratios less so.

    python benchmarks/ensemble_pipeline.py [--requests 300]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _median_ms(fn: Callable[[], object], n: int) -> float:
    for _ in range(min(20, n)):  # warm up
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

    import tritonclient.grpc as grpc

    from packager.manifest.pysteps import StepRunner
    from packager.serve.server import LocalServer

    text = np.array([[b"heavy rain and wind tomorrow"]], dtype=object)
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "model_repository"
        shutil.copytree(ROOT / "model_repository", repo)
        tok, post = StepRunner(repo / "tokenizer" / "1"), StepRunner(repo / "postprocess" / "1")
        import onnxruntime as ort

        session = ort.InferenceSession(str(repo / "classifier" / "1" / "model.onnx"))

        def local() -> object:
            ids = tok(TEXT=text)["INPUT_IDS"]
            (logits,) = session.run(["LOGITS"], {"INPUT_IDS": ids})
            return post(LOGITS=logits)

        with LocalServer(repo) as server:
            client = grpc.InferenceServerClient(server.grpc_url)

            def call(model: str, name: str, array: np.ndarray, dtype: str) -> grpc.InferResult:
                tensor = grpc.InferInput(name, list(array.shape), dtype)
                tensor.set_data_from_numpy(array)
                return client.infer(model, [tensor])

            def ensemble() -> object:
                return call("text_classifier", "TEXT", text, "BYTES")

            def three_calls() -> object:
                ids = call("tokenizer", "TEXT", text, "BYTES").as_numpy("INPUT_IDS")
                logits = call("classifier", "INPUT_IDS", ids, "INT64").as_numpy("LOGITS")
                return call("postprocess", "LOGITS", logits, "FP32")

            results = {
                "ensemble (1 request)": _median_ms(ensemble, args.requests),
                "three calls (3 requests)": _median_ms(three_calls, args.requests),
                "in-process (no server)": _median_ms(local, args.requests),
            }
    base = results["ensemble (1 request)"]
    print(f"{'':28}{'median ms':>10}{'vs ensemble':>13}")
    for name, ms in results.items():
        print(f"{name:28}{ms:10.3f}{ms / base:12.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
