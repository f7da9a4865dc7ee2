"""Versions share one config: a build whose signature differs is refused (the repository stays
byte-identical) or, with --force, replaces every version; validate and versions report a version
whose artifact contradicts the config."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from click.testing import CliRunner

from packager.cli import main
from packager.repository import versions
from tests.support.onnx_models import affine_onnx, opset_onnx
from tests.support.tree import snapshot


def run(*args: object) -> tuple[int, str]:
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.output


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    code, out = run("build", affine_onnx(tmp_path / "mlp.onnx"), "--name", "mlp", "-o", repo)
    assert code == 0, out
    return repo


def test_another_signature_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    other = opset_onnx(tmp_path / "other.onnx", 17)  # the same tensors, built without batching
    before = snapshot(repo)
    code, out = run("build", other, "--name", "mlp", "-o", repo, "--max-batch-size", 0)
    assert code == 1
    assert "max_batch_size 32 -> 0" in out
    assert "new --name" in out and "--force" in out and "Nothing was written" in out
    assert snapshot(repo) == before
    # The same signature adds a version as before.
    code, out = run("build", affine_onnx(tmp_path / "again.onnx"), "--name", "mlp", "-o", repo)
    assert code == 0, out
    assert versions(repo / "mlp") == [1, 2]


def test_force_replaces_every_version(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    run("build", affine_onnx(tmp_path / "again.onnx"), "--name", "mlp", "-o", repo)
    other = opset_onnx(tmp_path / "other.onnx", 17)
    code, out = run("build", other, "--name", "mlp", "-o", repo, "--max-batch-size", 0, "--force")
    assert code == 0, out
    assert versions(repo / "mlp") == [3]
    code, out = run("validate", repo)
    assert code == 0, out


def test_validate_and_versions_report_a_version_that_contradicts_the_config(
    tmp_path: Path,
) -> None:
    repo = _repo(tmp_path)
    code, out = run("versions", repo, "mlp", "--policy", "latest:2")
    assert code == 0, out
    # A version placed by hand whose graph has another input name than the config.
    (repo / "mlp" / "2").mkdir()
    wrong = opset_onnx(tmp_path / "wrong.onnx", 17)
    model = repo / "mlp" / "2" / "model.onnx"
    proto = onnx.load(str(wrong))
    proto.graph.input[0].name = "pixels"
    proto.graph.node[0].input[0] = "pixels"
    onnx.save(proto, str(model))
    code, out = run("validate", repo, "--no-checksums")
    assert code == 1
    assert "2: config input 'x' is not in model.onnx (pixels)" in out
    code, out = run("versions", repo, "mlp", "--json")
    report = json.loads(out)
    v2 = next(v for v in report["versions"] if v["version"] == 2)
    assert v2["selected"] is True and v2["served"] is False
    assert any("'x' is not in model.onnx" in p for p in v2["load_problems"])
    assert report["served"] == [1]
    code, out = run("versions", repo, "mlp")
    assert code == 1
    assert "version 2: not served (would not load)" in out
