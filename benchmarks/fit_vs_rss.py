"""`fit`'s memory estimate vs the measured resident set of each served instance (issue 17).

Builds models of different sizes (MLPs with about 4, 64 and 256 MiB of fp32 weights, one whose
activations dominate at its max batch, the same 64 MiB MLP as TorchScript, and two real models:
silero-vad's ONNX file and all-MiniLM-L6-v2 exported to ONNX), serves them on the embedded
server with 1 and then 2 CPU instances each, sends every model one request at its max batch
size, and reads each instance's stub process from /proc (VmRSS). The baseline is the stub of a
trivial model of the same runtime; measured = VmRSS - baseline. Estimated = weights +
activations from ``packager.deploy.fit.estimate`` (the per-instance runtime overhead is the
baseline itself, so it is compared separately: the stub constants in fit.py).

    python benchmarks/fit_vs_rss.py [--skip-minilm]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import itertools
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packager.builder import build  # noqa: E402
from packager.client import Client  # noqa: E402
from packager.deploy import fit  # noqa: E402
from packager.manifest.builder import build_manifest  # noqa: E402
from packager.repository import read_config  # noqa: E402
from packager.serve.server import LocalServer  # noqa: E402
from tests.support.onnx_models import affine_onnx, mlp_onnx  # noqa: E402
from tests.support.rss import by_model, stub_memory  # noqa: E402

MiB = 1 << 20
ROUNDS = 3
SEQUENCE = 128  # MiniLM's sequence length for the request and for --dim
# name -> (MLP sizes, max batch size); weights = sum(a*b) * 4 bytes
MLPS = {
    "mlp4": ((256, 2048, 256), 64),  # 4 MiB
    "mlp64": ((1024, 4096, 3072, 10), 64),  # 64 MiB
    "mlp256": ((2048, 8192, 6144, 10), 64),  # 256 MiB
    "wide": ((64, 16384, 64), 2048),  # 8 MiB of weights, 128 MiB hidden tensors at batch 2048
}
STEP = "def run(x):\n    return {'y': x}\n"


def make_models(root: Path) -> Path:
    """The artifacts, once: a folder of files the repositories are built from."""
    files = root / "files"
    files.mkdir()
    for name, (sizes, _) in MLPS.items():
        mlp_onnx(files / f"{name}.onnx", sizes)
    affine_onnx(files / "trivial.onnx")
    import torch

    torch.manual_seed(0)
    sizes = MLPS["mlp64"][0]
    layers: list[torch.nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    torch.jit.trace(torch.nn.Sequential(*layers[:-1]).eval(), torch.randn(2, sizes[0])).save(
        str(files / "mlp64.pt")
    )
    torch.jit.trace(torch.nn.Linear(4, 3).eval(), torch.randn(2, 4)).save(str(files / "trivial.pt"))
    (files / "step.py").write_text(STEP)
    return files


def make_repo(files: Path, repo: Path, instances: int, minilm: bool) -> None:
    for name, (_, batch) in MLPS.items():
        build(files / f"{name}.onnx", name=name, output=repo, max_batch_size=batch,
              instances=instances)  # fmt: skip
    build(files / "trivial.onnx", name="trivial_onnx", output=repo, max_batch_size=8)
    build(files / "mlp64.pt", name="mlp64_ts", output=repo, max_batch_size=64,
          input_specs=[f"input:FP32:{MLPS['mlp64'][0][0]}"], instances=instances)  # fmt: skip
    build(files / "trivial.pt", name="trivial_torch", output=repo, max_batch_size=8,
          input_specs=["input:FP32:4"])  # fmt: skip
    vad = Path(str(importlib.metadata.distribution("silero-vad").locate_file(
        "silero_vad/data/silero_vad.onnx")))  # fmt: skip
    build(vad, name="vad", output=repo, instances=instances)
    if minilm:
        from tests.support.hf_models import minilm_folder

        build(minilm_folder(), name="minilm", output=repo, max_batch_size=8, instances=instances)
    manifest = files / f"steps{instances}.yaml"
    manifest.write_text(
        "python_steps:\n"
        f"  - name: trivial_step\n    file: {files / 'step.py'}\n    function: run\n"
        "    inputs: [{name: x, dtype: FP32, dims: [4]}]\n"
        "    outputs: [{name: y, dtype: FP32, dims: [4]}]\n"
        "    max_batch_size: 8\n"
    )
    build_manifest(manifest, repo)


def request(repo: Path, model: str) -> dict[str, np.ndarray]:
    """Random inputs at the model's max batch size (MiniLM: SEQUENCE tokens; vad: 512 samples)."""
    config = read_config(repo / model)
    batch = [config.max_batch_size] if config.max_batch_size else []
    rng = np.random.default_rng(0)
    out = {}
    for t in config.input:
        dims = [SEQUENCE if d < 0 else d for d in t.dims]
        if model == "vad":  # its own layout: input [B, 512], state [2, B, 128], sr [1]
            return {
                "input": rng.standard_normal((1, 512)).astype(np.float32),
                "state": np.zeros((2, 1, 128), np.float32),
                "sr": np.array([16000]),
            }
        if t.data_type == 9:  # TYPE_INT64: token ids / masks
            out[t.name] = np.ones(batch + dims, np.int64)
        else:
            out[t.name] = rng.standard_normal(batch + dims).astype(np.float32)
    return out


def measure(repo: Path, instances: int) -> dict[str, list[int]]:
    """VmRSS of each instance's stub, per model, once every instance has run ROUNDS requests at
    the max batch size (ONNX Runtime settles from its second run on)."""

    def call(url: str, name: str) -> None:
        with Client(url) as client:
            client.infer(name, request(repo, name))

    with LocalServer(repo, startup_timeout_s=300) as server:
        for m in server.models():
            for _ in range(ROUNDS):  # as many concurrent requests as instances: each gets one
                with ThreadPoolExecutor(instances) as pool:
                    list(pool.map(call, [server.http_url] * instances, [m.name] * instances))
        time.sleep(1.0)
        assert server.pid is not None
        return {m: [s.rss for s in stubs] for m, stubs in by_model(stub_memory(server.pid)).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-minilm", action="store_true", help="leave the 90 MB model out")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fit-bench-"))
    try:
        files = make_models(root)
        results = {}
        for n in (1, 2):
            repo = root / f"repo{n}"
            make_repo(files, repo, n, not args.skip_minilm)
            shapes = {"input_ids": (SEQUENCE,)} if not args.skip_minilm else {}
            report = fit.estimate(repo, gpus=0, shapes=shapes)
            results[n] = (report, measure(repo, n))
        report1, rss1 = results[1]
        base = {"onnx": rss1["trivial_onnx"][0], "torch": rss1["trivial_torch"][0],
                "python": rss1["trivial_step"][0]}  # fmt: skip
        print("baseline stub VmRSS (trivial model, after a request): "
              + ", ".join(f"{k} {v / MiB:.1f} MiB" for k, v in base.items()))  # fmt: skip
        print("server RSS is not measured per stub; see the devices table of `fit`.\n")
        header = f"{'model':<10} {'weights':>9} {'activ.':>9} {'estimate':>9}"
        header += f" {'1 inst':>9} {'error':>7} {'2 inst (sum)':>13} {'ratio 2/1':>9}"
        print(f"activation allowance: {fit.ACTIVATION_ALLOWANCE:g} x the peak\n")
        print(header)
        print("-" * len(header))
        for m in report1.models:
            if m.name.startswith("trivial"):
                continue
            runtime = "torch" if m.name.endswith("_ts") else "onnx"
            est = m.model_bytes
            one = rss1[m.name][0] - base[runtime]
            two = sum(r - base[runtime] for r in results[2][1][m.name])
            err = (one - est) / est
            print(f"{m.name:<10} {m.weight_bytes / MiB:>9.1f} {m.activation_bytes / MiB:>9.1f}"
                  f" {est / MiB:>9.1f} {one / MiB:>9.1f} {err:>+7.0%} {two / MiB:>13.1f}"
                  f" {two / one if one > 0 else float('nan'):>9.2f}"
                  + (f"  ({m.activation_note})" if m.activation_note else ""))  # fmt: skip
        print("\n(MiB; estimate = weights + activations at the max batch size; measured = stub "
              "VmRSS - baseline stub of the same runtime)")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
