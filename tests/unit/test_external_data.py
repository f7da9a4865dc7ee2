"""ONNX models whose weights live in external data files (issue 22), at small sizes.

Above 256 MiB (and so above protobuf's 2 GB limit) a model's data files go into the version
folder as they are; the limit is lowered here (as the exporter's own test does) so that a few-MB
model takes that path.
The > 2 GB model itself is tests/integration/test_large_models.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

import packager
from packager.deploy import footprint
from packager.deploy.fit import estimate
from packager.errors import PackagerError, SourceError
from packager.repository import read_record
from packager.sources.onnx_external import external_refs
from packager.sources.verify import onnx_runner
from tests.support.large_onnx import BIAS, TABLES, data_bytes, expected, write_large_onnx
from tests.support.onnx_models import affine_onnx
from tests.support.tree import snapshot

ROWS, DIM = 300, 16
IDS = np.array([[0, 7, 299], [1, 2, 3]], np.int64)


@pytest.fixture
def over_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every model counts as too large to inline."""
    monkeypatch.setattr("packager.sources.onnx_external.INLINE_LIMIT", 0)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_large_onnx(tmp_path / "src", ROWS, DIM)


def _repo_with_a_model(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    packager.build(affine_onnx(tmp_path / "affine.onnx"), name="affine", output=repo)
    return repo


def test_below_the_limit_the_weights_are_inlined(source: Path, tmp_path: Path) -> None:
    result = packager.build(source, name="big", output=tmp_path / "repo")
    vdir = tmp_path / "repo" / "big" / "1"
    assert sorted(p.name for p in vdir.iterdir()) == ["SHA256SUMS", "build.json", "model.onnx"]
    assert external_refs(onnx.load(str(vdir / "model.onnx"), load_external_data=False)) == []
    assert "external_data" not in result.record
    out = onnx_runner(vdir / "model.onnx")({"ids": IDS})
    np.testing.assert_array_equal(out["rows"], expected(IDS, DIM))


def test_above_the_limit_data_files_keep_their_names(
    over_limit: None, source: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    packager.build(source, name="big", output=repo)
    vdir = repo / "big" / "1"
    for rel in (TABLES, BIAS):  # byte for byte, under the location the graph records
        assert (vdir / rel).read_bytes() == (source.parent / rel).read_bytes()
    listed = {line.split("  ")[1] for line in (vdir / "SHA256SUMS").read_text().splitlines()}
    assert {TABLES, BIAS, "model.onnx", "build.json"} == listed
    assert read_record(vdir)["external_data"] == [
        {"file": BIAS, "bytes": DIM * 4},
        {"file": TABLES, "bytes": 2 * ROWS * DIM * 4},
    ]
    assert packager.validate(repo).ok
    out = onnx_runner(vdir / "model.onnx")({"ids": IDS})  # ONNX Runtime finds the data files
    np.testing.assert_array_equal(out["rows"], expected(IDS, DIM))


@pytest.mark.parametrize(
    ("damage", "problems"),
    [
        (
            lambda v: (v / BIAS).unlink(),
            ["bias.data: listed in SHA256SUMS but missing", "is missing"],
        ),
        (
            lambda v: (v / TABLES).write_bytes((v / TABLES).read_bytes()[:1000]),
            [
                "checksum mismatch",
                "truncated: it has 1000 bytes and tensor 'table_a' needs bytes 0..19200",
            ],
        ),
        (
            lambda v: (v / TABLES).write_bytes(b"\0" * (2 * ROWS * DIM * 4)),
            ["1/weights/tables.bin: checksum mismatch (file changed after build)"],
        ),
    ],
    ids=["missing", "truncated", "changed"],
)
def test_validate_names_missing_truncated_and_changed_data(
    over_limit: None, source: Path, tmp_path: Path, damage, problems: list[str]
) -> None:
    repo = tmp_path / "repo"
    packager.build(source, name="big", output=repo)
    damage(repo / "big" / "1")
    report = packager.validate(repo)
    found = " | ".join(report.models[0].problems)
    assert not report.ok
    for p in problems:
        assert p in found, found


def _relocate(path: Path, location: str) -> None:
    model = onnx.load(str(path), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location" and e.value == BIAS:
                e.value = location
    onnx.save(model, str(path))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda m: (m.parent / BIAS).unlink(), "external data file bias.data is missing"),
        (
            lambda m: (m.parent / TABLES).write_bytes(b"\0" * 100),
            "weights/tables.bin is truncated: it has 100 bytes and tensor 'table_a' needs bytes 0..19200 "
            "(1 more tensors do not fit either)",
        ),
        (lambda m: _relocate(m, "../bias.data"), "'../bias.data' leaves the model's folder"),
        (lambda m: _relocate(m, "SHA256SUMS"), "collides with a file the repository writes"),
    ],
    ids=["missing", "truncated", "outside", "reserved"],
)
def test_bad_data_files_are_refused_and_nothing_is_written(
    over_limit: None, source: Path, tmp_path: Path, damage, message: str
) -> None:
    repo = _repo_with_a_model(tmp_path)
    before = snapshot(repo)
    damage(source)
    with pytest.raises(SourceError, match="copy every data file the graph names") as err:
        packager.build(source, name="big", output=repo)
    assert message in str(err.value)
    assert snapshot(repo) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_compression_refuses_external_data_clearly(
    over_limit: None, source: Path, tmp_path: Path
) -> None:
    repo = _repo_with_a_model(tmp_path)
    before = snapshot(repo)
    with pytest.raises(PackagerError, match=r"external data \(bias.data, weights/tables.bin\)"):
        packager.build(source, name="big", output=repo, quantize="dynamic-int8")
    assert snapshot(repo) == before


def test_fit_and_the_kubernetes_request_count_the_data_files(
    over_limit: None, tmp_path: Path
) -> None:
    rows, dim = 50_000, 512  # 195 MiB of weights: the data files are the model
    src = write_large_onnx(tmp_path / "src", rows, dim)
    repo = tmp_path / "repo"
    packager.build(src, name="big", output=repo, max_batch_size=4)
    report = estimate(repo, gpus=0, shapes={"ids": (1,)})
    assert report.models[0].weight_bytes == data_bytes(rows, dim)
    [model] = footprint.scan(repo, 0)
    assert model.file_bytes > data_bytes(rows, dim)  # graph + data files + record
    # One CPU instance: 512 MiB for the server + 1.5 x the files, rounded up to 256 MiB.
    assert footprint.memory_bytes([model]) == 1024 * footprint.MiB
    shutil.rmtree(src.parent)
    assert json.loads((repo / "big" / "1" / "build.json").read_text())["external_data"]


def test_a_pytorch_export_over_the_limit_builds_its_data_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.support.torch_models import MLP

    monkeypatch.setattr("packager.sources.pytorch.exporters.ONNX_SINGLE_FILE_LIMIT", 0)
    repo = tmp_path / "repo"
    result = packager.build(MLP(), name="mlp", output=repo, input_specs=["x:FP32:16"])
    vdir = repo / "mlp" / "1"
    assert (vdir / "model.onnx.data").is_file()
    assert [f["file"] for f in result.record["external_data"]] == ["model.onnx.data"]
    assert result.record["verification"]["checks"]  # verified with the data file beside it
    assert packager.validate(repo).ok
