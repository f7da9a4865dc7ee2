from pathlib import Path

import numpy as np
import pytest

from packager import sources
from packager.builder import build, inspect
from packager.errors import PackagerError, SourceError, SpecError
from packager.render import parse_config
from packager.sources.inputs import parse_tensor_arg
from packager.validation import validate
from tests.support.models import reference


def test_registry_lists_formats() -> None:
    assert {"onnx", "torchscript"} <= set(sources.names())


def test_detect_by_content_not_extension(model_files: dict[str, Path], tmp_path: Path) -> None:
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(model_files["mlp"].read_bytes())
    assert sources.detect(renamed).name == "onnx"
    ts = tmp_path / "weights.onnx"
    ts.write_bytes(model_files["torchscript"].read_bytes())
    assert sources.detect(ts).name == "torchscript"


def test_onnx_signature(model_files: dict[str, Path]) -> None:
    info = inspect(model_files["two_io"])
    d = info.to_dict()
    assert d["batch_axis"] is True
    assert [(t["name"], t["dtype"], t["dims"]) for t in d["inputs"]] == [
        ("x", "FP32", [-1, 8]),
        ("y", "FP32", [-1, 3]),
    ]
    assert [t["name"] for t in d["outputs"]] == ["sum", "total"]
    emb = inspect(model_files["int64"]).to_dict()
    assert emb["inputs"][0]["dtype"] == "INT64" and emb["inputs"][0]["dims"] == [-1, -1]
    assert inspect(model_files["fixed"]).batchable is False


def test_torchscript_outputs_found_by_running(model_files: dict[str, Path]) -> None:
    info = inspect(model_files["torchscript"], input_specs=["INPUT__0:FP32:16"])
    assert [(t.name, t.dims) for t in info.signature.outputs] == [("OUTPUT__0", (-1, 4))]


def test_torchscript_needs_declared_inputs(model_files: dict[str, Path]) -> None:
    with pytest.raises(SourceError, match="--input NAME:DTYPE:DIMS"):
        inspect(model_files["torchscript"])
    with pytest.raises(PackagerError, match="neither forward"):
        inspect(model_files["torchscript"], input_specs=["pixels:FP32:16"])
    with pytest.raises(SourceError, match="check --input dtypes and dims") as err:
        inspect(model_files["torchscript"], input_specs=["INPUT__0:FP32:7"])
    # The cause, not the interpreter's generic header, is what the user sees.
    assert "cannot be multiplied" in str(err.value)
    assert "following operation failed" not in str(err.value)


def test_torchscript_probe_binds_inputs_by_name_not_listed_order(tmp_path: Path) -> None:
    import torch

    class TwoArgs(torch.nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return x * 2.0 + y.sum(dim=1, keepdim=True)  # (B, 8) + (B, 1): broadcasts either way

    path = tmp_path / "two.pt"
    torch.jit.script(TwoArgs()).save(str(path))
    # Listed in the opposite order of forward(x, y): the runtimes bind by name, so must the probe.
    info = inspect(path, input_specs=["y:FP32:3", "x:FP32:8"])
    assert [(t.name, t.dims) for t in info.signature.outputs] == [("OUTPUT__0", (-1, 8))]


def test_torchscript_from_npz(model_files: dict[str, Path], tmp_path: Path) -> None:
    npz = tmp_path / "ex.npz"
    np.savez(npz, INPUT__0=np.zeros((2, 16), np.float32))
    info = inspect(model_files["torchscript"], example_inputs=npz)
    assert info.signature.inputs[0].dims == (-1, 16)


def test_external_data_is_inlined(external_onnx: Path, tmp_path: Path) -> None:
    assert (external_onnx.parent / "ext.onnx.data").exists()
    r = build(external_onnx, name="ext", output=tmp_path / "repo")
    assert r.written is not None
    art = r.written.model_dir / "1" / "model.onnx"
    assert sorted(p.name for p in art.parent.iterdir()) == [
        "SHA256SUMS",
        "build.json",
        "model.onnx",
    ]
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    np.testing.assert_allclose(
        reference(str(art), {"input": x})["output"],
        reference(str(external_onnx), {"input": x})["output"],
    )
    assert validate(tmp_path / "repo").ok


def test_missing_external_data_is_a_clear_error(external_onnx: Path, tmp_path: Path) -> None:
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(external_onnx.read_bytes())
    with pytest.raises(SourceError, match="external data file"):
        build(lone, name="ext", output=tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_build_strips_batch_dim_and_validates(model_files: dict[str, Path], tmp_path: Path) -> None:
    for name in ("mlp", "cnn", "two_io", "int64"):
        r = build(model_files[name], name=name, output=tmp_path / "repo", max_batch_size=16)
        c = parse_config(r.config)
        assert c.max_batch_size == 16
        assert [list(t.dims) for t in c.input] == [
            list(t.dims[1:]) for t in inspect(model_files[name]).signature.inputs
        ]
    ts = build(
        model_files["torchscript"],
        name="ts",
        output=tmp_path / "repo",
        input_specs=["INPUT__0:FP32:16"],
    )
    assert ts.spec.platform == "pytorch_libtorch"
    report = validate(tmp_path / "repo")
    assert report.ok, report.to_dict()
    assert [m.name for m in report.models] == ["cnn", "int64", "mlp", "ts", "two_io"]


def test_batching_a_model_without_batch_axis_is_refused(
    model_files: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(SpecError, match="dynamic first"):
        build(model_files["fixed"], name="f", output=tmp_path / "repo", max_batch_size=8)
    r = build(model_files["fixed"], name="f", output=tmp_path / "repo", dry_run=True)
    assert r.spec.max_batch_size == 0 and r.spec.dynamic_batching is None
    assert r.spec.inputs[0].dims == (1, 16)


def test_validate_finds_dims_that_contradict_the_model(
    model_files: dict[str, Path], tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    build(model_files["mlp"], name="mlp", output=repo)
    cfg = repo / "mlp" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace("dims: [ 16 ]", "dims: [ 17 ]"))
    report = validate(repo)
    assert not report.ok
    assert any("contradict model.onnx" in p for p in report.models[0].problems)


def test_parse_tensor_arg() -> None:
    t = parse_tensor_arg("x:fp32:3,224,224")
    assert (t.name, t.dtype.wire, t.dims) == ("x", "FP32", (3, 224, 224))
    assert parse_tensor_arg("t:FP32:").dims == ()  # a scalar per sample: dims [1] + reshape []
    for bad in ("x:FP32", "x:FP32:a", "x:FP32:0", "x:NOPE:3"):
        with pytest.raises(PackagerError):
            parse_tensor_arg(bad)
