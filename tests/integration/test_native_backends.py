"""Triton's own ONNX Runtime and PyTorch backends (compiled from r24.10 by setup) on the embedded
server: every config option they read is exercised by the real backend, answers are bit-identical
to in-process ONNX Runtime / torch, and what a CPU build cannot run fails with the backend's or
Triton's own message.

These tests ask for the native backends explicitly (``native=True``), so they run the same in
both passes of scripts/test.sh; the fallback path is what the rest of the suite runs in its
``TRITON_PACKAGER_NATIVE=0`` pass.
"""

from __future__ import annotations

import concurrent.futures
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from packager.builder import build
from packager.client import Client
from packager.errors import ServerError
from packager.repository import read_config
from packager.serve import native
from packager.serve.server import LocalServer
from tests.support.polling import settled
from tests.support.tree import snapshot

pytestmark = pytest.mark.integration

X = np.random.default_rng(7).standard_normal((5, 16), dtype=np.float32)


def _require(fmt: str) -> None:
    backend = native.BACKENDS[fmt]
    missing = native.missing_tools(backend)
    if missing:  # a machine setup.sh could not equip; CI machines have them
        pytest.skip(f"cannot compile Triton's {backend.name} backend here: {'; '.join(missing)}")


@pytest.mark.parametrize("fmt", sorted(native.BACKENDS))
def test_setup_built_each_backend_where_it_can(fmt: str) -> None:
    _require(fmt)
    st = native.status(native.BACKENDS[fmt])
    assert st.ready, st.reason
    assert st.path is not None
    assert (st.path / st.backend.library).is_file()
    # It links the runtime (ONNX Runtime: the 24.10 container's, from the cache; torch: the
    # environment's), and the server's own libtritonserver.
    link = (st.path / "libtritonserver.so").resolve()
    assert link.name.startswith("libtritonserver") and link.parent.name == "nvidia_pytriton.libs"


def _write_config(repo: Path, model: str, edit: Any) -> None:
    """Hand-edit a built config (what a user does for options the builder does not write)."""
    from google.protobuf import text_format

    config = read_config(repo / model)
    edit(config)
    (repo / model / "config.pbtxt").write_text(text_format.MessageToString(config))
    (repo / model / "SHA256SUMS").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, model_files: dict[str, Path]) -> Path:
    root = tmp_path_factory.mktemp("native-options") / "repo"
    mlp = str(model_files["mlp"])
    build(mlp, name="batched", output=root, kind="cpu", instances=2, max_batch_size=16,
          preferred_batch_sizes=[4, 8], max_queue_delay_us=200_000)  # fmt: skip
    build(mlp, name="threads1", output=root, kind="cpu", parameters={"intra_op_thread_count": "1"})
    build(mlp, name="threads6", output=root, kind="cpu", parameters={"intra_op_thread_count": "6"})
    build(
        mlp, name="badparam", output=root, kind="cpu", parameters={"intra_op_thread_count": "many"}
    )
    build(mlp, name="warm", output=root, kind="cpu", warmup=2)
    build(mlp, name="trt", output=root, kind="gpu", gpus=[0], tensorrt=True)
    build(mlp, name="openvino", output=root, kind="cpu")
    _write_config(
        root,
        "openvino",
        lambda c: c.optimization.execution_accelerators.cpu_execution_accelerator.add(
            name="openvino"
        ),
    )
    build(str(model_files["torchscript"]), name="ts", output=root, input_specs=["INPUT__0:FP32:16"])
    return root


@pytest.fixture(scope="module")
def server(start_server: Any, repo: Path) -> LocalServer:
    _require("onnx")
    _require("torchscript")
    return start_server(
        repo,
        native=True,
        model_control_mode="explicit",
        load_models=["batched", "threads1", "warm", "trt", "ts"],
        log_verbose=1,
    )


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"input": x})[0])


def test_every_model_is_served_natively(server: LocalServer) -> None:
    assert server.shadowed == []
    names = sorted(line.split(":")[0] for line in server.native)
    assert names == sorted(
        ["badparam", "batched", "openvino", "threads1", "threads6", "trt", "warm", "ts"]
    )
    with Client(server.http_url) as client:
        assert client.config("batched").backend == "onnxruntime"
        assert client.config("ts").backend == "pytorch"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_answers_are_bit_identical(
    server: LocalServer, model_files: dict[str, Path], protocol: str
) -> None:
    url = server.http_url if protocol == "http" else server.grpc_url
    module = torch.jit.load(str(model_files["torchscript"]))
    with torch.inference_mode():
        want_ts = module(torch.from_numpy(X)).numpy()
    with Client(url, protocol=protocol) as client:
        for model in ("batched", "threads1", "warm", "trt"):
            got = client.infer(model, {"input": X})["output"]
            np.testing.assert_array_equal(got, _ort(model_files["mlp"], X))
        np.testing.assert_array_equal(client.infer("ts", {"INPUT__0": X})["OUTPUT__0"], want_ts)


def test_instance_groups_and_dynamic_batching(server: LocalServer) -> None:
    log = server.log_text()
    assert "TRITONBACKEND_ModelInstanceInitialize: batched_0_0 (CPU device 0)" in log
    assert "TRITONBACKEND_ModelInstanceInitialize: batched_0_1 (CPU device 0)" in log
    # 8 single-row requests at once, a 200 ms queue delay: the scheduler batches them.
    with Client(server.http_url) as client:
        before = client.statistics("batched").model_stats[0]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            outs = list(
                pool.map(
                    lambda i: client.infer("batched", {"input": X[i % 5 : i % 5 + 1]}), range(8)
                )
            )
        after = settled(
            lambda: client.statistics("batched").model_stats[0],
            lambda s: s.inference_count - before.inference_count >= 8,
        )
    assert all(o["output"].shape == (1, 4) for o in outs)
    assert after.inference_count - before.inference_count == 8
    executions = after.execution_count - before.execution_count
    assert 1 <= executions < 8, executions


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_ort_thread_parameters_reach_onnx_runtime(server: LocalServer) -> None:
    """intra_op_thread_count sizes ONNX Runtime's pool: 6 threads has 5 more workers than 1."""
    assert server.pid is not None
    base = _threads(server.pid)
    server.load_model("threads6")
    grown = _threads(server.pid) - base
    server.unload_model("threads6")
    # The same model with 1 thread, loaded the same way, as the baseline of what a load adds.
    server.unload_model("threads1")
    time.sleep(1.0)
    base = _threads(server.pid)
    server.load_model("threads1")
    grown_one = _threads(server.pid) - base
    assert grown - grown_one >= 4, (grown, grown_one)


def test_bad_parameter_gives_the_backends_message(server: LocalServer) -> None:
    with pytest.raises(ServerError, match="failed to convert 'many' to integral number"):
        server.load_model("badparam")


def test_cpu_accelerator_the_build_lacks_gives_the_backends_message(server: LocalServer) -> None:
    with pytest.raises(ServerError, match="unknown Execution Accelerator 'openvino' is requested"):
        server.load_model("openvino")


def test_gpu_groups_run_on_cpu_and_gpu_accelerators_are_not_applied(server: LocalServer) -> None:
    [line] = [ln for ln in server.native if ln.startswith("trt:")]
    assert "KIND_GPU instance groups run as KIND_CPU" in line
    with Client(server.http_url) as client:
        config = client.config("trt")
    assert [g.kind for g in config.instance_group] == [config.instance_group[0].KIND_CPU]
    # The TensorRT accelerator stays in the config; the CPU-only backend leaves it unused.
    assert (
        config.optimization.execution_accelerators.gpu_execution_accelerator[0].name == "tensorrt"
    )


def test_warmup_runs_in_the_backend(server: LocalServer) -> None:
    log = server.log_text()
    assert "model 'warm' instance warm_0_0 is running warmup sample 'random_batch_2'" in log
    assert "instance batched_0_0 is running warmup" not in log  # only where the config asks


def test_kind_gpu_served_in_place_gets_tritons_own_message(
    tmp_path: Path, model_files: dict[str, Path]
) -> None:
    _require("onnx")
    build(str(model_files["mlp"]), name="gpu", output=tmp_path / "repo", kind="gpu", gpus=[0])
    before = snapshot(tmp_path / "repo")
    with pytest.raises(ServerError) as info:
        LocalServer(tmp_path / "repo", native=True, shadow=False, startup_timeout_s=120).start()
    assert "model 'gpu' version 1 failed to load" in str(info.value)
    assert "specifies invalid or unsupported gpu id 0" in str(info.value)
    assert snapshot(tmp_path / "repo") == before


def test_native_off_serves_the_same_repository_through_the_python_runtime(
    start_server: Any, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    build(str(model_files["mlp"]), name="m", output=tmp_path / "repo", kind="cpu")
    server = start_server(tmp_path / "repo", native=False)
    assert server.native == [] and server.shadowed[0].startswith(
        "m: onnxruntime_onnx served through the Python runtime"
    )
    with Client(server.http_url) as client:
        assert client.config("m").backend == "python"
        np.testing.assert_array_equal(
            client.infer("m", {"input": X})["output"], _ort(model_files["mlp"], X)
        )
