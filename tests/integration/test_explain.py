"""explain through the real embedded tritonserver: served and in-process attributions agree.

One repository, one server for the module:
- ``affine``: y = x @ W + b (tests/support/onnx_models.affine_onnx): attributions must be
  W[:, t] * (x - baseline), served (HTTP and gRPC) and in-process (ONNX Runtime) alike;
- ``mlp``: a nonlinear 16 -> 32 -> 3 MLP: sampled KernelSHAP (16 features), same seed, same
  answer served and in-process, sent in requests of the model's max_batch_size;
- ``image``: a linear model of a 12 x 12 image: the 4 x 4-patch heatmap is the per-patch sum
  of weight x input;
- ``sentiment``: the Hugging Face text pipeline (tokenizer step -> BERT classifier): words
  attributed through the server equal those of the same model run by torch in this process;
- the command line: --json, --plot, --html, and clear errors without a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from packager.builder import BuildOptions, build
from packager.cli import main
from packager.client import Client
from packager.explain import explain
from packager.serve.server import LocalServer
from packager.sources.verify import onnx_runner
from tests.conftest import StartServer
from tests.support.onnx_models import affine_onnx, mlp_onnx

pytestmark = pytest.mark.integration

TEXT = "The weather is lovely today."
MAX_BATCH = 32  # the builder's default max_batch_size


def image_onnx(path: Path) -> Path:
    """scores = flatten(image [batch, 12, 12]) @ W: two linear scores of a gray image."""
    w = np.random.default_rng(1).normal(size=(144, 2)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["scores"]),
        ],
        "image_linear",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 12, 12])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def weights(path: Path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("explain")
    return {
        "affine": affine_onnx(root / "affine.onnx"),
        "mlp": mlp_onnx(root / "mlp.onnx", sizes=(16, 32, 3)),
        "image": image_onnx(root / "image.onnx"),
        "root": root,
    }


def classifier_folder(target: Path) -> Path:
    """MiniLM's real encoder under a sequence-classification head of fixed random weights:
    words move its probabilities (a fully random tiny BERT barely notices them: 1e-5)."""
    import shutil

    import torch
    from transformers import BertForSequenceClassification

    from tests.support import hf_models

    labels = hf_models.LABELS
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(
        str(hf_models.minilm_folder()),
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    with torch.no_grad():
        model.classifier.weight.mul_(20)  # logits of a few units, not hundredths
    model.eval().save_pretrained(str(target))
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copyfile(hf_models.minilm_folder() / name, target / name)
    return target


@pytest.fixture(scope="module")
def server(start_server: StartServer, files: dict[str, Path]) -> LocalServer:
    repo = files["root"] / "repo"
    for name in ("affine", "mlp", "image"):
        build(files[name], name=name, output=repo)
    build(
        classifier_folder(files["root"] / "clf"), BuildOptions("sentiment", output=repo, text=True)
    )
    return start_server(repo)


def url(server: LocalServer, protocol: str) -> str:
    return server.http_url if protocol == "http" else f"grpc://{server.grpc_url}"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("method", ["occlusion", "kernelshap"])
def test_linear_model_served_and_in_process_give_weight_times_difference(
    server: LocalServer, files: dict[str, Path], protocol: str, method: str
) -> None:
    x = np.array([0.5, -1.0, 2.0, 0.25], np.float32)
    base = np.array([0.1, 0.2, -0.3, 0.4], np.float32)
    with Client(url(server, protocol)) as client:
        served = explain(client, "affine", {"x": x}, method=method, baseline=base)
    local = explain(onnx_runner(files["affine"]), "affine", {"x": x}, method=method, baseline=base)
    w = weights(files["affine"])["W"].astype(np.float64)
    t = served.target
    assert t == local.target == int(np.argmax(x @ w + weights(files["affine"])["b"]))
    expected = w[:, t] * (x.astype(np.float64) - base)
    np.testing.assert_allclose(served.attributions, local.attributions, atol=1e-5)
    np.testing.assert_allclose(served.attributions, expected, atol=1e-5)
    assert abs(served.additivity_gap) < 1e-5
    assert served.source.startswith(protocol) and local.source == "in-process"


def test_mlp_sampled_kernelshap_agrees_and_is_batched(
    server: LocalServer, files: dict[str, Path]
) -> None:
    x = np.random.default_rng(2).normal(size=16).astype(np.float32)
    kw = {"method": "kernelshap", "samples": 300, "seed": 5, "target": 1}
    with Client(server.http_url) as client:
        served = explain(client, "mlp", {"input": x[None]}, batch_size=64, **kw)  # batch of one
    local = explain(onnx_runner(files["mlp"]), "mlp", {"input": x}, batch_size=64, **kw)
    assert not served.exact and served.evaluations == 302 == local.evaluations
    assert served.batch_size == MAX_BATCH and served.requests == -(-302 // MAX_BATCH)
    assert local.requests == -(-302 // 64)
    np.testing.assert_allclose(served.attributions, local.attributions, atol=1e-5)
    assert abs(served.additivity_gap) < 1e-5
    assert served.prediction == pytest.approx(local.prediction, abs=1e-6)


def test_image_heatmap_is_the_patch_grid(server: LocalServer, files: dict[str, Path]) -> None:
    img = np.random.default_rng(3).normal(size=(12, 12)).astype(np.float32)
    with Client(f"grpc://{server.grpc_url}") as client:
        served = explain(client, "image", {"image": img}, patch=4, target=0)
    local = explain(onnx_runner(files["image"]), "image", {"image": img}, patch=4, target=0)
    w = weights(files["image"])["W"][:, 0].reshape(12, 12).astype(np.float64)
    per_pixel = w * img
    expected = per_pixel.reshape(3, 4, 3, 4).sum(axis=(1, 3))
    assert served.kind == "image" and served.heatmap().shape == (3, 3) and served.exact
    np.testing.assert_allclose(served.heatmap(), expected, atol=1e-4)
    np.testing.assert_allclose(served.attributions, local.attributions, atol=1e-5)


def in_process_sentiment(folder: Path):  # type: ignore[no-untyped-def]
    """The classifier run by torch in this process, one text at a time: PROBS as served."""
    import torch

    from packager.sources.huggingface import describe, hf_module, load_tokenizer

    info = describe(folder)
    module = hf_module(info)
    tok = load_tokenizer(info.tokenizer, info.max_length)  # type: ignore[arg-type]

    def predict(inputs):  # type: ignore[no-untyped-def]
        rows = []
        for text in inputs["TEXT"].reshape(-1):
            enc = tok.encode(text)
            with torch.no_grad():
                out = module(torch.tensor([enc.ids]), torch.tensor([enc.attention_mask]))
            logits = out["logits"].numpy()[0].astype(np.float64)
            e = np.exp(logits - logits.max())
            rows.append(e / e.sum())
        return {"PROBS": np.stack(rows)}

    return predict


@pytest.mark.parametrize("baseline", [None, "[MASK]"])
def test_text_pipeline_words_served_equal_in_process(
    server: LocalServer, files: dict[str, Path], baseline: str | None
) -> None:
    with Client(server.http_url) as client:
        served = explain(client, "sentiment", TEXT, output="PROBS", baseline=baseline)
    local = explain(
        in_process_sentiment(files["root"] / "clf"), "sentiment", TEXT, explain_input="TEXT",
        output="PROBS", baseline=baseline,
    )  # fmt: skip
    assert served.features == ["The", "weather", "is", "lovely", "today", "."]
    assert served.kind == "text" and served.exact and served.evaluations == 2**6
    assert served.target == local.target
    from tests.support.hf_models import LABELS

    # Issue 32: the class's name (the pipeline's LABEL output), not only PROBS[index].
    assert served.target_label == LABELS[served.target] and local.target_label is None
    assert f"sentiment: PROBS[{served.target_label}] explained by 6 text" in served.summary()
    print(f"text, baseline {baseline}: {np.round(served.attributions, 5)}")
    np.testing.assert_allclose(served.attributions, local.attributions, atol=1e-4)
    assert abs(served.additivity_gap) < 1e-6
    assert np.abs(served.attributions).max() > 0.01  # the words do move the output


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["explain", *args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def test_cli_json_plot_and_html(server: LocalServer, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.array([[0.5, -1.0, 2.0, 0.25]], np.float32))
    png = tmp_path / "why.png"
    code, out = cli(
        "affine", "--input-file", f"x={tmp_path / 'x.npy'}", "--url", server.http_url, "--json",
        "--method", "occlusion", "--plot", str(png),
    )  # fmt: skip
    assert code == 0, out
    doc = json.loads(out)
    assert doc["features"] == ["x[0]", "x[1]", "x[2]", "x[3]"] and doc["method"] == "occlusion"
    assert abs(sum(doc["attributions"]) - (doc["prediction"] - doc["base_value"])) < 1e-5
    assert png.stat().st_size > 2000 and png.read_bytes()[:4] == b"\x89PNG"
    code, out = cli(
        "affine", "--input-file", str(tmp_path / "x.npy"), "--url", server.grpc_url,
        "--protocol", "grpc", "--target", "0",
    )  # fmt: skip
    assert code == 0, out
    assert "affine: y[0] explained by 4 tabular feature(s)" in out and "x[2]" in out
    page = tmp_path / "words.html"
    code, out = cli(
        "sentiment", "--input-text", TEXT, "--select-output", "PROBS", "--url", server.http_url,
        "--html", str(page), "--plot", str(tmp_path / "words.png"),
    )  # fmt: skip
    assert code == 0, out
    assert "lovely</span>" in page.read_text() and (tmp_path / "words.png").stat().st_size > 2000
    assert f"wrote {page}" in out


def test_cli_errors_are_one_clear_line(server: LocalServer, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros(4, np.float32))
    np.save(tmp_path / "bad.npy", np.zeros(5, np.float32))
    base = ["--input-file", f"x={tmp_path / 'x.npy'}", "--url", server.http_url]
    cases = {
        ("nosuch", *base): "model 'nosuch' is not on the server at http://",
        ("affine", *base, "--select-output", "z"): "has no output 'z'; its outputs are: y",
        ("affine", *base, "--target", "3"): "target 3 is out of range: output 'y' has 3 value",
        ("affine", *base, "--baseline", str(tmp_path / "bad.npy")): "must have the input's shape",
        ("affine", *base, "--html", str(tmp_path / "a.html")): "--html renders text",
        ("sentiment", "--input-text", TEXT, "--url", server.http_url, "--select-output", "LABEL"): (
            "output 'LABEL' holds strings"
        ),
    }
    for args, message in cases.items():
        code, out = cli(*args)
        assert code != 0 and message in out, (args, out)
