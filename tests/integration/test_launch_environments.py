"""Correct answers however the tools are started (issue 13).

Users start the server the way services do: by full path without activating the environment
(systemd, cron, Docker entrypoints, IDE run configurations), under ``env -i``, with
``python -m packager`` from another folder. Each case here runs on the real embedded server with
a *second* Python environment holding numpy 2 first on PATH - the set-up in which Triton 2.51's
Python backend used to answer HTTP 200 with empty tensors - and every answer is compared with
in-process ONNX Runtime, bit for bit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from packager.builder import build
from packager.client import Client
from packager.errors import ServerError
from packager.serve import stub_env
from packager.serve.embedded import free_port
from packager.serve.server import LocalServer
from tests.support import classifier

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent  # .venv/bin: where the console script lives
CLI = VENV_BIN / "triton-packager"
SENTENCES = np.array([[b"a wonderful film, loved it"], [b"dull and far too long"]], dtype=object)


@pytest.fixture(scope="module")
def other_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another Python environment, with numpy 2, whose python3 comes first on PATH."""
    env = tmp_path_factory.mktemp("other-env")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = env / "lib" / minor / "site-packages"
    # Its packages are this environment's (numpy 2, from the dev extra): no download needed.
    (site / "numpy2.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    version = subprocess.run(
        [str(env / "bin" / "python3"), "-c", "import numpy; print(numpy.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert version.startswith("2."), f"the second environment must hold numpy 2, has {version}"
    return env


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed example (Python steps + ONNX model + ensemble) plus the classifier twice:
    for NVIDIA's ONNX Runtime backend (served through the shadow) and for the Python backend."""
    root = tmp_path_factory.mktemp("launch") / "repo"
    shutil.copytree(ROOT / "model_repository", root)
    model = classifier.trained().onnx
    build(model, name="clf", output=root, max_batch_size=64)
    build(model, name="clf_py", output=root, max_batch_size=64, backend="python")
    return root


@pytest.fixture(scope="module")
def expected(repo: Path) -> dict[str, np.ndarray]:
    """What every case must answer: ONNX Runtime in this process, and the ensemble served by
    a LocalServer started the ordinary way (activated environment)."""
    x = np.load(classifier.trained().test)["input"][:5]
    session = ort.InferenceSession(str(classifier.trained().onnx))
    logits = session.run(None, {"input": x})[0]
    with LocalServer(repo) as server, Client(server.http_url) as client:
        text = client.infer("text_classifier", {"TEXT": SENTENCES})
    assert all(v.size for v in text.values())
    return {"input": x, "logits": logits, **{f"text:{k}": v for k, v in text.items()}}


def check_answers(url: str, expected: dict[str, np.ndarray]) -> None:
    with Client(url) as client:
        client.wait_until_ready(timeout_s=120)
        for model in ("clf", "clf_py"):
            got = client.infer(model, {"input": expected["input"]})["logits"]
            assert got.shape == expected["logits"].shape, model
            np.testing.assert_array_equal(got, expected["logits"], err_msg=model)
        text = client.infer("text_classifier", {"TEXT": SENTENCES})
        for name, value in text.items():
            np.testing.assert_array_equal(value, expected[f"text:{name}"], err_msg=name)


def serve_args(repo: Path, http: int) -> list[str]:
    return [
        "serve", str(repo), "--http-port", str(http), "--grpc-port", "0", "--metrics-port", "0",
    ]  # fmt: skip


def run_serve(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.fixture
def stop_afterwards() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def no_activation(other_env: Path) -> dict[str, str]:
    """A service's environment: no VIRTUAL_ENV, another numpy-2 Python first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{other_env / 'bin'}:/usr/bin:/bin"
    return env


@pytest.mark.parametrize("how", ["full path", "env -i", "python -m packager"])
def test_serve_answers_correctly_however_it_is_started(
    how: str,
    other_env: Path,
    repo: Path,
    expected: dict[str, np.ndarray],
    tmp_path: Path,
    stop_afterwards: list[subprocess.Popen[str]],
) -> None:
    http = free_port()
    if how == "full path":
        command, env = [str(CLI), *serve_args(repo, http)], no_activation(other_env)
    elif how == "env -i":
        command, env = ["env", "-i", str(CLI), *serve_args(repo, http)], {}
        command[0] = shutil.which("env") or "/usr/bin/env"
    else:
        command = [sys.executable, "-m", "packager", *serve_args(repo, http)]
        env = no_activation(other_env)
    proc = run_serve(command, env, cwd=tmp_path)  # another working directory
    stop_afterwards.append(proc)
    try:
        check_answers(f"127.0.0.1:{http}", expected)
    except Exception:
        proc.send_signal(signal.SIGINT)
        print(proc.communicate(timeout=30)[0])
        raise


def test_local_server_api_answers_correctly_from_a_bare_environment(
    other_env: Path, repo: Path, expected: dict[str, np.ndarray], tmp_path: Path
) -> None:
    """LocalServer in a script run by the environment's interpreter, by full path, env -i."""
    np.save(tmp_path / "x.npy", expected["input"])
    script = (
        "import sys, numpy as np\n"
        "from packager import LocalServer\n"
        "from packager.client import Client\n"
        "with LocalServer(sys.argv[1]) as s, Client(s.http_url) as c:\n"
        "    np.save(sys.argv[2], c.infer('clf', {'input': np.load(sys.argv[3])})['logits'])\n"
    )
    out = tmp_path / "y.npy"
    subprocess.run(
        [sys.executable, "-c", script, str(repo), str(out), str(tmp_path / "x.npy")],
        env={"PATH": f"{other_env / 'bin'}:/usr/bin:/bin"}, cwd=tmp_path, check=True, timeout=300,
    )  # fmt: skip
    np.testing.assert_array_equal(np.load(out), expected["logits"])


def test_evaluate_and_tune_by_full_path_under_env_i(
    other_env: Path, repo: Path, tmp_path: Path, stop_afterwards: list[subprocess.Popen[str]]
) -> None:
    data = classifier.trained().test
    http = free_port()
    proc = run_serve(["/usr/bin/env", "-i", str(CLI), *serve_args(repo, http)], {}, cwd=tmp_path)
    stop_afterwards.append(proc)
    with Client(f"127.0.0.1:{http}") as client:
        client.wait_until_ready(timeout_s=120)
    done = subprocess.run(
        ["/usr/bin/env", "-i", str(CLI), "evaluate", "clf", "--data", str(data),
         "--url", f"127.0.0.1:{http}", "--reference", str(classifier.trained().onnx), "--json"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["samples"] == len(np.load(data)["labels"])
    assert report["metrics"] == report["reference_metrics"]  # served == ONNX Runtime in-process
    assert report["max_abs_diff"] == 0.0

    tune_repo = tmp_path / "tune-repo"
    shutil.copytree(repo / "clf", tune_repo / "clf")
    done = subprocess.run(
        ["/usr/bin/env", "-i", str(CLI), "tune", str(tune_repo / "clf"), "--instances", "1",
         "--max-batch-size", "64", "--queue-delay-us", "0", "--concurrency", "2",
         "--duration-s", "0.5", "--warmup-s", "0.2", "--budget-s", "120", "--json",
         "--output-dir", str(tmp_path / "tune-out")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    tuned = json.loads(done.stdout)
    points = [p for trial in tuned["trials"] for p in trial["points"]]
    assert points and all(p["requests"] > 0 and p["errors"] == 0 for p in points), tuned
    assert tuned["winner"] is not None


def test_a_server_python_with_numpy_2_fails_the_load_with_the_reason(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the numpy 1.x overlay the stubs get numpy 2: the load must fail, not answer empty."""
    if stub_env.numpy_major() < 2:
        pytest.fail("the suite runs with numpy 2 (dev extra); this environment has numpy 1")
    monkeypatch.setattr(stub_env, "numpy_overlay", lambda *a, **k: None)
    with pytest.raises(ServerError) as info:  # the Python runtime: the stubs' numpy matters
        LocalServer(repo, model_control_mode="explicit", load_models=["clf"], native=False).start()
    message = str(info.value)
    assert "model 'clf' version 1 failed to load" in message
    assert "needs numpy 1.x" in message and "empty outputs" in message
