"""LocalServer and the Python runtime work from the installed wheel, not only from the source tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.wheel import install_wheel, run_installed

SCRIPT = """
import sys
import numpy as np
import onnxruntime as ort
import tritonclient.http as httpclient
import packager
from packager.builder import build
from packager.serve.server import LocalServer

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
    target = install_wheel(tmp_path)
    out = run_installed(
        target, SCRIPT, str(model_files["mlp"]), str(tmp_path / "repo"), cwd=tmp_path
    )
    assert out[0].startswith(str(target)), out
    assert out[-1] == "equal"
    model_py = (tmp_path / "repo" / "mlp" / "1" / "model.py").read_text()
    assert 'FORMAT = "onnx"' in model_py
    assert not (tmp_path / "repo" / "mlp" / "1" / "__pycache__").exists()
