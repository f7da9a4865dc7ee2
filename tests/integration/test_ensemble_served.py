"""The committed example repository on the real embedded tritonserver: the ensemble answers equal
to running its three steps in this process (the user's functions and onnxruntime, called
directly), dynamic batches included; Python-step errors come back as request errors."""

import concurrent.futures
import importlib.util
import shutil
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.support.servers import native_ready

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TEXTS = [
    "The match went to extra time",
    "heavy rain and wind tomorrow",
    "parliament votes on the new budget",
    "a new phone with a faster chip",
    "",
    "ünïcode wörds are fine too",
]

pytestmark = pytest.mark.integration


def _module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _context() -> SimpleNamespace:
    """What the post-processing class reads from its StepContext, built by hand here."""
    labels = (EXAMPLES / "labels.txt").read_text().split()
    return SimpleNamespace(labels={"PROBS": labels}, parameters={"top_k": "2"})


def in_process(texts: list[str]) -> dict[str, np.ndarray]:
    """The pipeline without Triton: tokenizer function, onnxruntime, TopK class."""
    import onnxruntime as ort

    batch = np.array([[t.encode()] for t in texts], dtype=object)
    ids = _module(EXAMPLES / "steps" / "tokenizer.py").tokenize(batch)["INPUT_IDS"]
    session = ort.InferenceSession(str(EXAMPLES / "models" / "classifier.onnx"))
    (logits,) = session.run(["LOGITS"], {"INPUT_IDS": ids})
    post = _module(EXAMPLES / "steps" / "postprocess.py").TopK(_context())
    out = post(logits)
    return {
        "PROBS": out["PROBS"],
        "LABELS": np.vectorize(str.encode, otypes=[object])(out["LABELS"]),
    }


@pytest.fixture(scope="module")
def server(start_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    # A copy of the committed repository: serving writes __pycache__ next to model.py.
    repo = tmp_path_factory.mktemp("served") / "model_repository"
    shutil.copytree(ROOT / "model_repository", repo)
    return start_server(repo)


def infer(url: str, texts: list[str], class_count: int = 0) -> Any:
    import tritonclient.http as http

    client = http.InferenceServerClient(url)
    data = np.array([[t.encode()] for t in texts], dtype=object)
    text = http.InferInput("TEXT", list(data.shape), "BYTES")
    text.set_data_from_numpy(data)
    outputs = [
        http.InferRequestedOutput("LABELS"),
        http.InferRequestedOutput("PROBS", class_count=class_count),
    ]
    return client.infer("text_classifier", [text], outputs=outputs)


def test_all_models_of_the_example_are_ready(server: Any) -> None:
    ready = {m.name: m.state for m in server.models()}
    assert ready == {
        "classifier": "READY",
        "postprocess": "READY",
        "text_classifier": "READY",
        "tokenizer": "READY",
    }
    lines = server.native if native_ready("onnx") else server.shadowed
    assert lines and lines[0].startswith("classifier: onnxruntime_onnx")


def test_ensemble_equals_the_three_steps_in_process(server: Any) -> None:
    result = infer(server.http_url, TEXTS)
    expected = in_process(TEXTS)
    assert result.as_numpy("LABELS").tolist() == expected["LABELS"].tolist()
    np.testing.assert_allclose(result.as_numpy("PROBS"), expected["PROBS"], rtol=1e-6, atol=1e-7)
    assert result.as_numpy("PROBS").dtype == np.float32


def test_the_trained_example_answers_the_obvious_label(server: Any) -> None:
    # None of these sentences is in make_model.py's training corpus word for word.
    labels = infer(server.http_url, TEXTS[:4]).as_numpy("LABELS")[:, 0].tolist()
    assert labels == [b"sports", b"weather", b"politics", b"technology"]


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server: Any) -> None:
    import tritonclient.grpc as grpc

    expected = in_process(TEXTS)

    def one(i: int) -> tuple[int, list[list[bytes]]]:
        client = grpc.InferenceServerClient(server.grpc_url)
        data = np.array([[TEXTS[i % len(TEXTS)].encode()]], dtype=object)
        text = grpc.InferInput("TEXT", [1, 1], "BYTES")
        text.set_data_from_numpy(data)
        return i, client.infer("text_classifier", [text]).as_numpy("LABELS").tolist()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(24)))
    for i, labels in answers:
        assert labels == [expected["LABELS"][i % len(TEXTS)].tolist()]


def test_classification_extension_uses_the_labels_file(server: Any) -> None:
    result = infer(server.http_url, TEXTS[:2], class_count=2)
    expected = in_process(TEXTS[:2])
    top = result.as_numpy("PROBS")  # "score:index:label" strings, best first
    for row, want in zip(top.tolist(), expected["LABELS"].tolist(), strict=True):
        assert [entry.split(b":")[2] for entry in row] == want


def test_a_failing_step_answers_an_error_and_keeps_serving(server: Any) -> None:
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    client = http.InferenceServerClient(server.http_url)
    bad = http.InferInput("TEXT", [1, 1], "BYTES")
    bad.set_data_from_numpy(np.array([[b"\xff\xfe not utf-8"]], dtype=object))
    with pytest.raises(InferenceServerException, match="step 'tokenizer': UnicodeDecodeError"):
        client.infer("text_classifier", [bad])
    assert infer(server.http_url, TEXTS[:1]).as_numpy("LABELS").shape == (1, 2)
