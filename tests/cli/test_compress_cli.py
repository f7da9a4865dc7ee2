"""`build --quantize/--fp16/--prune` through click's CliRunner: the figures, the record, the refusals."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from packager.cli import main
from packager.render import parse_config
from tests.support import classifier
from tests.support.tree import snapshot


def run(*args: object) -> tuple[int, str]:
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def clf() -> classifier.Classifier:
    return classifier.trained()


@pytest.fixture(scope="module")
def base_repo(clf: classifier.Classifier, tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("compress") / "repo"
    code, out = run("build", clf.onnx, "--name", "clf", "-o", repo)
    assert code == 0, out
    return repo


@pytest.fixture()
def repo(base_repo: Path, tmp_path: Path) -> Path:
    """A private copy of a repository that already holds the fp32 model as clf/1."""
    dst = tmp_path / "repo"
    shutil.copytree(base_repo, dst)
    return dst


def _row(out: str, label: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(label))


def test_dynamic_int8_prints_the_table_with_sizes_and_accuracy(clf, repo):
    code, out = run(
        "build", clf.onnx, "--name", "clf_int8", "-o", repo,
        "--quantize", "dynamic-int8", "--eval-data", clf.test,
    )  # fmt: skip
    assert code == 0, out
    assert "built clf_int8 version 1" in out
    header = _row(out, "stage")
    assert "file size" in header and "param bytes" in header and "accuracy" in header
    row = _row(out, "dynamic int8")
    ratio = float(re.search(r"(\d+\.\d+)x smaller\s+\d", row).group(1))  # param bytes ratio
    assert ratio >= 3.0
    original, int8 = (float(_row(out, s).split()[-1]) for s in ("original", "dynamic int8"))
    assert original == pytest.approx(clf.accuracy, abs=0.002)
    assert abs(int8 - original) <= 0.02
    record = json.loads((repo / "clf_int8/1/build.json").read_text())["compression"]
    assert record["steps"] == ["quantize dynamic-int8"]
    assert record["param_ratio"] == pytest.approx(ratio, abs=0.01)
    assert [s["label"] for s in record["stages"]] == ["original", "dynamic int8"]
    # What was written is the quantized file, and the repository validates.
    written = (repo / "clf_int8/1/model.onnx").stat().st_size
    assert written == record["stages"][1]["file_bytes"] < clf.onnx.stat().st_size / 3
    code, out = run("validate", repo)
    assert code == 0, out


def test_static_int8_per_channel_json(clf, repo):
    code, out = run(
        "build", clf.onnx, "--name", "clf_s8", "-o", repo, "--quantize", "static-int8",
        "--calibration-data", clf.calibration, "--per-channel", "--json",
    )  # fmt: skip
    assert code == 0, out
    data = json.loads(out)
    comp = data["record"]["compression"]
    assert comp["steps"] == ["quantize static-int8 per-channel"]
    assert comp["param_ratio"] >= 3.0
    assert comp["metric"] is None  # no --eval-data


def test_fp16_keeps_the_config_and_fp16_io_changes_it(clf, repo):
    code, out = run("build", clf.onnx, "--name", "clf_h", "-o", repo, "--fp16")
    assert code == 0, out
    assert "2.00x smaller" in _row(out, "fp16")
    cfg = parse_config((repo / "clf_h/config.pbtxt").read_text())
    assert [t.data_type for t in (*cfg.input, *cfg.output)] == [11, 11]  # TYPE_FP32
    code, out = run("build", clf.onnx, "--name", "clf_hio", "-o", repo, "--fp16", "--fp16-io")
    assert code == 0, out
    cfg = parse_config((repo / "clf_hio/config.pbtxt").read_text())
    assert [t.data_type for t in (*cfg.input, *cfg.output)] == [10, 10]  # TYPE_FP16


def test_a_compressed_model_as_a_new_version_leaves_the_original_alone(repo):
    before = snapshot(repo / "clf" / "1")
    config = (repo / "clf/config.pbtxt").read_text()
    src = repo / "clf/1/model.onnx"
    code, out = run("build", src, "--name", "clf", "-o", repo, "--quantize", "dynamic-int8")
    assert code == 0, out
    assert "built clf version 2" in out
    assert snapshot(repo / "clf" / "1") == before
    assert (repo / "clf/config.pbtxt").read_text() == config
    # Writing over an existing version still needs --force.
    code, out = run(
        "build", src, "--name", "clf", "-o", repo, "--quantize", "dynamic-int8", "--version", "1"
    )
    assert code == 1 and "--force" in out
    assert snapshot(repo / "clf" / "1") == before


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((8, 64), np.float32)}, "missing: input; unknown: x"),
        ({"input": np.zeros((8, 32), np.float32)}, "shape [8, 32]"),
        ({"input": np.zeros((8, 64), np.float64)}, "is float64 but the model takes FP32"),
        ({"input": np.zeros((8, 64), np.int64)}, "is int64 but the model takes FP32"),
    ],
    ids=["wrong-name", "wrong-shape", "wrong-dtype", "int-for-float"],
)
def test_bad_calibration_data_is_refused_and_nothing_is_written(
    clf, repo, tmp_path, arrays, message
):
    before = snapshot(repo)
    calib = _npz(tmp_path / "calib.npz", **arrays)
    for name in ("clf", "clf_new"):  # as a new version and as a new model
        code, out = run(
            "build", clf.onnx, "--name", name, "-o", repo,
            "--quantize", "static-int8", "--calibration-data", calib,
        )  # fmt: skip
        assert code == 1, out
        assert out.startswith("error: calibration data") and message in out, out
        assert snapshot(repo) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--quantize", "static-int8"], "needs --calibration-data"),
        (["--quantize", "dynamic-int8", "--calibration-data", "{calib}"], "only with"),
        (["--quantize", "dynamic-int8", "--fp16"], "not both"),
        (["--prune", "0.5"], "--prune does not apply to an ONNX file (it applies to a PyTorch"),
        (["--prune", "1.5"], "between 0 and 1"),
        (["--prune-structured"], "needs --prune"),
        (["--eval-data", "{test}"], "measures a compression"),
        (["--quantize", "dynamic-int8", "--eval-data", "{calib}"], "no 'labels' array"),
        (["--fp16", "--calibration-data", "{missing}"], "only with"),
        (["--quantize", "static-int8", "--calibration-data", "{missing}"], "does not exist"),
    ],
)
def test_option_errors_write_nothing(clf, repo, tmp_path, args, message):
    before = snapshot(repo)
    paths = {"calib": clf.calibration, "test": clf.test, "missing": tmp_path / "no.npz"}
    args = [a.format(**{k: str(v) for k, v in paths.items()}) for a in args]
    code, out = run("build", clf.onnx, "--name", "clf_x", "-o", repo, *args)
    assert code == 1, out
    assert message in out
    assert snapshot(repo) == before


def test_quantize_refuses_a_torchscript_artifact(tmp_path):
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices
        torch.jit.trace(torch.nn.Linear(4, 2), torch.zeros(2, 4)).save(str(tmp_path / "m.pt"))
    code, out = run(
        "build", tmp_path / "m.pt", "--name", "ts", "-o", tmp_path / "r",
        "--input", "input:FP32:4", "--quantize", "dynamic-int8",
    )  # fmt: skip
    assert code == 1 and "--quantize does not apply to a TorchScript file" in out, out
    assert not (tmp_path / "r").exists()


@pytest.mark.slow  # one PyTorch export (torch's dynamo exporter): 10-30 s on 2 cores
def test_prune_then_quantize_a_pytorch_module(clf, repo):
    """The issue's example: build module:factory --weights --example-input --prune 0.5."""
    code, out = run(
        "build", classifier.REFERENCE, "--weights", clf.weights, "--example-input", clf.example,
        "--name", "clf_pruned", "-o", repo, "--prune", "0.5", "--quantize", "dynamic-int8",
        "--eval-data", clf.test,
    )  # fmt: skip
    assert code == 0, out
    original = _row(out, "original")
    pruned = _row(out, "pruned 50% (unstructured)")
    int8 = _row(out, "dynamic int8")
    assert original.split()[1] == "-"  # the module before export has no file
    assert "(100.0%)" in original and re.search(r"\((49|50|51)\.\d%\)", pruned)
    accs = [float(r.split()[-1]) for r in (original, pruned, int8)]
    assert accs[0] == pytest.approx(clf.accuracy, abs=1e-6)
    assert abs(accs[2] - accs[0]) <= 0.03  # half the weights gone and int8, on an easy task
    record = json.loads((repo / "clf_pruned/1/build.json").read_text())
    comp = record["compression"]
    assert comp["steps"][0].startswith("prune 0.5 l1 unstructured")
    assert comp["details"]["prune"]["layers"] == {"0": 0.5, "2": 0.5, "4": 0.5}
    assert comp["param_ratio"] >= 3.0
    assert "prune" not in record  # folded into "compression"
    assert record["verification"]["passed"] is True  # export verified against the pruned module


def test_evaluate_missing_data_is_refused_before_waiting_for_a_server(tmp_path):
    # No server listens on port 9; without the early check this waited the whole --timeout.
    code, out = run(
        "evaluate", "m", "--data", tmp_path / "no.npz", "--url", "127.0.0.1:9", "--timeout", "30"
    )
    assert code == 1 and f"evaluation data file {tmp_path / 'no.npz'} does not exist" in out
