"""Real models no one here wrote, shipped inside PyPI wheels, packaged and served (issue 14).

- silero-vad's ONNX voice-activity model: stateful (the RNN state goes in and comes out), a
  rank-0 ``sr`` input, ``If`` subgraphs reading ``sr``; built for NVIDIA's ONNX Runtime backend
  (served here through the shadow) and for the Python backend, then compared with ONNX Runtime
  in this process at batch sizes and sampling rates other than any example's.
- silero-vad's TorchScript file, whose ``forward(x, sr: int)`` Triton cannot call: a clear
  refusal that says what to do, and nothing written.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from packager.builder import build
from packager.client import Client
from packager.errors import SourceError
from packager.serve.server import LocalServer
from tests.conftest import StartServer
from tests.support.onnx_models import per_sample_scalar_onnx

pytestmark = pytest.mark.integration

MAX_ABS_ERROR = 1e-4  # fp32; what each comparison must stay within (recorded when it runs)


def wheel_file(dist: str, path: str) -> Path:
    found = Path(str(importlib.metadata.distribution(dist).locate_file(path)))
    assert found.is_file(), f"{path} missing from the {dist} wheel (scripts/setup.sh installs it)"
    return found


@pytest.fixture(scope="module")
def silero_onnx() -> Path:
    return wheel_file("silero-vad", "silero_vad/data/silero_vad.onnx")


@pytest.fixture(scope="module")
def server(
    start_server: StartServer, tmp_path_factory: pytest.TempPathFactory, silero_onnx: Path
) -> LocalServer:
    repo = tmp_path_factory.mktemp("real") / "repo"
    build(silero_onnx, name="vad", output=repo)
    build(silero_onnx, name="vad_py", output=repo, backend="python")
    build(per_sample_scalar_onnx(repo.parent / "p.onnx"), name="per_sample", output=repo)
    return start_server(repo)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", ["vad", "vad_py"])
def test_silero_vad_served_equals_onnx_runtime(
    server: LocalServer, silero_onnx: Path, model: str, protocol: str
) -> None:
    session = ort.InferenceSession(str(silero_onnx), providers=["CPUExecutionProvider"])
    url = server.http_url if protocol == "http" else f"grpc://{server.grpc_url}"
    rng = np.random.default_rng(7)
    worst = 0.0
    with Client(url) as client:
        for batch, sr, samples in ((1, 16000, 512), (4, 8000, 256), (3, 16000, 512)):
            x = rng.standard_normal((batch, samples)).astype(np.float32)
            state = rng.standard_normal((2, batch, 128)).astype(np.float32)
            ref = session.run(None, {"input": x, "state": state, "sr": np.array(sr, np.int64)})
            got = client.infer(model, {"input": x, "state": state, "sr": np.array([sr])})
            assert got["output"].shape == ref[0].shape and got["stateN"].shape == ref[1].shape
            worst = max(
                worst,
                float(np.abs(got["output"] - ref[0]).max()),
                float(np.abs(got["stateN"] - ref[1]).max()),
            )
    print(f"silero-vad {model} over {protocol}: max abs error {worst:.3g}")
    assert worst <= MAX_ABS_ERROR


def test_a_per_sample_scalar_is_served_with_reshape(server: LocalServer) -> None:
    with Client(server.http_url) as client:
        x = np.arange(5, dtype=np.float32).reshape(5, 1)  # dims [1] per sample on the wire
        np.testing.assert_array_equal(client.infer("per_sample", {"x": x})["y"], 3 * x)


def test_silero_torchscript_with_an_int_argument_is_refused_clearly(tmp_path: Path) -> None:
    jit = wheel_file("silero-vad", "silero_vad/data/silero_vad.jit")
    with pytest.raises(SourceError, match=r"argument 'sr' is int, not a tensor.*Wrap the model"):
        build(jit, name="vad_ts", output=tmp_path / "repo", input_specs=["x:FP32:512"])
    assert not (tmp_path / "repo").exists()
