"""packager.sources.pytorch.export: nn.Module -> ONNX / TorchScript with dynamic axes, verified against the source.

Every artifact made here is also loaded back (ONNX Runtime / torch.jit.load) and run on a batch
size and sequence length that neither the export nor its verification saw.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from packager.errors import ExportError, PackagerError, SourceError, VerificationError
from packager.sources.onnx_external import external_locations
from packager.sources.pytorch.export import export_module
from packager.sources.verify import onnx_runner, torchscript_runner
from tests.support.torch_models import (
    MLP,
    BranchOnValues,
    Noisy,
    NumpyInForward,
    SmallCNN,
    TextClassifier,
    TwoInTwoOut,
    text_inputs,
)

RNG = np.random.default_rng(0)


def _mlp() -> tuple[nn.Module, dict[str, Any], Callable[[], dict[str, np.ndarray]]]:
    return (
        MLP(),
        {"example_inputs": {"x": RNG.standard_normal((2, 16)).astype(np.float32)}},
        lambda: {"x": RNG.standard_normal((5, 16)).astype(np.float32)},
    )


def _cnn() -> tuple[nn.Module, dict[str, Any], Callable[[], dict[str, np.ndarray]]]:
    model = SmallCNN()
    model.train()  # left in training mode on purpose: export must use eval()
    with torch.no_grad():  # non-trivial running stats, so eval() vs train() differ visibly
        bn = model.features[1]
        assert (
            isinstance(bn, nn.BatchNorm2d)
            and bn.running_mean is not None
            and bn.running_var is not None
        )
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    return (
        model,
        {"input_specs": ["image:FP32:3,16,16"]},
        lambda: {"image": RNG.standard_normal((4, 3, 16, 16)).astype(np.float32)},
    )


def _text() -> tuple[nn.Module, dict[str, Any], Callable[[], dict[str, np.ndarray]]]:
    return (
        TextClassifier(),
        {
            "example_inputs": text_inputs(2, 7),
            "dynamic_axes": {"input_ids": [1], "attention_mask": [1]},
        },
        lambda: text_inputs(5, 12),  # another batch AND another sequence length
    )


def _two() -> tuple[nn.Module, dict[str, Any], Callable[[], dict[str, np.ndarray]]]:
    def data(batch: int) -> dict[str, np.ndarray]:
        return {
            "features": RNG.standard_normal((batch, 6)).astype(np.float32),
            "category": RNG.integers(0, 10, size=(batch, 2)).astype(np.int64),
        }

    return TwoInTwoOut(), {"example_inputs": data(3)}, lambda: data(6)


MODELS = {"mlp": _mlp, "cnn": _cnn, "text": _text, "two_in_dict_out": _two}
CASES = [(m, f) for m in MODELS for f in ("onnx", "torchscript")]


@pytest.fixture(scope="module")
def export_cache() -> Iterator[dict[tuple[str, str], tuple]]:
    cache: dict[tuple[str, str], tuple] = {}
    yield cache
    for entry in cache.values():
        entry[3].close()


def _exported(cache: dict[tuple[str, str], tuple], name: str, fmt: str) -> tuple:
    """(name, fmt, source module, LoadedModel, fresh-input maker), exported once per module."""
    if (name, fmt) not in cache:
        torch.manual_seed(0)
        model, options, fresh = MODELS[name]()
        was_training = model.training
        loaded = export_module(model, format=fmt, **options)
        assert model.training == was_training  # the caller's module is handed back as it came
        cache[name, fmt] = (name, fmt, model, loaded, fresh)
    return cache[name, fmt]


@pytest.fixture(params=CASES, ids=[f"{m}-{f}" for m, f in CASES])
def exported(request: pytest.FixtureRequest, export_cache: dict) -> tuple:
    return _exported(export_cache, *request.param)


@pytest.fixture(params=list(MODELS))
def exported_onnx(request: pytest.FixtureRequest, export_cache: dict) -> tuple:
    return _exported(export_cache, request.param, "onnx")


@pytest.fixture(params=list(MODELS))
def exported_ts(request: pytest.FixtureRequest, export_cache: dict) -> tuple:
    return _exported(export_cache, request.param, "torchscript")


def _run_source(model: nn.Module, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    model.eval()
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    if isinstance(out, dict):
        out = list(out.values())
    outs = out if isinstance(out, (list, tuple)) else [out]
    return [o.numpy() for o in outs]


def test_artifact_matches_source_on_unseen_shapes(exported: tuple) -> None:
    _, fmt, model, loaded, fresh = exported
    inputs = fresh()
    out_names = [t.name for t in loaded.signature.outputs]
    if fmt == "onnx":
        run = onnx_runner(loaded.files["model.onnx"], out_names)
    else:
        run = torchscript_runner(
            loaded.files["model.pt"], [t.name for t in loaded.signature.inputs], out_names
        )
    got = run(inputs)
    expected = _run_source(model, inputs)
    assert len(got) == len(expected)
    for name_, exp in zip(out_names, expected, strict=True):
        np.testing.assert_allclose(got[name_], exp, atol=1e-4, rtol=1e-3)


def test_signature_has_dynamic_batch_and_named_axes(exported: tuple) -> None:
    name, fmt, _, loaded, _ = exported
    sig = loaded.signature
    assert sig.batchable, sig
    dims = {t.name: t.dims for t in sig.inputs + sig.outputs}
    dtypes = {t.name: t.dtype.wire for t in sig.inputs}
    if name == "text":
        assert dims["input_ids"] == (-1, -1) and dims["attention_mask"] == (-1, -1)
        assert dtypes == {"input_ids": "INT64", "attention_mask": "BOOL"}
    if name == "cnn":
        # AdaptiveAvgPool2d takes any height and width: found without a flag, verified at
        # another size; the 3 channels stay fixed (the convolution needs them).
        assert dims["image"] == (-1, 3, -1, -1)
        assert loaded.record["axes_found_dynamic"] == {"image": [2, 3]}
        assert loaded.record["axes_fixed"] == {"image": {"1": 3}}
    if name == "two_in_dict_out":
        assert dtypes == {"features": "FP32", "category": "INT64"}
        expected = ["logits", "probs"] if fmt == "onnx" else ["logits__0", "probs__1"]
        assert [t.name for t in sig.outputs] == expected
        assert all(t.dims == (-1, 4) for t in sig.outputs)


class FlattenHead(nn.Module):
    """Fixed-size head: a Linear over the flattened 4x5 features takes no other size."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(20, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_axes_the_module_cannot_change_stay_fixed_and_are_reported(fmt: str) -> None:
    x = RNG.standard_normal((2, 4, 5)).astype(np.float32)
    loaded = export_module(FlattenHead(), format=fmt, example_inputs={"x": x})
    try:
        assert loaded.signature.inputs[0].dims == (-1, 4, 5)
        assert loaded.record["axes_fixed"] == {"x": {"1": 4, "2": 5}}
        assert "axes_found_dynamic" not in loaded.record
    finally:
        loaded.close()


def test_several_lengths_verified_when_an_axis_is_found_dynamic() -> None:
    """No dynamic_axes given: the sequence axis is found (the module runs at 6 tokens too)."""
    loaded = export_module(TextClassifier(), format="onnx", example_inputs=text_inputs(2, 7))
    try:
        found = loaded.record["axes_found_dynamic"]
        assert found == {"input_ids": [1], "attention_mask": [1]}
        assert [t.dims for t in loaded.signature.inputs] == [(-1, -1), (-1, -1)]
        cases = [c["case"] for c in loaded.record["verification"]["checks"]]
        assert any("[3, 6]" in c for c in cases), cases  # another batch and another length
    finally:
        loaded.close()


def test_record_holds_verification_figures(exported: tuple) -> None:
    _, fmt, _, loaded, _ = exported
    ver = loaded.record["verification"]
    assert ver["passed"] is True and ver["atol"] == 1e-4 and ver["rtol"] == 1e-3
    cases = {c["case"] for c in ver["checks"]}
    assert len(cases) == 3 and any("batch" in c and "example" not in c for c in cases)
    assert all(c["max_abs_err"] <= 1e-4 + 1e-3 * 10 for c in ver["checks"])
    assert loaded.record["torch"] == torch.__version__
    if fmt == "onnx":
        assert loaded.record["onnx_opset"] >= 18
        assert loaded.platform == "onnxruntime_onnx" and loaded.format == "onnx"
    else:
        assert loaded.record["torchscript_mode"] == "trace"
        assert loaded.platform == "pytorch_libtorch" and loaded.format == "torchscript"


def test_onnx_is_one_self_contained_file(exported_onnx: tuple) -> None:
    loaded = exported_onnx[3]
    assert list(loaded.files) == ["model.onnx"]
    model = onnx.load(str(loaded.files["model.onnx"]), load_external_data=False)
    assert external_locations(model) == []
    assert not list(loaded.files["model.onnx"].parent.glob("*.data"))
    # The file alone, copied elsewhere, still loads (what Triton's version folder gets).
    onnx.checker.check_model(str(loaded.files["model.onnx"]))


def test_torchscript_names_follow_libtorch_rules(exported_ts: tuple) -> None:
    loaded = exported_ts[3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load is what Triton does
        ts = torch.jit.load(str(loaded.files["model.pt"]))
    args = [a.name for a in ts.forward.schema.arguments if a.name != "self"]
    assert args == [t.name for t in loaded.signature.inputs]  # Triton binds inputs by these names
    assert all(t.name.endswith(f"__{i}") for i, t in enumerate(loaded.signature.outputs))


def test_close_removes_temporary_files() -> None:
    loaded = export_module(MLP(), format="torchscript", input_specs=["x:FP32:16"])
    folder = loaded.files["model.pt"].parent
    assert folder.is_dir()
    loaded.close()
    assert not folder.exists()


# --- inputs in every form ------------------------------------------------------------------------


class KeywordHalf(nn.Module):
    """fp16 input, an optional argument left out, a keyword-only argument, nested outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, *, scale: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        y = self.lin(x.float()) * scale
        if mask is not None:
            y = y * mask.unsqueeze(-1)
        return y, [y.argmax(-1), y > 0]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_keyword_fp16_and_nested_outputs(fmt: str) -> None:
    examples = {
        "scale": np.full((2, 1), 2.0, np.float32),
        "x": RNG.standard_normal((2, 3)).astype(np.float16),
    }
    loaded = export_module(KeywordHalf(), format=fmt, example_inputs=examples)
    try:
        sig = loaded.signature
        # Call order follows forward(), not the dict; the unused optional `mask` is left out.
        assert [(t.name, t.dtype.wire, t.dims) for t in sig.inputs] == [
            ("x", "FP16", (-1, 3)),
            ("scale", "FP32", (-1, 1)),
        ]
        names = ["output_0", "output_1.0", "output_1.1"]
        if fmt == "torchscript":
            names = ["OUTPUT__0", "OUTPUT__1", "OUTPUT__2"]
        assert [(t.name, t.dtype.wire) for t in sig.outputs] == list(
            zip(names, ["FP32", "INT64", "BOOL"], strict=True)
        )
    finally:
        loaded.close()


def test_positional_list_and_npz_examples_named_after_forward(tmp_path: Path) -> None:
    feats = RNG.standard_normal((2, 6)).astype(np.float32)
    cats = RNG.integers(0, 10, size=(2, 2))
    positional = tmp_path / "positional.npz"
    np.savez(positional, feats, cats)  # arr_0, arr_1: positions, not names
    named = tmp_path / "named.npz"
    np.savez(named, category=cats, features=feats)
    for example in ([feats, cats], str(positional), named):
        loaded = export_module(TwoInTwoOut(), format="torchscript", example_inputs=example)
        assert [t.name for t in loaded.signature.inputs] == ["features", "category"]
        loaded.close()


class SeqPool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(8, 3)

    def forward(self, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        w = keep.unsqueeze(-1).float()
        return (self.embed(ids) * w).sum(1) / w.sum(1).clamp(min=1.0)


def test_input_specs_with_dynamic_dims_and_output_names() -> None:
    loaded = export_module(
        SeqPool(),
        format="onnx",
        input_specs=["ids:INT64:-1", "keep:BOOL:-1"],
        output_names=["pooled"],
        batch_size=3,
    )
    try:
        assert [(t.name, t.dims) for t in loaded.signature.inputs + loaded.signature.outputs] == [
            ("ids", (-1, -1)),
            ("keep", (-1, -1)),
            ("pooled", (-1, 3)),
        ]
        assert loaded.record["inputs"]["ids"]["example_shape"][0] == 3
        checks = loaded.record["verification"]["checks"]
        # The other cases change the batch and the dynamic sequence axis (shorter, then
        # longer: both sides of the example), and say so.
        assert {c["case"] for c in checks} == {
            "example (batch 3)",
            "batch 4: ids [4, 3], keep [4, 3]",
            "batch 1: ids [1, 5], keep [1, 5]",
        }
    finally:
        loaded.close()


def test_torchscript_output_names_get_index_suffix() -> None:
    loaded = export_module(TwoInTwoOut(), format="torchscript", output_names=["a", "b__1"],
                           example_inputs={"features": np.ones((2, 6), np.float32), "category": np.ones((2, 2), np.int64)})  # fmt: skip
    try:
        assert [t.name for t in loaded.signature.outputs] == ["a__0", "b__1"]
    finally:
        loaded.close()


def test_script_mode_keeps_control_flow() -> None:
    loaded = export_module(
        BranchOnValues(), format="torchscript", torchscript_mode="script", input_specs=["x:FP32:4"]
    )
    try:
        run = torchscript_runner(loaded.files["model.pt"], ["x"], ["OUTPUT__0"])
        pos, neg = np.ones((1, 4), np.float32), -np.ones((1, 4), np.float32)
        np.testing.assert_array_equal(run({"x": pos})["OUTPUT__0"], pos * 2)
        np.testing.assert_array_equal(run({"x": neg})["OUTPUT__0"], neg - 1)
        assert loaded.record["torchscript_mode"] == "script"
    finally:
        loaded.close()


# --- failures: clear messages ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mode"), [("onnx", "trace"), ("torchscript", "trace"), ("torchscript", "script")]
)
def test_non_exportable_model_fails_clearly(fmt: str, mode: str) -> None:
    with pytest.raises(ExportError, match=r"cannot (export|trace|script) the model"):
        export_module(NumpyInForward(), format=fmt, torchscript_mode=mode, input_specs=["x:FP32:4"])


def test_data_dependent_branch_fails_onnx_with_hint() -> None:
    with pytest.raises(ExportError, match="control flow") as info:
        export_module(BranchOnValues(), format="onnx", input_specs=["x:FP32:4"])
    assert "--torchscript-mode script" in str(info.value)


def test_trace_of_branch_records_tracer_warning() -> None:
    loaded = export_module(BranchOnValues(), format="torchscript", input_specs=["x:FP32:4"])
    try:
        assert any("Python boolean" in w for w in loaded.record["tracer_warnings"])
    finally:
        loaded.close()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_non_deterministic_model_fails_before_export(fmt: str) -> None:
    with pytest.raises(ExportError, match="not deterministic") as info:
        export_module(Noisy(), format=fmt, input_specs=["x:FP32:4"])
    assert "--no-verify" in str(info.value)


def test_no_verify_skips_checks() -> None:
    loaded = export_module(Noisy(), format="torchscript", input_specs=["x:FP32:4"], verify=False)
    try:
        assert loaded.record["verification"] == {"skipped": True}
    finally:
        loaded.close()


class BakedBatch(nn.Module):
    """Eager: scales by the batch size. Traced: the size becomes the constant 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * float(x.shape[0])


def test_trace_that_bakes_a_size_fails_verification_with_table() -> None:
    with pytest.raises(VerificationError) as info:
        export_module(BakedBatch(), format="torchscript", input_specs=["x:FP32:3"])
    msg = str(info.value)
    assert "max abs err" in msg and "FAIL" in msg and "batch 3" in msg
    assert "tracer warned" in msg  # the likely cause, in the user's words
    failed = info.value.report.failures  # type: ignore[attr-defined]
    assert [c.case for c in failed] == ["batch 3", "batch 1"] and failed[0].output == "OUTPUT__0"


def test_tolerance_options_reach_the_check() -> None:
    # The same wrong trace passes when the tolerance is loose enough to hide it.
    loaded = export_module(
        BakedBatch(), format="torchscript", input_specs=["x:FP32:3"], atol=1e9, rtol=0
    )
    try:
        assert loaded.record["verification"]["passed"] is True
        assert loaded.record["verification"]["atol"] == 1e9
    finally:
        loaded.close()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, SourceError, "needs example inputs"),
        (
            {"example_inputs": {"y": np.ones((2, 16), np.float32)}},
            SourceError,
            r"not arguments of MLP.forward\(x\)",
        ),
        (
            {"input_specs": ["x:FP32:16"], "output_names": ["a", "b"]},
            PackagerError,
            "2 output name",
        ),
        (
            {"input_specs": ["x:FP32:16"], "dynamic_axes": {"nope": [1]}},
            PackagerError,
            "neither inputs",
        ),
        ({"input_specs": ["x:FP32:16"], "dynamic_axes": {"x": [3]}}, PackagerError, "out of range"),
        ({"example_inputs": np.ones((2, 16), np.float64)}, ExportError, r"x FP64\[2, 16\]"),
        ({"input_specs": ["x:FP32:16"], "format": "tflite"}, PackagerError, "onnx or torchscript"),
    ],
)
def test_bad_requests_are_explained(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        export_module(MLP(), **kwargs)


def test_onnx_over_the_single_file_limit_keeps_its_data_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A > 2 GB model is too slow for a unit test: lower the limit instead.
    monkeypatch.setattr("packager.sources.pytorch.exporters.ONNX_SINGLE_FILE_LIMIT", 0)
    loaded = export_module(MLP(), format="onnx", input_specs=["x:FP32:16"])
    try:
        assert sorted(loaded.files) == ["model.onnx", "model.onnx.data"]
        model = onnx.load(str(loaded.files["model.onnx"]), load_external_data=False)
        assert external_locations(model) == ["model.onnx.data"]
        # Copied side by side (as into a version folder), the pair loads and runs.
        for name, src in loaded.files.items():
            (tmp_path / name).write_bytes(src.read_bytes())
        out = onnx_runner(tmp_path / "model.onnx")({"x": np.ones((3, 16), np.float32)})
        assert out["output"].shape == (3, 4)
    finally:
        loaded.close()


def test_examples_of_other_shapes_make_their_differing_axes_dynamic(tmp_path: Path) -> None:
    """Two example files of different lengths: the axis that differs is dynamic (declared by
    the data, not probed), and the export is verified on each example as given."""
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    np.savez(first, **text_inputs(2, 7))
    np.savez(second, **text_inputs(3, 11))
    loaded = export_module(
        TextClassifier(), format="torchscript", example_inputs=first, more_examples=[second]
    )
    try:
        assert [t.dims for t in loaded.signature.inputs] == [(-1, -1), (-1, -1)]
        assert "axes_found_dynamic" not in loaded.record  # given by the examples, not probed
        cases = [c["case"] for c in loaded.record["verification"]["checks"]]
        assert "example 2: input_ids [3, 11], attention_mask [3, 11]" in cases, cases
    finally:
        loaded.close()
