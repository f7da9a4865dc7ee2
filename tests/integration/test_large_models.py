"""Large artifacts on the real server (issue 22).

- A synthetic ONNX model above 2 GB (two 1.03 GiB tables in one data file, a bias in another),
  generated in chunks: a build killed while it writes leaves the repository as it was; the
  build's peak RSS (``wait4`` of the build process) stays below half the model's size; validate
  passes; the embedded server answers exactly what the formulas say.
- Hugging Face folders with sharded checkpoints (safetensors shards, and ``.bin`` shards
  exported over a lowered single-file limit, so with an external data file) serve what
  transformers computes in this process from the same folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import packager
from packager.client import Client
from packager.repository import read_record
from packager.sources.huggingface import describe, hf_module, load_tokenizer
from packager.sources.onnx_external import ONNX_SINGLE_FILE_LIMIT
from tests.conftest import StartServer
from tests.support import sharded_hf
from tests.support.large_onnx import BIAS, TABLES, data_bytes, expected, write_large_onnx
from tests.support.onnx_models import affine_onnx
from tests.support.servers import group_members
from tests.support.tree import snapshot

pytestmark = pytest.mark.integration

ROWS, DIM = 270_000, 1024  # 2 x 1.03 GiB tables + 4 KiB bias: 2.21 GB
MAX_ABS_ERROR = 1e-4
TEXTS = ["The weather is lovely today.", "Short.", "He drove to the stadium with his friends."]


def _build_cmd(src: Path, repo: Path, name: str = "big", *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "packager",
        "build",
        str(src),
        "--name",
        name,
        "-o",
        str(repo),
        *extra,
    ]


# Runs the CLI and writes its VmHWM (the kernel's peak resident set of this process image) at
# exit. getrusage/wait4's ru_maxrss would not do: Linux carries the forking parent's resident
# set (pytest with torch loaded: ~600 MiB) over the exec into the child's maximum.
_WITH_PEAK = """
import atexit, runpy, sys
out = sys.argv.pop(1)
def peak():
    with open("/proc/self/status") as f:
        kib = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    with open(out, "w") as f:
        f.write(kib)
atexit.register(peak)
runpy.run_module("packager", run_name="__main__", alter_sys=True)
"""


def _peak_rss_of_build(src: Path, repo: Path, report: Path, name: str, *extra: str) -> int:
    cmd = [sys.executable, "-c", _WITH_PEAK, str(report), *_build_cmd(src, repo, name, *extra)[3:]]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return int(report.read_text()) * 1024


def _staged_data(root: Path) -> Path | None:
    """The data file of a build in progress, in its staging folder beside the repository."""
    for stage in root.glob(".tp-staging-*"):
        for f in stage.glob(f"big/*/{TABLES}"):
            return f
    return None


@pytest.mark.slow
def test_a_model_above_2_gb_builds_in_little_memory_validates_and_serves(
    tmp_path: Path, start_server: StartServer
) -> None:
    size = data_bytes(ROWS, DIM)
    assert size > 2 * 10**9 and size > ONNX_SINGLE_FILE_LIMIT
    src = write_large_onnx(tmp_path / "src", ROWS, DIM)
    repo = tmp_path / "repo"
    try:
        packager.build(affine_onnx(tmp_path / "affine.onnx"), name="affine", output=repo)
        before = snapshot(repo)

        # A build killed while its data file is being staged leaves the repository as it was.
        proc = subprocess.Popen(_build_cmd(src, repo), stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while _staged_data(tmp_path) is None and proc.poll() is None:
            assert time.monotonic() < deadline, "the build never staged its data file"
            time.sleep(0.01)
        proc.kill()
        proc.wait()
        assert proc.returncode == -9, "the build ended before it could be killed"
        assert snapshot(repo) == before

        # The build itself, through the CLI in a process of its own; its peak resident set.
        started = time.monotonic()
        peak = _peak_rss_of_build(src, repo, tmp_path / "peak", "big")
        build_s = time.monotonic() - started
        print(f"build of {size / 1e9:.2f} GB: {build_s:.1f} s, peak RSS {peak / 2**20:.0f} MiB")
        assert peak < size / 2
        assert not list(tmp_path.glob(".tp-staging-*")), "the killed build's stage was not removed"

        vdir = repo / "big" / "1"
        assert {f["file"] for f in read_record(vdir)["external_data"]} == {TABLES, BIAS}
        assert (vdir / TABLES).stat().st_size == size - DIM * 4
        started = time.monotonic()
        report = packager.validate(repo)
        print(f"validate: {time.monotonic() - started:.1f} s")
        assert report.ok, report.to_dict()

        # The same model run by the generated Python runtime (what the shadow uses where the
        # native backend is not there): its model.py beside the graph and the data files.
        peak_py = _peak_rss_of_build(src, repo, tmp_path / "peak", "big_py", "--backend", "python")
        print(f"build --backend python: peak RSS {peak_py / 2**20:.0f} MiB")
        assert peak_py < size / 2
        assert packager.validate(repo).ok

        started = time.monotonic()
        server = start_server(repo)
        print(f"server ready with both models loaded: {time.monotonic() - started:.1f} s")
        ids = np.array([[0, 1, ROWS - 1], [123_456, 7, 200_001]], np.int64)
        with Client(server.http_url) as client:
            for name in ("big", "big_py"):
                got = client.infer(name, {"ids": ids})["rows"]
                assert got.shape == (2, 3, DIM)
                np.testing.assert_array_equal(got, expected(ids, DIM))
        assert server.pid is not None
        rss = sum(_rss(pid) for pid in group_members(server.pid))
        print(f"served exact answers from both; server + stubs RSS {rss / 2**30:.2f} GiB")
        server.stop()
    finally:
        shutil.rmtree(src.parent, ignore_errors=True)
        shutil.rmtree(repo, ignore_errors=True)


def _rss(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # gone meanwhile
        return 0
    return next(
        (int(x.split()[1]) * 1024 for x in status.splitlines() if x.startswith("VmRSS:")), 0
    )


def _tokens(folder: Path) -> dict[str, np.ndarray]:
    info = describe(folder)
    tok = load_tokenizer(info.tokenizer, info.max_length)  # type: ignore[arg-type]
    enc = tok.encode_batch(TEXTS)
    return {
        "input_ids": np.array([e.ids for e in enc], np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
    }


def _in_process(folder: Path, tokens: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    module = hf_module(describe(folder))
    with torch.no_grad():
        out = module(*(torch.from_numpy(tokens[k]) for k in ("input_ids", "attention_mask")))
    return {k: v.numpy() for k, v in out.items()}


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("sharded")
    repo = root / "repo"
    folders = {
        "sharded_embedder": sharded_hf.save(
            sharded_hf.tiny_bert("feature-extraction"), root / "emb", "safetensors"
        ),
        "sharded_classifier": sharded_hf.save(
            sharded_hf.tiny_bert("sequence-classification"), root / "clf", "bin"
        ),
    }
    packager.build(folders["sharded_embedder"], name="sharded_embedder", output=repo)
    with pytest.MonkeyPatch.context() as mp:  # as if it were above 2 GB: external data
        mp.setattr("packager.sources.pytorch.exporters.ONNX_SINGLE_FILE_LIMIT", 0)
        packager.build(folders["sharded_classifier"], name="sharded_classifier", output=repo)
    return repo, folders


def test_sharded_hugging_face_folders_serve_what_transformers_computes(
    start_server: StartServer, sharded: tuple[Path, dict[str, Path]]
) -> None:
    repo, folders = sharded
    assert packager.validate(repo).ok
    assert (repo / "sharded_classifier" / "1" / "model.onnx.data").is_file()
    assert not (repo / "sharded_embedder" / "1" / "model.onnx.data").exists()
    server = start_server(repo)
    with Client(server.http_url) as client:
        for name, folder in folders.items():
            assert len(sharded_hf.shards(folder)) >= 2
            tokens = _tokens(folder)
            want = _in_process(folder, tokens)
            got = client.infer(name, tokens)
            for key, value in want.items():
                error = float(np.abs(got[key] - value).max())
                print(f"{name} {key}: max abs error {error:.3g}")
                assert got[key].shape == value.shape
                assert error <= MAX_ABS_ERROR
