"""packager.compress: int8 quantization, fp16, pruning, calibration checks, the report; metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from packager.compress import (
    CompressionReport,
    CompressOptions,
    Stage,
    check_inputs,
    convert_fp16,
    onnx_stage,
    prune_module,
    quantize,
)
from packager.compress.evaluate import evaluate_local, labeled, load_labeled, parse_metric, score
from packager.errors import PackagerError
from packager.sources import Signature
from packager.sources.onnx_file import load_proto, signature_of
from packager.spec import TensorSpec
from tests.support import classifier


@pytest.fixture(scope="module")
def clf() -> classifier.Classifier:
    return classifier.trained()


@pytest.fixture(scope="module")
def test_data(clf: classifier.Classifier):
    return load_labeled(clf.test)


@pytest.fixture(scope="module")
def fp32_accuracy(clf: classifier.Classifier, test_data) -> float:
    return evaluate_local(clf.onnx, test_data)["accuracy"]


def _calibration(clf: classifier.Classifier) -> dict[str, np.ndarray]:
    return {"input": np.load(clf.calibration)["input"]}


# --- quantization and fp16 on a trained classifier ---------------------------------------


def test_the_classifier_is_a_real_model(clf, fp32_accuracy):
    # ORT on the exported file agrees with torch, and the task is neither trivial nor hopeless.
    assert fp32_accuracy == pytest.approx(clf.accuracy, abs=0.002)
    assert 0.8 < fp32_accuracy < 0.99


@pytest.mark.parametrize(
    ("mode", "per_channel"),
    [
        ("dynamic-int8", False),
        ("dynamic-int8", True),
        ("static-int8", False),
        ("static-int8", True),
    ],
)
def test_int8_weights_are_3x_smaller_and_accuracy_holds(
    clf, test_data, fp32_accuracy, tmp_path, mode, per_channel
):
    calibration = _calibration(clf) if mode == "static-int8" else None
    out = quantize(
        clf.onnx, tmp_path / "q.onnx", mode, calibration=calibration, per_channel=per_channel
    )
    before, after = onnx_stage(clf.onnx, "fp32"), onnx_stage(out, mode)
    assert before.param_bytes / after.param_bytes >= 3.0
    assert after.file_bytes is not None and before.file_bytes is not None
    assert after.file_bytes < before.file_bytes / 3
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    if mode == "static-int8":
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    else:
        assert "MatMulInteger" in ops or "DynamicQuantizeLinear" in ops
    acc = evaluate_local(out, test_data)["accuracy"]
    assert abs(acc - fp32_accuracy) <= 0.02
    # Inputs and outputs keep their names and types: the Triton config does not change.
    assert signature_of(load_proto(out, external=False)) == signature_of(
        load_proto(clf.onnx, external=False)
    )


def test_fp16_keeps_fp32_io_and_halves_the_weights(clf, test_data, fp32_accuracy, tmp_path):
    out = convert_fp16(clf.onnx, tmp_path / "h.onnx")
    ratio = onnx_stage(clf.onnx, "a").param_bytes / onnx_stage(out, "b").param_bytes
    assert ratio == pytest.approx(2.0, rel=0.01)
    sig = signature_of(load_proto(out, external=False))
    assert {t.dtype.wire for t in sig.inputs + sig.outputs} == {"FP32"}
    assert abs(evaluate_local(out, test_data)["accuracy"] - fp32_accuracy) <= 0.01


def test_fp16_io_changes_the_signature(clf, tmp_path):
    out = convert_fp16(clf.onnx, tmp_path / "h.onnx", keep_io_types=False)
    sig = signature_of(load_proto(out, external=False))
    assert [t.dtype.wire for t in sig.inputs + sig.outputs] == ["FP16", "FP16"]


def test_fp16_of_an_fp16_model_is_refused(clf, tmp_path):
    once = convert_fp16(clf.onnx, tmp_path / "h.onnx", keep_io_types=False)
    with pytest.raises(PackagerError, match="no fp32 weights"):
        convert_fp16(once, tmp_path / "hh.onnx")


def test_static_int8_without_calibration_is_refused(clf, tmp_path):
    with pytest.raises(PackagerError, match="needs --calibration-data"):
        quantize(clf.onnx, tmp_path / "q.onnx", "static-int8")
    assert not (tmp_path / "q.onnx").exists()


# --- calibration data checks --------------------------------------------------------------

SIG = Signature(
    inputs=(
        TensorSpec("x", "FP32", (-1, 8)),
        TensorSpec("ids", "INT64", (-1, -1)),
    ),
    outputs=(TensorSpec("y", "FP32", (-1, 2)),),
)


def test_good_calibration_passes_and_safe_casts_are_made():
    data = {"x": np.zeros((5, 8), np.float32), "ids": np.ones((5, 3), np.int32)}
    out = check_inputs(data, SIG)
    assert out["ids"].dtype == np.int64 and out["x"].shape == (5, 8)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"x": np.zeros((5, 8), np.float32)}, "missing: ids"),
        (
            {"x": np.zeros((5, 8), np.float32), "ids": np.ones((5, 3)), "z": np.ones(5)},
            "unknown: z",
        ),
        ({"x": np.zeros((5, 7), np.float32), "ids": np.ones((5, 3), np.int64)}, "shape [5, 7]"),
        ({"x": np.zeros((5,), np.float32), "ids": np.ones((5, 3), np.int64)}, "shape [5]"),
        ({"x": np.zeros((5, 8), np.float64), "ids": np.ones((5, 3), np.int64)}, "float64"),
        ({"x": np.zeros((5, 8), np.float32), "ids": np.ones((5, 3), np.float32)}, "INT64"),
        ({"x": np.zeros((5, 8), np.float32), "ids": np.ones((4, 3), np.int64)}, "same number"),
        ({"x": np.zeros((0, 8), np.float32), "ids": np.ones((0, 3), np.int64)}, "no samples"),
        (
            {"x": np.full((5, 8), np.nan, np.float32), "ids": np.ones((5, 3), np.int64)},
            "NaN",
        ),
    ],
)
def test_bad_calibration_names_the_problem(data, message):
    with pytest.raises(PackagerError, match="does not fit the model") as info:
        check_inputs(data, SIG)
    assert message in str(info.value)


def test_every_calibration_problem_is_reported_at_once():
    data = {"x": np.zeros((5, 8), np.float64), "ids": np.ones((5,), np.int64), "q": np.ones(1)}
    with pytest.raises(PackagerError) as info:
        check_inputs(data, SIG)
    text = str(info.value)
    assert "unknown: q" in text and "float64" in text and "shape [5]" in text


# --- pruning -------------------------------------------------------------------------------


def _trained_module(clf):
    import torch

    module = classifier.make()
    module.load_state_dict(torch.load(clf.weights, weights_only=True))
    return module.eval()


def test_unstructured_pruning_is_permanent_and_leaves_the_original_alone(clf):
    import torch

    module = _trained_module(clf)
    original = {k: v.clone() for k, v in module.state_dict().items()}
    pruned, report = prune_module(module, 0.5)
    # The caller's module is untouched.
    assert all(torch.equal(original[k], v) for k, v in module.state_dict().items())
    # Permanent: plain parameters, no masks, no forward pre-hooks.
    assert set(pruned.state_dict()) == set(original)
    for layer in pruned.modules():
        assert not getattr(layer, "_forward_pre_hooks", {})
    for name in ("0", "2", "4"):
        w = getattr(pruned, name).weight
        assert float((w == 0).float().mean()) == pytest.approx(0.5, abs=0.01)
    assert report.original.nonzero == report.original.params
    assert report.final.sparsity == pytest.approx(0.5, abs=0.02)
    assert report.final.param_bytes == report.original.param_bytes  # dense: same bytes


def test_structured_pruning_zeroes_rows_and_keeps_the_output_layer(clf, test_data):
    import torch

    from packager.compress.pipeline import _torch_evaluator

    evaluate = _torch_evaluator(test_data.inputs, test_data.labels, "accuracy")
    pruned, report = prune_module(
        _trained_module(clf), 0.25, structured=True, evaluate=evaluate, metric_name="accuracy"
    )
    for name in ("0", "2"):
        rows = pruned.get_submodule(name).weight.abs().sum(dim=1)
        assert int((rows == 0).sum()) == 64  # 25% of 256 output channels
    assert torch.count_nonzero(pruned.get_submodule("4").weight) == 4 * 256
    assert report.original.metric == pytest.approx(clf.accuracy, abs=1e-6)
    assert report.final.metric is not None and report.final.metric > 0.7
    assert report.details["prune"]["layers"] == {"0": 0.25, "2": 0.25}


@pytest.mark.parametrize("amount", [0.0, 1.0, -0.1, 1.5])
def test_prune_amount_must_be_a_fraction(clf, amount):
    with pytest.raises(PackagerError, match="between 0 and 1"):
        prune_module(_trained_module(clf), amount)


def test_a_module_without_layers_cannot_be_pruned():
    from torch import nn

    with pytest.raises(PackagerError, match="no layer to prune"):
        prune_module(nn.ReLU(), 0.5)
    with pytest.raises(PackagerError, match="other than the output layer"):
        prune_module(nn.Sequential(nn.Linear(2, 2)), 0.5, structured=True)


# --- options, report, metrics ------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (CompressOptions(quantize="int4"), "--quantize must be one of"),
        (CompressOptions(quantize="dynamic-int8", fp16=True), "not both"),
        (CompressOptions(quantize="dynamic-int8", calibration_data="c.npz"), "only with"),
        (CompressOptions(quantize="static-int8"), "needs --calibration-data"),
        (CompressOptions(per_channel=True), "--per-channel applies"),
        (CompressOptions(prune_structured=True), "needs --prune"),
        (CompressOptions(prune=2.0), "between 0 and 1"),
        (CompressOptions(eval_data="t.npz"), "measures a compression"),
    ],
)
def test_option_problems(options, message):
    assert any(message in p for p in options.problems())


def test_no_options_means_no_compression():
    assert CompressOptions().problems() == [] and not CompressOptions().active


def test_report_table_and_round_trip():
    report = CompressionReport(
        (
            Stage("original", 4000, 4000, 1000, 1000, 0.9),
            Stage("int8", 1100, 1000, 1000, 500, 0.89),
        ),
        "accuracy",
        ("quantize dynamic-int8",),
    )
    text = report.table()
    assert "4.00x smaller" in text and "3.64x smaller" in text
    assert "0.9000" in text and "0.8900" in text and "500 (50.0%)" in text
    assert CompressionReport.from_dict(report.to_dict()) == report
    assert report.to_dict()["param_ratio"] == 4.0


@pytest.mark.parametrize(
    ("name", "expected"),
    [("accuracy", "accuracy"), ("top1", "accuracy"), ("Top-5", "top5"), ("top3", "top3"),
     ("MSE", "mse"), ("mae", "mae")],
)  # fmt: skip
def test_parse_metric(name, expected):
    assert parse_metric(name) == expected


@pytest.mark.parametrize("name", ["f1", "top0", "top-", ""])
def test_unknown_metric(name):
    with pytest.raises(PackagerError, match="unknown metric"):
        parse_metric(name)


def test_scores_by_hand():
    out = np.array([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    labels = np.array([1, 2, 2, 1])
    assert score("accuracy", out, labels) == 0.5
    assert score("top2", out, labels) == 1.0
    assert score("accuracy", out, np.eye(3)[labels]) == 0.5  # one-hot labels
    assert score("accuracy", out, labels[:, None]) == 0.5
    assert score("mse", np.array([[1.0], [3.0]]), np.array([2.0, 3.0])) == 0.5
    assert score("mae", np.array([1.0, 4.0]), np.array([2.0, 3.0])) == 1.0


@pytest.mark.parametrize(
    ("metric", "out", "labels", "message"),
    [
        ("accuracy", np.zeros((4, 1)), np.zeros(4), "one score per class"),
        ("top5", np.zeros((4, 3)), np.zeros(4), "only 3 classes"),
        ("accuracy", np.zeros((4, 3)), np.zeros((4, 2)), "do not fit"),
        ("accuracy", np.zeros((2, 3)), np.array([0.5, 1.0]), "whole numbers"),
        ("mse", np.zeros((4, 3)), np.zeros(4), "element by element"),
    ],
)
def test_metric_errors(metric, out, labels, message):
    with pytest.raises(PackagerError, match=message):
        score(metric, out, labels)


def test_labeled_data_checks(tmp_path: Path):
    with pytest.raises(PackagerError, match="no 'labels' array"):
        labeled({"x": np.zeros((3, 2))})
    with pytest.raises(PackagerError, match="same number of samples"):
        labeled({"x": np.zeros((3, 2)), "labels": np.zeros(4)})
    with pytest.raises(PackagerError, match="lacks input"):
        labeled({"x": np.zeros((3, 2)), "labels": np.zeros(3)}, input_names=["input"])
    with pytest.raises(PackagerError, match="does not exist"):
        load_labeled(tmp_path / "nope.npz")
    data = labeled({"a": np.zeros((5, 2)), "y": np.arange(5)}, labels_key="y")
    assert data.samples == 5
    assert [s for s, _ in data.batches(2)] == [0, 2, 4]
