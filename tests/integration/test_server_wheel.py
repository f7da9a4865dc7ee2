"""LocalServer and the Python runtime work from the installed wheel, not only from the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
import numpy as np
import onnxruntime as ort
import tritonclient.http as httpclient
import packager
from packager.builder import build
from packager.server import LocalServer

onnx_file, repo = sys.argv[1], sys.argv[2]
print(packager.__file__)
build(onnx_file, name="mlp", output=repo, backend="python")
x = np.arange(32, dtype=np.float32).reshape(2, 16) / 32
with LocalServer(repo) as server:
    client = httpclient.InferenceServerClient(server.http_url)
    t = httpclient.InferInput("input", [2, 16], "FP32")
    t.set_data_from_numpy(x)
    got = client.infer("mlp", [t]).as_numpy("output")
    client.close()
want = ort.InferenceSession(onnx_file).run(None, {"input": x})[0]
print("equal" if np.array_equal(got, want) else f"DIFFERENT {got} {want}")
"""


@pytest.mark.integration
@pytest.mark.slow
def test_installed_wheel_serves_a_python_runtime_model(
    tmp_path: Path, model_files: dict[str, Path]
) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(dist.glob("triton_packager-*.whl"))
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    # Dependencies (and the nvidia-pytriton server) from this environment; packager only from the
    # wheel: -I drops PYTHONPATH and the working directory, so the source tree is out of reach.
    paths = [str(target), sysconfig.get_paths()["purelib"]]
    prefix = f"import sys; sys.path[:0] = {paths!r}\n"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            prefix + SCRIPT,
            str(model_files["mlp"]),
            str(tmp_path / "repo"),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    ).stdout.splitlines()
    assert out[0].startswith(str(target)), out
    assert out[-1] == "equal"
    model_py = (tmp_path / "repo" / "mlp" / "1" / "model.py").read_text()
    assert 'FORMAT = "onnx"' in model_py
    assert not (tmp_path / "repo" / "mlp" / "1" / "__pycache__").exists()
