"""LocalServer: the real tritonserver starts, serves, reports failures and stops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from packager.builder import build

pytestmark = pytest.mark.integration


def test_smoke_python_backend_onnx(
    start_server, model_files: dict[str, Path], tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    build(str(model_files["mlp"]), name="mlp", output=repo, backend="python")
    server = start_server(repo)
    assert [(m.name, m.state) for m in server.models()] == [("mlp", "READY")]
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        inp = httpclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        got = client.infer("mlp", [inp]).as_numpy("output")
    finally:
        client.close()
    import onnxruntime as ort

    want = ort.InferenceSession(str(model_files["mlp"])).run(None, {"input": x})[0]
    np.testing.assert_array_equal(got, want)
    server.stop()
    assert not server.is_running
