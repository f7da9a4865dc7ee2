"""Keras 3 files and TF SavedModels as sources: signatures, conversion record, clear refusals.

TensorFlow runs for real (import ~5 s): the models are made once per module.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from packager import sources
from packager.builder import build, inspect
from packager.errors import PackagerError, SourceError
from packager.extras import missing_extra
from packager.sources.keras_file import is_keras_file
from packager.sources.tf_graph import is_saved_model
from tests.support import keras_models

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keras")
    return {
        "text": keras_models.save_keras(keras_models.text_classifier(), d / "text.keras"),
        "mlp": keras_models.save_keras(keras_models.sequential_mlp(), d / "mlp.keras"),
        "mlp_sm": keras_models.save_saved_model(keras_models.sequential_mlp(), d / "mlp_sm"),
    }


def test_formats_are_registered_and_sniffed(made: dict[str, Path], tmp_path: Path) -> None:
    assert {"keras", "savedmodel"} <= set(sources.names())
    assert sources.detect(made["text"]).name == "keras"
    assert sources.detect(made["mlp_sm"]).name == "savedmodel"
    assert is_saved_model(made["mlp_sm"]) and not is_saved_model(made["text"])
    other = tmp_path / "other.keras"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("config.json", "{}")  # no metadata.json: not a Keras 3 file
    assert not is_keras_file(other) and is_keras_file(made["mlp"])


def test_keras_signature_keeps_the_layer_names_dtypes_and_dynamic_dims(
    made: dict[str, Path],
) -> None:
    found = inspect(made["text"])
    ins = {t.name: (t.dtype.wire, t.dims) for t in found.signature.inputs}
    outs = {t.name: (t.dtype.wire, t.dims) for t in found.signature.outputs}
    assert ins == {"token_ids": ("INT32", (-1, -1)), "extra": ("FP32", (-1, 4))}
    assert outs == {"score": ("FP32", (-1, 1)), "embedding": ("FP32", (-1, 16))}
    assert found.format == "onnx" and found.batchable


def test_a_sequential_saved_before_it_was_ever_called_builds(
    made: dict[str, Path], tmp_path: Path
) -> None:
    # Keras rebuilds it from the file without a defined ``model.input``; names come from layers.
    result = build(made["mlp"], name="mlp", output=tmp_path / "repo")
    ins = {t.name: t.dims for t in result.spec.inputs}
    outs = {t.name: t.dims for t in result.spec.outputs}
    # Keras numbers unnamed layers per process (input_layer, input_layer_1, ...); the file keeps
    # the names it was saved with, which are what Keras reports when it loads the file.
    loaded = keras.saving.load_model(made["mlp"], compile=False)
    assert ins == {loaded.inputs[0].name: (6,)} and set(outs) == {loaded.layers[-1].name}
    assert result.record["verification"]["passed"] is True


def test_build_records_the_conversion_and_the_errors_at_two_batch_sizes(
    made: dict[str, Path], tmp_path: Path
) -> None:
    result = build(made["text"], name="text", output=tmp_path / "repo")
    record = result.record
    assert record["source"]["format"] == "keras" and record["tensorflow"]["onnx_opset"] == 17
    checks = record["verification"]["checks"]
    assert {c["case"] for c in checks} == {"example (batch 2)", "batch 3"}
    assert {c["output"] for c in checks} == {"score", "embedding"}
    assert record["verification"]["passed"] and record["max_abs_err"] <= 1e-5
    assert (tmp_path / "repo" / "text" / "1" / "model.onnx").is_file()


def test_saved_model_signature_and_given_examples(made: dict[str, Path], tmp_path: Path) -> None:
    x = np.random.default_rng(1).standard_normal((5, 6)).astype(np.float32)
    np.savez(tmp_path / "x.npz", keras_tensor=x)
    sig = inspect(made["mlp_sm"]).signature
    (name,) = [t.name for t in sig.inputs]
    np.savez(tmp_path / "x.npz", **{name: x})
    result = build(made["mlp_sm"], name="mlp", output=tmp_path / "repo", dry_run=True,
                   example_inputs=tmp_path / "x.npz")  # fmt: skip
    assert [t.name for t in sig.outputs] == ["output_0"]  # what model.export names it
    cases = {c["case"]: c["shape"] for c in result.record["verification"]["checks"]}
    assert cases == {"example (batch 5)": [5, 2], "batch 6": [6, 2]}
    assert result.record["signature"] == "serving_default"


def test_a_custom_layer_keras_cannot_find_is_refused_with_what_to_do(tmp_path: Path) -> None:
    class Doubler(keras.layers.Layer):  # not registered: the file cannot be loaded elsewhere
        def call(self, x: Any) -> Any:
            return x * 2.0

    inp = keras.Input((3,), name="x")
    keras.Model(inp, Doubler()(inp)).save(tmp_path / "custom.keras")
    with pytest.raises(
        SourceError, match=r"custom layer.*\(Doubler\).*register_keras_serializable"
    ):
        build(tmp_path / "custom.keras", name="c", output=tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_a_lambda_layer_is_not_loaded_from_a_file(tmp_path: Path) -> None:
    inp = keras.Input((3,), name="x")
    keras.Model(inp, keras.layers.Lambda(lambda t: t + 1.0)(inp)).save(tmp_path / "lam.keras")
    with pytest.raises(SourceError, match=r"Lambda.*registered layer"):
        inspect(tmp_path / "lam.keras")


def _saved(tmp_path: Path, name: str, fn: Any, spec: Any, signatures: Any = None) -> Path:
    module = tf.Module()
    module.f = tf.function(fn, input_signature=[spec])
    path = tmp_path / name
    tf.saved_model.save(module, str(path), signatures=signatures or {"serving_default": module.f})
    return path


def test_an_op_without_an_onnx_rule_is_named(tmp_path: Path) -> None:
    spec = tf.TensorSpec((None, 4, 4), tf.float32, name="x")
    path = _saved(tmp_path, "svd", lambda x: {"s": tf.linalg.svd(x, compute_uv=False)}, spec)
    with pytest.raises(SourceError, match=r"TensorFlow op\(s\) Svd .*Nothing was written"):
        build(path, name="svd", output=tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_a_saved_model_without_serving_default_lists_its_signatures(tmp_path: Path) -> None:
    spec = tf.TensorSpec((None, 3), tf.float32, name="x")
    module = tf.Module()
    module.a = tf.function(lambda x: {"y": x + 1}, input_signature=[spec])
    module.b = tf.function(lambda x: {"y": x * 2}, input_signature=[spec])
    path = tmp_path / "two"
    tf.saved_model.save(module, str(path), signatures={"add": module.a, "mul": module.b})
    with pytest.raises(SourceError, match=r"no signature 'serving_default'; it has: add, mul"):
        inspect(path)


def test_only_onnx_is_a_target_and_the_extra_is_named(made: dict[str, Path]) -> None:
    with pytest.raises(PackagerError, match=r"converts to ONNX only, not torchscript"):
        inspect(made["mlp"], format="torchscript")
    for module in ("tensorflow", "tf2onnx", "keras"):
        err = missing_extra(ModuleNotFoundError(name=module))
        assert err is not None and "[tensorflow]' (extras: [tensorflow]" in str(err)


def test_a_keras2_hdf5_model_builds_through_the_legacy_loader(tmp_path: Path) -> None:
    """An .h5 written by Keras' legacy HDF5 writer (what Keras 2's model.save('m.h5') made):
    read by Keras 3's legacy loader, converted and verified, also under another file name."""
    model = keras_models.sequential_mlp()
    h5 = tmp_path / "mlp.h5"
    model.save(h5)
    assert sources.detect(h5).name == "keras"
    renamed = tmp_path / "mlp.model"  # HDF5 content, no .h5 name
    renamed.write_bytes(h5.read_bytes())
    for path in (h5, renamed):
        result = build(path, name="mlp", output=tmp_path / f"repo_{path.suffix[1:]}")
        assert result.record["verification"]["passed"] is True
        assert result.record["source"]["file_format"] == "hdf5 (Keras 2)"


def test_hdf5_weights_only_and_tflite_are_named(tmp_path: Path) -> None:
    model = keras_models.sequential_mlp()
    weights = tmp_path / "mlp.weights.h5"
    model.save_weights(weights)
    with pytest.raises(SourceError, match=r"HDF5 file without a Keras model.*save_weights"):
        build(weights, name="w", output=tmp_path / "repo")
    lite = tmp_path / "m.tflite"
    lite.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    with pytest.raises(SourceError, match=r"TensorFlow Lite model.*tf2onnx.convert --tflite"):
        build(lite, name="l", output=tmp_path / "repo")
    assert not (tmp_path / "repo").exists()
