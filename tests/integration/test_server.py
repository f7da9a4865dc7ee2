"""LocalServer and ``serve`` on the real tritonserver: native repositories (by Triton's own
backends, or through the shadow when they are off), versions, explicit load/unload, the server's own reasons in our errors, clean shutdown."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import numpy_helper
from tritonclient.utils import InferenceServerException

from packager.builder import build
from packager.errors import ServerError
from packager.serve.server import LocalServer
from tests.support.servers import group_members, leftover_processes, native_ready
from tests.support.tree import snapshot

pytestmark = pytest.mark.integration

BROKEN_MODEL = """\
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("weights are corrupt: expected 42 tensors, found 7")

    def execute(self, requests):
        return []
"""
BROKEN_CONFIG = """\
name: "broken"
backend: "python"
max_batch_size: 0
input { name: "x" data_type: TYPE_FP32 dims: [ 1 ] }
output { name: "y" data_type: TYPE_FP32 dims: [ 1 ] }
"""


def doubled_weights(src: Path, dst: Path) -> Path:
    """Same graph, every weight times two: a distinguishable version 2."""
    model = onnx.load(str(src))
    for init in model.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 2, init.name))
    onnx.save(model, str(dst))
    return dst


def add_broken(repo: Path) -> None:
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "config.pbtxt").write_text(BROKEN_CONFIG)
    (repo / "broken" / "1" / "model.py").write_text(BROKEN_MODEL)


@pytest.fixture(scope="module")
def native_repo(tmp_path_factory: pytest.TempPathFactory, model_files: dict[str, Path]) -> dict:
    """A repository for NVIDIA's container: native ONNX Runtime and LibTorch models."""
    tmp = tmp_path_factory.mktemp("native")
    repo = tmp / "repo"
    mlp2 = doubled_weights(model_files["mlp"], tmp / "mlp2.onnx")
    # KIND_GPU on two GPUs: the shadow must run it on CPU with the same instance total.
    build(str(model_files["mlp"]), name="mlp", output=repo, kind="gpu", gpus=[0, 1])
    build(str(model_files["fixed"]), name="fixed", output=repo, max_batch_size=0)
    build(str(model_files["mlp"]), name="versioned", output=repo, version=1, version_policy="all")
    build(str(mlp2), name="versioned", output=repo, version=2, version_policy="all")
    build(
        str(model_files["torchscript"]),
        name="ts",
        output=repo,
        input_specs=["INPUT__0:FP32:16"],
    )
    build(str(model_files["mlp"]), name="py_mlp", output=repo, backend="python")  # passes through
    # A hand-written minimal config, as NVIDIA's ONNX Runtime backend accepts (it reads the graph).
    (repo / "bare" / "1").mkdir(parents=True)
    (repo / "bare" / "1" / "model.onnx").write_bytes(model_files["two_io"].read_bytes())
    (repo / "bare" / "config.pbtxt").write_text(
        'name: "bare"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
    )
    add_broken(repo)
    return {"repo": repo, "files": model_files, "mlp2": mlp2, "digest": snapshot(repo)}


@pytest.fixture(scope="module")
def server(start_server: Any, native_repo: dict) -> LocalServer:
    good = ["mlp", "fixed", "versioned", "ts", "py_mlp", "bare"]
    return start_server(native_repo["repo"], model_control_mode="explicit", load_models=good)


def ort_out(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def http_infer(server: LocalServer, model: str, name: str, x: np.ndarray, version: str = "") -> Any:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        t = httpclient.InferInput(name, list(x.shape), "FP32")
        t.set_data_from_numpy(x)
        result = client.infer(model, [t], model_version=version)
        return {o["name"]: result.as_numpy(o["name"]) for o in result.get_response()["outputs"]}
    finally:
        client.close()


def grpc_infer(server: LocalServer, model: str, name: str, x: np.ndarray) -> Any:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        t = grpcclient.InferInput(name, list(x.shape), "FP32")
        t.set_data_from_numpy(x)
        result = client.infer(model, [t])
        return {o.name: result.as_numpy(o.name) for o in result.get_response().outputs}
    finally:
        client.close()


X = np.random.default_rng(3).standard_normal((4, 16), dtype=np.float32)


def test_shadow_lines_name_each_native_model(server: LocalServer) -> None:
    if native_ready("onnx"):
        assert server.shadowed == []
        by_model = {line.split(":")[0]: line for line in server.native}
        assert sorted(by_model) == ["bare", "fixed", "mlp", "ts", "versioned"]
        # The ONNX Runtime of the 24.10 container, not the environment's own onnxruntime.
        want = (
            "Triton's onnxruntime backend (r24.10, ONNX Runtime 1.19.2 as in the 24.10 container)"
        )
        assert want in by_model["bare"]
        assert "Triton's pytorch backend (r24.10, torch " in by_model["ts"]
        assert "onnxruntime_onnx" in by_model["mlp"] and "KIND_GPU" in by_model["mlp"]
        assert "KIND_GPU" not in by_model["fixed"]
        return
    by_model = {line.split(":")[0]: line for line in server.shadowed}
    assert sorted(by_model) == ["bare", "fixed", "mlp", "ts", "versioned"]
    assert "inputs/outputs read from model.onnx" in by_model["bare"]
    assert "onnxruntime_onnx" in by_model["mlp"] and "KIND_GPU" in by_model["mlp"]
    assert "pytorch_libtorch" in by_model["ts"]
    assert "versions 1, 2" in by_model["versioned"]


def test_native_onnx_through_shadow_equals_in_process(
    server: LocalServer, native_repo: dict
) -> None:
    want = ort_out(native_repo["files"]["mlp"], X)
    for infer in (http_infer, grpc_infer):
        got = infer(server, "mlp", "input", X)
        assert got["output"].dtype == np.float32
        np.testing.assert_array_equal(got["output"], want)
    single = X[:1]
    got = http_infer(server, "fixed", "input", single)
    np.testing.assert_array_equal(got["output"], ort_out(native_repo["files"]["fixed"], single))


def test_bare_onnx_config_is_completed_from_the_graph(
    server: LocalServer, native_repo: dict
) -> None:
    x = np.ones((2, 8), np.float32)
    y = np.full((2, 3), 0.5, np.float32)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        tensors = []
        for name, value in (("x", x), ("y", y)):
            t = grpcclient.InferInput(name, list(value.shape), "FP32")
            t.set_data_from_numpy(value)
            tensors.append(t)
        result = client.infer("bare", tensors)
    finally:
        client.close()
    sess = ort.InferenceSession(str(native_repo["files"]["two_io"]))
    want_sum, want_total = sess.run(["sum", "total"], {"x": x, "y": y})
    np.testing.assert_array_equal(result.as_numpy("sum"), want_sum)
    np.testing.assert_array_equal(result.as_numpy("total"), want_total)


def test_native_torchscript_through_shadow_equals_in_process(
    server: LocalServer, native_repo: dict
) -> None:
    module = torch.jit.load(str(native_repo["files"]["torchscript"]))
    with torch.inference_mode():
        want = module(torch.from_numpy(X)).numpy()
    np.testing.assert_array_equal(http_infer(server, "ts", "INPUT__0", X)["OUTPUT__0"], want)
    np.testing.assert_array_equal(grpc_infer(server, "ts", "INPUT__0", X)["OUTPUT__0"], want)


def test_gpu_groups_keep_their_instance_total(server: LocalServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        config = client.get_model_config("mlp")
    finally:
        client.close()
    assert config["backend"] == ("onnxruntime" if native_ready("onnx") else "python")
    assert [(g["kind"], g["count"]) for g in config["instance_group"]] == [("KIND_CPU", 2)]


def test_python_model_passes_through(server: LocalServer, native_repo: dict) -> None:
    got = http_infer(server, "py_mlp", "input", X)
    np.testing.assert_array_equal(got["output"], ort_out(native_repo["files"]["mlp"], X))


def test_several_versions_of_one_model(server: LocalServer, native_repo: dict) -> None:
    states = {(m.name, m.version): m.state for m in server.models() if m.name == "versioned"}
    assert states == {("versioned", "1"): "READY", ("versioned", "2"): "READY"}
    v1 = http_infer(server, "versioned", "input", X, version="1")["output"]
    v2 = http_infer(server, "versioned", "input", X, version="2")["output"]
    latest = http_infer(server, "versioned", "input", X)["output"]
    np.testing.assert_array_equal(v1, ort_out(native_repo["files"]["mlp"], X))
    np.testing.assert_array_equal(v2, ort_out(native_repo["mlp2"], X))
    assert not np.array_equal(v1, v2)
    np.testing.assert_array_equal(latest, v2)


def test_explicit_unload_and_load(server: LocalServer) -> None:
    server.unload_model("fixed")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = {m.name: m.state for m in server.models()}
        if states["fixed"] == "UNAVAILABLE":
            break
        time.sleep(0.1)
    assert states["fixed"] == "UNAVAILABLE"
    with pytest.raises(InferenceServerException, match=r"unknown model|no available versions"):
        http_infer(server, "fixed", "input", X[:1])
    server.load_model("fixed")
    assert {m.name: m.state for m in server.models()}["fixed"] == "READY"
    assert http_infer(server, "fixed", "input", X[:1])["output"].shape == (1, 4)


def test_loading_a_broken_model_raises_the_servers_reason(server: LocalServer) -> None:
    with pytest.raises(ServerError, match="weights are corrupt: expected 42 tensors"):
        server.load_model("broken")
    reasons = {m.name: m.reason for m in server.models()}
    assert "weights are corrupt" in reasons["broken"]
    with pytest.raises(ServerError, match="nope"):
        server.load_model("nope")


def test_user_repository_is_untouched(server: LocalServer, native_repo: dict) -> None:
    assert server.is_running
    assert snapshot(native_repo["repo"]) == native_repo["digest"]


def test_start_fails_with_the_servers_reason(tmp_path: Path) -> None:
    add_broken(tmp_path)
    server = LocalServer(tmp_path, startup_timeout_s=120)
    with pytest.raises(ServerError) as info:
        server.start()
    text = str(info.value)
    assert "model 'broken' version 1 failed to load" in text
    assert "weights are corrupt: expected 42 tensors, found 7" in text
    assert not server.is_running
    assert "weights are corrupt" in server.log_text()  # the log outlives the server


def test_taken_port_is_reported(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServerError, match="already in use"):
            LocalServer(tmp_path, http_port=port, startup_timeout_s=120).start()


def test_missing_repository_is_an_error_before_starting(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match="is not a directory"):
        LocalServer(tmp_path / "nope").start()


@pytest.mark.parametrize(
    ("sig", "sigint_ignored"),
    # A shell starts background jobs with SIGINT ignored: `kill -INT` must still stop serve.
    [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)],
)
def test_serve_command_stops_cleanly(
    native_repo: dict, sig: signal.Signals, sigint_ignored: bool
) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    cmd = [
        sys.executable, "-m", "packager.cli", "serve", str(native_repo["repo"]),
        "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
        "--model-control-mode", "explicit", "--load-model", "py_mlp",
    ]  # fmt: skip
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=ignore
    )
    try:
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "press Ctrl-C" in line:
                break
        banner = "".join(lines)
        assert "tritonserver 2.51.0 is ready" in banner
        assert re.search(r"py_mlp +version 1 +READY", banner)
        mode = "native" if native_ready("onnx") else "shadow"
        assert f"{mode}: mlp: onnxruntime_onnx" in banner
        pid = int(banner.split("(pid ")[1].split(")")[0])
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in err
    deadline = time.monotonic() + 60  # a bound on hanging: stubs exit late on a busy machine
    while group_members(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group_members(pid) == []


def test_no_process_left_from_stopped_servers(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    server = LocalServer(tmp_path / "repo").start()
    pid = server.pid
    server.stop()
    server.stop()  # idempotent
    assert pid is not None and pid not in leftover_processes()
