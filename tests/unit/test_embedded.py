"""The wheel's tritonserver: backend folder, environment, and reading its log (no server runs)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from packager.errors import ServerError
from packager.serve import embedded, stub_env
from packager.serve.server import LocalServer

# Lines as tritonserver 2.51.0 writes them (copied from real logs of this project's tests).
LOG = r"""
W1127 16:32:27.011276 2907 pinned_memory_manager.cc:273] "Unable to allocate pinned system memory, pinned memory pool will not be available: CUDA driver version is insufficient for CUDA runtime version"
E1127 16:32:27.011451 2907 server.cc:241] "CudaDriverHelper has not been initialized."
I1127 16:32:27.012846 2907 model_lifecycle.cc:472] "loading: add:1"
E1127 16:32:27.053018 2907 model_lifecycle.cc:642] "failed to load 'add' version 1: Internal: ModuleNotFoundError: No module named 'numpy'\n\nAt:\n  /tmp/exp/repo/add/1/model.py(1): <module>\n"
I1127 16:32:27.053054 2907 model_lifecycle.cc:777] "failed to load 'add'"
| add   | 1       | UNAVAILABLE: Internal: ModuleNotFoundError: No module named 'numpy' |
error: creating server: Internal - failed to load all models
"""
PORT_LOG = r"""
I1127 16:34:36.337616 6209 http_server.cc:4713] "Started HTTPService at 127.0.0.1:18000"
E1127 16:34:36.379064 6209 main.cc:257] "failed to start HTTP service: Unavailable - Socket '127.0.0.1:18000' already in use "
"""


def test_load_failures_are_parsed_and_unescaped() -> None:
    [(name, version, reason)] = embedded.load_failures(LOG)
    assert (name, version) == ("add", "1")
    assert reason.startswith("Internal: ModuleNotFoundError: No module named 'numpy'\n\nAt:\n")
    assert "/tmp/exp/repo/add/1/model.py(1)" in reason


def test_describe_failure_prefers_model_reasons_then_errors() -> None:
    assert embedded.describe_failure(LOG).startswith("model 'add' version 1 failed to load: ")
    text = embedded.describe_failure(PORT_LOG)
    assert "already in use" in text
    assert "CudaDriverHelper" not in embedded.describe_failure(
        LOG.replace("failed to load 'add'", "x")
    )
    assert embedded.describe_failure("") == "(the server wrote nothing)"


def test_error_lines_keep_error_prefixed_lines() -> None:
    lines = embedded.error_lines(LOG)
    assert lines[-1] == "error: creating server: Internal - failed to load all models"
    assert not any("CudaDriverHelper" in line for line in lines)


def test_free_port_can_be_bound() -> None:
    port = embedded.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_binary_is_found() -> None:
    binary = embedded.tritonserver_binary()
    assert binary.name == "tritonserver" and os.access(binary, os.X_OK)


def test_prepare_backends_links_the_wheel_and_is_reused(tmp_path: Path) -> None:
    first = embedded.prepare_backends(tmp_path)
    py = first / "python"
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = (py / "triton_python_backend_stub").resolve()
    assert stub.parts[-2:] == (minor, "triton_python_backend_stub")
    assert (py / "libtriton_python.so").resolve().is_file()
    utils = (py / "triton_python_backend_utils.py").read_text()
    assert "def serialize_byte_tensor" in utils  # NVIDIA's module, unchanged
    env = first / embedded.ENV_DIR
    assert (env / "bin" / "python3").resolve() == stub_env.base_executable()
    assert "include-system-site-packages = false" in (env / "pyvenv.cfg").read_text()
    stamp = (env / "pyvenv.cfg").stat().st_mtime_ns
    assert embedded.prepare_backends(tmp_path) == first
    assert (env / "pyvenv.cfg").stat().st_mtime_ns == stamp
    # Beside the backend folder only the numpy 1.x overlay (when this process has numpy 2).
    others = sorted(p.name for p in tmp_path.iterdir() if p != first)
    expected = [f"stub-numpy-1.26.4-py{minor}"] if stub_env.numpy_major() >= 2 else []
    assert others == expected  # no staging folder left


def test_prepare_backends_repairs_a_broken_folder(tmp_path: Path) -> None:
    first = embedded.prepare_backends(tmp_path)
    (first / "python" / "triton_python_backend_stub").unlink()
    (first / embedded.ENV_DIR / "pyvenv.cfg").unlink()
    assert embedded.prepare_backends(tmp_path) == first
    assert (first / "python" / "triton_python_backend_stub").resolve().is_file()
    assert (first / embedded.ENV_DIR / "pyvenv.cfg").is_file()


def test_server_environment_points_the_stub_at_our_packages(tmp_path: Path) -> None:
    backends = embedded.prepare_backends()
    env = embedded.server_environment(backends, {"LD_LIBRARY_PATH": "/opt/x"})
    paths = env[stub_env.SYS_PATH_ENV].split(os.pathsep)
    numpy_home = str(Path(np.__file__).resolve().parent.parent)
    assert any(Path(p).resolve() == Path(numpy_home) for p in paths)
    if stub_env.numpy_major() >= 2:  # the numpy 1.x overlay comes before this environment
        assert Path(paths[0]).name.startswith("stub-numpy-1.")
    assert not any(p.endswith("lib-dynload") for p in paths)
    libs = env["LD_LIBRARY_PATH"].split(os.pathsep)
    assert any(p.endswith("nvidia_pytriton.libs") for p in libs)
    assert libs[-1] == "/opt/x"
    # No PATH at all (env -i): ours first, then the system default.
    assert env["PATH"].split(os.pathsep)[0] == str(backends / embedded.ENV_DIR / "bin")
    assert env["PATH"].endswith(os.defpath)


def test_stub_environment_starts_as_ours_whatever_path_says(tmp_path: Path) -> None:
    """An isolated interpreter found through PATH (as the stub's is) gets our environment."""
    backends = embedded.prepare_backends()
    env = embedded.server_environment(backends, {"PATH": "/usr/bin:/bin"})
    code = "import sys, numpy; print(sys.prefix); print(numpy.__version__); print(sys.dont_write_bytecode)"
    out = subprocess.run(
        ["python3", "-I", "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == str(backends / embedded.ENV_DIR)
    assert out[1].startswith("1.")  # Triton 2.51's stub needs numpy 1.x
    assert out[2] == "True"


def test_local_server_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match="model control mode 'lazy'"):
        LocalServer(tmp_path, model_control_mode="lazy")
    with pytest.raises(ServerError, match="explicit"):
        LocalServer(tmp_path, load_models=["a"])
    server = LocalServer(tmp_path, http_port=9000, grpc_port=9001, metrics_port=9002)
    assert (server.http_url, server.grpc_url, server.metrics_url) == (
        "127.0.0.1:9000",
        "127.0.0.1:9001",
        "127.0.0.1:9002",
    )
    assert not server.is_running and server.pid is None
    server.stop()  # stopping a server that never started is fine
    with pytest.raises(ServerError, match="not running"):
        server.models()
    exposed = LocalServer(tmp_path, host="0.0.0.0", http_port=9000)
    assert exposed.http_url == "127.0.0.1:9000"  # reached over loopback from here


def test_local_server_refuses_a_chosen_port_that_is_taken(tmp_path: Path) -> None:
    # Without the check, the readiness probe reached the other server and said "ready".
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        server = LocalServer(tmp_path, http_port=port, grpc_port=0, metrics_port=0)
        with pytest.raises(ServerError, match=f"http port {port} already in use.*--http-port"):
            server.start()
    assert server.pid is None


def test_a_vllm_model_gets_a_hint_about_where_it_runs() -> None:
    from packager.serve.embedded import describe_failure

    log = (
        "E1204 21:04:04.449944 4069 model_lifecycle.cc:642] \"failed to load 'llm' version 1: "
        "Invalid argument: unable to find backend library for backend 'vllm', try specifying "
        'runtime on the model configuration."'
    )
    text = describe_failure(log)
    assert text.startswith("model 'llm' version 1 failed to load: Invalid argument: unable to find")
    assert "NVIDIA's vLLM image on GPU hosts" in text and "--task text-generation" in text
