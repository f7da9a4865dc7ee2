"""The shadow repository and the runtime model.py, checked on disk (no server runs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from packager.builder import build
from packager.errors import PackagerError
from packager.render import python_runtime_files as runtime_files
from packager.repository import read_config
from packager.serve.shadow import needs_shadow, shadow_repository
from tests.support.tree import snapshot

ENSEMBLE = """\
name: "pipeline"
platform: "ensemble"
max_batch_size: 8
input { name: "IN" data_type: TYPE_FP32 dims: [ 16 ] }
output { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] }
ensemble_scheduling {
  step {
    model_name: "mlp"
    model_version: -1
    input_map { key: "input" value: "IN" }
    output_map { key: "output" value: "OUT" }
  }
}
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, model_files: dict[str, Path]) -> Path:
    root = tmp_path_factory.mktemp("shadow") / "repo"
    build(str(model_files["mlp"]), name="mlp", output=root, kind="gpu", gpus=[0, 1], instances=2)
    build(str(model_files["mlp"]), name="mlp", output=root, kind="gpu", gpus=[0, 1], instances=2)
    build(
        str(model_files["torchscript"]),
        name="ts",
        output=root,
        input_specs=["INPUT__0:FP32:16"],
        max_batch_size=0,
    )
    build(str(model_files["mlp"]), name="py", output=root, backend="python")
    (root / "pipeline" / "1").mkdir(parents=True)
    (root / "pipeline" / "config.pbtxt").write_text(ENSEMBLE)
    (root / "README.txt").write_text("not a model")
    return root


@pytest.fixture(scope="module")
def shadowed(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], dict]:
    before = snapshot(repo)
    target = tmp_path_factory.mktemp("out") / "shadow"
    notes = shadow_repository(repo, target)
    return target, notes, before


def test_needs_shadow(repo: Path, tmp_path: Path, model_files: dict[str, Path]) -> None:
    assert needs_shadow(repo)
    build(str(model_files["mlp"]), name="py", output=tmp_path, backend="python")
    assert not needs_shadow(tmp_path)


def test_one_line_per_native_model(shadowed: tuple[Path, list[str], dict]) -> None:
    _, notes, _ = shadowed
    assert notes == [
        "mlp: onnxruntime_onnx served through the Python runtime "
        "(onnx, versions 1, 2; KIND_GPU instance groups run as KIND_CPU)",
        "ts: pytorch_libtorch served through the Python runtime (torchscript, versions 1)",
    ]


def test_native_config_keeps_everything_but_the_backend(
    repo: Path, shadowed: tuple[Path, list[str], dict]
) -> None:
    target, _, _ = shadowed
    src, dst = read_config(repo / "mlp"), read_config(target / "mlp")
    assert (dst.platform, dst.backend) == ("", "python")
    assert dst.parameters["artifact"].string_value == "model.onnx"
    assert dst.name == src.name and dst.max_batch_size == src.max_batch_size
    assert list(dst.input) == list(src.input) and list(dst.output) == list(src.output)
    assert dst.dynamic_batching == src.dynamic_batching
    assert dst.version_policy == src.version_policy
    # 2 instances on each of 2 GPUs -> 4 CPU instances, no GPU list left.
    assert [(g.kind, g.count, list(g.gpus)) for g in dst.instance_group] == [(2, 4, [])]
    ts = read_config(target / "ts")
    assert ts.max_batch_size == 0 and ts.parameters["artifact"].string_value == "model.pt"


def test_artifacts_are_linked_and_runtime_written(
    repo: Path, shadowed: tuple[Path, list[str], dict]
) -> None:
    target, _, _ = shadowed
    for version in ("1", "2"):
        vdir = target / "mlp" / version
        assert (vdir / "model.onnx").is_symlink()
        assert (vdir / "model.onnx").resolve() == (repo / "mlp" / version / "model.onnx").resolve()
        assert not (vdir / "model.py").is_symlink()
        assert (vdir / "model.py").read_text() == runtime_files("onnx")["model.py"]
    assert (target / "ts" / "1" / "model.py").read_text() == runtime_files("torchscript")[
        "model.py"
    ]
    assert (target / "mlp" / "1").is_dir() and not (target / "mlp" / "1").is_symlink()


def test_python_models_and_ensembles_pass_through(
    repo: Path, shadowed: tuple[Path, list[str], dict]
) -> None:
    target, _, _ = shadowed
    for model in ("py", "pipeline"):
        assert (target / model / "config.pbtxt").is_symlink()
        assert (target / model / "config.pbtxt").read_bytes() == (
            repo / model / "config.pbtxt"
        ).read_bytes()
    # Real folders with linked files: Python's __pycache__ lands in the shadow, not the repo.
    assert (target / "py" / "1").is_dir() and not (target / "py" / "1").is_symlink()
    assert os.readlink(target / "py" / "1" / "model.py") == str(repo / "py" / "1" / "model.py")
    assert (target / "README.txt").is_symlink()


def test_user_repository_is_byte_identical(
    repo: Path, shadowed: tuple[Path, list[str], dict]
) -> None:
    _, _, before = shadowed
    assert snapshot(repo) == before


def test_unparsable_config_is_left_to_triton(tmp_path: Path) -> None:
    (tmp_path / "repo" / "odd" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "odd" / "config.pbtxt").write_text("name: 'odd' nonsense_field: 3\n")
    assert not needs_shadow(tmp_path / "repo")
    assert shadow_repository(tmp_path / "repo", tmp_path / "out") == []
    assert (tmp_path / "out" / "odd" / "config.pbtxt").is_symlink()


def test_default_model_filename_becomes_the_artifact(tmp_path: Path) -> None:
    (tmp_path / "repo" / "m" / "3").mkdir(parents=True)
    (tmp_path / "repo" / "m" / "3" / "weights.onnx").write_bytes(b"x")
    (tmp_path / "repo" / "m" / "config.pbtxt").write_text(
        'name: "m"\nplatform: "onnxruntime_onnx"\ndefault_model_filename: "weights.onnx"\n'
    )
    notes = shadow_repository(tmp_path / "repo", tmp_path / "out")
    assert notes == ["m: onnxruntime_onnx served through the Python runtime (onnx, versions 3)"]
    config = read_config(tmp_path / "out" / "m")
    assert config.parameters["artifact"].string_value == "weights.onnx"
    assert config.default_model_filename == ""


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_runtime_model_py_is_valid_python(fmt: str) -> None:
    files = runtime_files(fmt)
    assert list(files) == ["model.py"]
    text = files["model.py"]
    compile(text, "model.py", "exec")
    assert f'FORMAT = "{fmt}"' in text
    assert "{{" not in text and "{%" not in text


def test_runtime_files_rejects_unknown_formats() -> None:
    with pytest.raises(PackagerError, match="onnx, torchscript"):
        runtime_files("tensorrt")


def test_missing_onnx_inputs_outputs_are_read_from_the_graph(
    tmp_path: Path, model_files: dict[str, Path]
) -> None:
    """NVIDIA's ONNX Runtime backend completes a bare config; the shadow must do the same."""
    (tmp_path / "repo" / "bare" / "1").mkdir(parents=True)
    os.link(model_files["two_io"], tmp_path / "repo" / "bare" / "1" / "model.onnx")
    (tmp_path / "repo" / "bare" / "config.pbtxt").write_text(
        'name: "bare"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
    )
    [note] = shadow_repository(tmp_path / "repo", tmp_path / "out")
    assert "inputs/outputs read from model.onnx" in note
    config = read_config(tmp_path / "out" / "bare")
    assert [(t.name, list(t.dims)) for t in config.input] == [("x", [8]), ("y", [3])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("sum", [4]), ("total", [1])]
    assert {t.data_type for t in config.input} == {11}  # TYPE_FP32


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_runtime_model_py_has_no_undefined_names(fmt: str, tmp_path: Path) -> None:
    """Pyflakes over the generated file: catches typos in branches no test here runs (GPU)."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    path = tmp_path / "model.py"
    path.write_text(runtime_files(fmt)["model.py"])
    result = subprocess.run(
        [
            ruff,
            "check",
            "--isolated",
            "--no-cache",
            "--select",
            "F,E9,B",
            "--ignore",
            "B905",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def test_a_model_with_implicit_state_is_not_shadowed_but_explained(
    tmp_path: Path, model_files: dict[str, Path]
) -> None:
    from packager.errors import ServerError

    repo = tmp_path / "repo"
    build(model_files["mlp"], name="m", output=repo)
    config = read_config(repo / "m")
    config.ClearField("dynamic_batching")
    state = config.sequence_batching.state.add()
    state.input_name, state.output_name = "h", "h_out"
    (repo / "m" / "config.pbtxt").write_text(str(config))
    with pytest.raises(ServerError, match=r"keeps implicit state.*TRITON_PACKAGER_NATIVE=0"):
        shadow_repository(repo, tmp_path / "served")
