"""``triton-packager infer`` and ``bench``: options, errors, and real calls to a served model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from packager.cli import main
from packager.serve.embedded import free_port
from packager.serve.server import LocalServer
from tests.support.client_models import mlp_reference, write_repository


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("command", ["infer", "bench"])
def test_help(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0 and "--url" in result.output and "--protocol" in result.output


def test_option_errors_before_any_call(tmp_path: Path) -> None:
    assert "give at least one --input" in run("infer", "m").output
    assert "no such file" in run("infer", "m", "--input-file", f"x={tmp_path / 'no.npy'}").output
    np.save(tmp_path / "a.npy", np.zeros(2))
    both = run("infer", "m", "--input-file", str(tmp_path / "a.npy"), "--json", "--output-dir", "d")
    assert both.exit_code == 2 and "exclude each other" in both.output
    two = run("infer", "m", "--input-file", str(tmp_path / "a.npy"), "--input-file", "b=x.npy")
    assert two.exit_code == 2 and "name each one" in two.output
    bad = run("bench", "m", "--concurrency", "1,x")
    assert bad.exit_code == 2 and "use integers" in bad.output
    assert run("bench", "m", "--concurrency", "0").exit_code == 2
    np.save(tmp_path / "o.npy", np.array([b"x"], dtype=object), allow_pickle=True)
    pickled = run("infer", "m", "--input-file", f"t={tmp_path / 'o.npy'}")
    assert pickled.exit_code == 2 and "numpy str array" in pickled.output
    np.savez(tmp_path / "d.npz", input=np.zeros((1, 16), np.float32))
    npz = run("infer", "m", "--input-file", f"input={tmp_path / 'd.npz'}")
    assert npz.exit_code == 2 and "is an .npz archive (arrays: input)" in npz.output


def test_unreachable_server_is_one_clear_error(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((1, 16), np.float32))
    url = f"127.0.0.1:{free_port()}"
    result = run("infer", "mlp", "--input-file", f"input={tmp_path / 'x.npy'}", "--url", url)
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "is tritonserver running" in result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalServer, Path]]:
    repo = write_repository(tmp_path_factory.mktemp("cli") / "repo", ("mlp", "echo"))
    with LocalServer(repo, startup_timeout_s=120) as server:
        yield server, repo


@pytest.mark.integration
def test_infer_json_output_dir_and_sample(served: tuple[Any, Path], tmp_path: Path) -> None:
    server, repo = served
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    expected = mlp_reference(repo, x)

    result = run("infer", "mlp", "--input-file", f"input={tmp_path / 'x.npy'}", "--url", server.http_url,
                 "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)["outputs"]["output"]
    assert doc["shape"] == [3, 4] and doc["dtype"] == "float32"
    np.testing.assert_allclose(np.array(doc["data"]).reshape(3, 4), expected, rtol=1e-6)

    out_dir = tmp_path / "out"
    result = run("infer", "mlp", "--input-file", str(tmp_path / "x.npy"), "--url",
                 f"grpc://{server.grpc_url}", "--output-dir", str(out_dir))  # fmt: skip
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(out_dir / "output.npy"), expected, rtol=1e-6)

    np.save(tmp_path / "x0.npy", x[0])
    result = run("infer", "mlp", "--input-file", str(tmp_path / "x0.npy"), "--url", server.http_url,
                 "--sample")  # fmt: skip
    assert result.exit_code == 0 and "output: float32 [4]" in result.output

    np.save(tmp_path / "t.npy", np.array([["ab", "cd"]]))
    result = run("infer", "echo", "--input-file", f"text={tmp_path / 't.npy'}", "--url",
                 server.http_url, "--select-output", "upper", "--json")  # fmt: skip
    assert json.loads(result.stdout)["outputs"] == {
        "upper": {"dtype": "object", "shape": [1, 2], "data": ["AB", "CD"]}
    }

    big = run("infer", "mlp", "--input-file", str(tmp_path / "x.npy"), "--url", server.http_url,
              "--input-file", "extra=x.npy")  # fmt: skip
    assert big.exit_code == 2


@pytest.mark.integration
def test_infer_reports_model_errors(served: tuple[Any, Path], tmp_path: Path) -> None:
    server, _ = served
    np.save(tmp_path / "x.npy", np.zeros((1, 16)))  # float64: not cast silently
    result = run(
        "infer", "mlp", "--input-file", f"input={tmp_path / 'x.npy'}", "--url", server.http_url
    )
    assert result.exit_code == 1 and "astype(np.float32)" in result.output
    result = run(
        "infer", "nope", "--input-file", f"a={tmp_path / 'x.npy'}", "--url", server.http_url
    )
    assert result.exit_code == 1 and "'nope' is not found" in result.output


@pytest.mark.integration
def test_bench_json_and_table(served: tuple[Any, Path]) -> None:
    server, _ = served
    result = run("bench", "mlp", "--url", server.http_url, "--concurrency", "1,2",
                 "--duration-s", "0.5", "--warmup-s", "0.1", "--batch-size", "4", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["model"] == "mlp" and doc["url"] == f"http://{server.http_url}"
    assert doc["concurrency"] == [1, 2] and doc["interrupted"] is False
    assert doc["batch_size"] == 4 and doc["sent"] == ["input FP32 [4, 16]"]
    levels = doc["levels"]
    assert [r["concurrency"] for r in levels] == [1, 2]
    for r in levels:
        assert r["requests"] > 0 and r["errors"] == 0 and r["batch_size"] == 4
        # Completions / the window measured: 0.5 s, or longer when none had finished by then.
        assert r["duration_s"] == 0.5 and r["window_s"] >= 0.5
        assert r["throughput"] == pytest.approx(r["requests"] * 4 / r["window_s"])
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p95_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert "concurrency 2: measure" in result.stderr  # progress, one line per phase off a TTY

    result = run("bench", "mlp", "--url", f"grpc://{server.grpc_url}", "--concurrency", "1",
                 "--duration-s", "0.3", "--warmup-s", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    header, row = result.stdout.strip().splitlines()[1:3]
    assert header.split() == ["concurrency", "infer/s", "p50", "ms", "p90", "ms", "p95", "ms",
                              "p99", "ms", "requests", "errors"]  # fmt: skip
    assert row.split()[0] == "1" and row.split()[-1] == "0"


@pytest.mark.integration
def test_bench_ctrl_c_keeps_the_finished_levels(served: tuple[Any, Path], tmp_path: Path) -> None:
    # A real SIGINT to a real process, sent once level 1 has finished (its "concurrency 2"
    # progress line is on stderr): the finished level is printed and plotted, exit 130.
    import os
    import signal
    import subprocess
    import sys

    server, _ = served
    plot = tmp_path / "bench.png"
    command = [sys.executable, "-m", "packager", "bench", "mlp", "--url", server.http_url,
               "--concurrency", "1,2", "--duration-s", "0.3", "--warmup-s", "600", "--json",
               "--plot", str(plot)]  # fmt: skip
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        # A test run in the background inherits an ignored SIGINT, and Python then installs no
        # Ctrl-C handler: give the child the default disposition, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("concurrency 1: warmup"):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, "".join(seen) + err
    doc = json.loads(out)
    assert doc["interrupted"] is True and doc["levels"] == [] and doc["concurrency"] == [1, 2]
    assert "interrupted: 0 of 2 concurrency level(s) finished" in err
    assert not plot.exists()  # nothing measured, nothing plotted


@pytest.mark.integration
def test_bench_interrupted_in_level_two_prints_level_one(
    served: tuple[Any, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Level 1 is measured for real; Ctrl-C is raised on the main thread while level 2 measures
    # (where the signal handler would raise it), so the workers of level 2 must be stopped.
    from packager.client import bench as bench_module

    real = bench_module._measure

    def measure(*args: Any) -> Any:
        *head, progress = args

        def interrupting(phase: str, *rest: Any) -> None:
            if args[4] == 2 and phase == "measure":
                raise KeyboardInterrupt
            if progress is not None:
                progress(phase, *rest)

        return real(*head, interrupting)

    monkeypatch.setattr(bench_module, "_measure", measure)
    server, _ = served
    plot = tmp_path / "bench.png"
    result = run("bench", "mlp", "--url", server.http_url, "--concurrency", "1,2",
                 "--duration-s", "0.3", "--warmup-s", "0", "--plot", str(plot))  # fmt: skip
    assert result.exit_code == 130, result.output
    rows = result.stdout.strip().splitlines()
    assert rows[-1].split()[0] == "1" and len(rows) == 3  # title, header, level 1
    assert "interrupted: 1 of 2 concurrency level(s) finished" in result.stderr
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert not [t for t in __import__("threading").enumerate() if t.name.startswith("load-")]
