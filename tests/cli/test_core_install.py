"""Installs by role: the wheel with only its core dependencies, in a new environment.

The core (ONNX packaging, validate, render, versions, the client, Docker/Kubernetes assets) must
work without torch, onnxruntime or matplotlib; a command that needs one of them names the extra.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from packager.serve.server import LocalServer
from tests.support.onnx_models import affine_onnx
from tests.support.wheel import core_environment

OPTIONAL = ("torch", "onnxruntime", "matplotlib", "safetensors", "onnxscript")


def test_import_packager_client_loads_no_runtime() -> None:
    code = (
        "import sys, packager.client\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({OPTIONAL!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
@pytest.mark.integration
def test_core_wheel_builds_validates_and_calls_a_served_model(tmp_path: Path) -> None:
    bin_dir = core_environment(tmp_path)
    python, cli = str(bin_dir / "python"), str(bin_dir / "triton-packager")
    missing = subprocess.run(
        [python, "-c", f"import importlib.util as u; print([m for m in {OPTIONAL!r} if u.find_spec(m)])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert missing == "[]", f"the core install pulled in {missing}"

    model = affine_onnx(tmp_path / "affine.onnx")
    repo = tmp_path / "repo"
    # Without PYTHONPATH: a checkout on it would be imported instead of the installed wheel.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = {"capture_output": True, "text": True, "cwd": tmp_path, "timeout": 300, "env": env}
    built = subprocess.run([cli, "build", str(model), "--name", "affine", "-o", str(repo)], **run)
    assert built.returncode == 0, built.stderr
    checked = subprocess.run([cli, "validate", str(repo)], **run)
    assert checked.returncode == 0 and "ok affine" in checked.stdout, (
        checked.stdout + checked.stderr
    )

    # A command that needs an extra says which one, in one line, without a traceback.
    quantize = subprocess.run(
        [cli, "build", str(model), "--name", "q", "-o", str(repo), "--quantize", "dynamic-int8"],
        **run,
    )  # fmt: skip
    assert quantize.returncode == 1 and "Traceback" not in quantize.stderr
    assert "pip install 'triton-packager[" in quantize.stderr and "[compress]" in quantize.stderr
    assert not (repo / "q").exists()

    # The core's client against the real server (run from this, the full, environment).
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys, numpy as np\n"
        "from packager.client import Client, ModelNotFound\n"
        "with Client(sys.argv[1]) as c:\n"
        "    np.save(sys.argv[2], c.infer('affine', {'x': np.load(sys.argv[3])})['y'])\n"
        "    try:\n"
        "        c.infer('nope', {'x': np.load(sys.argv[3])})\n"
        "    except ModelNotFound as exc:\n"
        "        print('ModelNotFound:', exc)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'onnxruntime'}))\n"
    )
    with LocalServer(repo) as server:
        for url in (server.http_url, f"grpc://{server.grpc_url}"):
            out = subprocess.run(
                [python, "-c", script, url, str(tmp_path / "y.npy"), str(tmp_path / "x.npy")],
                **run,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            assert "ModelNotFound: " in out.stdout and out.stdout.splitlines()[-1] == "[]"
            expected = ort.InferenceSession(str(model)).run(None, {"x": x})[0]
            np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)
