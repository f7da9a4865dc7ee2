"""``triton-packager fit``: the table, --json, the exit status, clear errors, --help."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from packager.cli import main
from tests.support.deploy import write_model
from tests.support.onnx_models import affine_onnx


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    model = write_model(repo, "affine", 'platform: "onnxruntime_onnx"',
                        instance_groups="{ kind: KIND_GPU count: 2 }, { kind: KIND_CPU }")  # fmt: skip
    affine_onnx(model / "1" / "model.onnx")
    return repo


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["fit", *args])
    return result.exit_code, result.stdout, result.stderr


def test_table_and_verdicts(repo: Path) -> None:
    code, out, err = run(str(repo), "--gpu-memory", "16GiB", "--gpu-memory", "24g",
                         "--host-memory", "8g")  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["model", "device", "instances", "weights", "activations",
                                "per", "instance", "total"]  # fmt: skip
    assert lines[2].split()[:3] == ["affine", "GPU", "0"] and "@8" in lines[2]
    assert lines[3].split()[:3] == ["affine", "CPU", "1"]
    assert "16.0 GiB GPU" in out and "24.0 GiB GPU" in out and "8.00 GiB host" in out
    assert out.count("fits (") == 3
    assert "512 MiB per CUDA context" in err  # the GPU assumption is said, on stderr


def test_json_and_exit_status_2_when_it_does_not_fit(repo: Path) -> None:
    code, out, _ = run(str(repo), "--gpu-memory", "512m", "--json")
    assert code == 2
    data = json.loads(out)
    assert data["fits"] is False and data["gpus"] == 1
    gpu = data["devices"][0]
    assert gpu["device"] == "GPU 0" and gpu["verdicts"][0]["verdict"] == "does not fit"
    assert gpu["verdicts"][0]["free_bytes"] < 0
    (model,) = data["models"]
    assert model["weight_bytes"] == 60 and model["gpu_instances"] == {"0": 2}


def test_cpu_only_and_shape_option(repo: Path, tmp_path: Path) -> None:
    code, _, err = run(str(repo), "--gpu-count", "0")
    assert code == 1 and "KIND_GPU instances but --gpu-count gives no GPU" in err
    code, _, err = run(str(repo), "--shape", "x:4,4")
    assert code == 1 and "has 2 dims but input 'x'" in err
    code, _, err = run(str(repo), "--shape", "x")
    assert code == 2 and "expected NAME:DIMS such as input_ids:128" in err  # usage error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpu-memory", "16 GB"], "--gpu-memory '16 GB' is not a size like 512m, 2g or 16GiB"),
        (["--host-memory", "lots"], "--host-memory 'lots' is not a size"),
        (["--margin", "1.5"], "--margin 1.5 must be a fraction"),
    ],
)
def test_bad_options_are_clear_errors(repo: Path, args: list[str], message: str) -> None:
    code, _, err = run(str(repo), *args)
    assert code == 1 and message in err and "Traceback" not in err


def test_no_models(tmp_path: Path) -> None:
    code, _, err = run(str(tmp_path))
    assert code == 1 and "no models in" in err


def test_help() -> None:
    code, out, _ = run("--help")
    assert code == 0
    for option in ("--gpu-count", "--gpu-memory", "--host-memory", "--max-batch-size", "--shape",
                   "--margin", "--json", "Exit status"):  # fmt: skip
        assert option in out


def test_a_vllm_model_claims_its_share_of_each_gpu(tmp_path: Path) -> None:
    # Issue 32: fit ignored gpu_memory_utilization (vLLM takes 90 % of each of its GPUs).
    from packager.builder import build
    from tests.support.gen_models import make_causal_lm

    llm = make_causal_lm(tmp_path / "llm", "gpt2")
    repo = tmp_path / "repo"
    build(llm, name="chat", output=repo, backend="vllm", kind="gpu", gpus=[0, 1])
    code, out, err = run(str(repo), "--gpu-memory", "80GiB", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["gpus"] == 2  # the model's tensor_parallel_size, without --gpu-count
    gpus = [d for d in report["devices"] if d["device"].startswith("GPU")]
    assert [d["claimed_share"] for d in gpus] == [0.9, 0.9]
    # 90 % of 80 GiB plus the server's own CUDA context and pool: past the 10 % margin.
    assert {d["verdicts"][0]["verdict"] for d in gpus} == {"tight"}
    assert any("vLLM takes 90% of the memory of GPU 0,1" in n for n in report["notes"])

    build(llm, name="chat", output=repo, backend="vllm", kind="gpu", gpus=[0, 1], force=True,
          parameters={"vllm.gpu_memory_utilization": "0.995"})  # fmt: skip
    code, out, _ = run(str(repo), "--gpu-memory", "80GiB")
    assert code == 2 and "no (" in out and "+ 100%" in out  # 99.5 % shown rounded
    assert run(str(repo), "--gpu-count", "1")[0] == 1  # vLLM shards over 2 GPUs
