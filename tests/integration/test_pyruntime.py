"""The generated Python-backend runtime, served by the real tritonserver, equals in-process runs.

One server for the whole module; every model is built by ``packager.build(..., backend="python")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto, helper
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from packager.builder import build
from packager.serve.server import LocalServer
from tests.support.polling import settled

pytestmark = pytest.mark.integration


class TwoArgs(torch.nn.Module):
    """Two inputs bound by forward()'s argument names, two outputs by index."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * 2.0 + y.sum(dim=1, keepdim=True), (x > 0).to(torch.int32)


def strings_onnx(path: Path) -> Path:
    """BYTES in, BYTES out: appends "!" to every string (ONNX StringConcat, opset 20)."""
    bang = helper.make_tensor("bang", TensorProto.STRING, [], [b"!"])
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["bang"], value=bang),
            helper.make_node("StringConcat", ["text", "bang"], ["shout"]),
        ],
        "strings",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["N", 2])],
        [helper.make_tensor_value_info("shout", TensorProto.STRING, ["N", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def runtime_repo(
    tmp_path_factory: pytest.TempPathFactory, model_files: dict[str, Path], external_onnx: Path
) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("pyruntime")
    repo = tmp / "repo"
    ts_two = tmp / "two_args.pt"
    torch.jit.script(TwoArgs()).save(str(ts_two))
    py: dict[str, Any] = {"output": repo, "backend": "python"}
    # A long queue delay lets concurrent requests meet in one execute() call.
    build(str(model_files["mlp"]), name="mlp", max_queue_delay_us=100_000, **py)
    build(str(model_files["fixed"]), name="fixed", max_batch_size=0, **py)
    build(str(model_files["two_io"]), name="two_io", **py)
    build(str(model_files["int64"]), name="embed", **py)
    build(str(external_onnx), name="external", **py)
    strings = strings_onnx(tmp / "strings.onnx")
    build(str(strings), name="strings", max_queue_delay_us=100_000, **py)
    build(str(model_files["torchscript"]), name="ts", input_specs=["INPUT__0:FP32:16"], **py)
    # Inputs listed in the opposite order of forward(x, y): the runtime binds them by name.
    build(str(ts_two), name="ts_two", input_specs=["y:FP32:3", "x:FP32:3"], **py)
    return {"repo": repo, "files": model_files, "external": external_onnx, "ts_two": ts_two}


@pytest.fixture(scope="module")
def server(start_server: Any, runtime_repo: dict[str, Any]) -> LocalServer:
    return start_server(runtime_repo["repo"])


@pytest.fixture(scope="module")
def clients(server: LocalServer) -> Any:
    http = httpclient.InferenceServerClient(server.http_url, concurrency=16)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    yield {"http": http, "grpc": grpc}
    http.close()
    grpc.close()


def infer(client: Any, model: str, inputs: dict[str, np.ndarray], version: str = "") -> dict:
    """One request with tritonclient; returns every output as numpy."""
    mod = httpclient if isinstance(client, httpclient.InferenceServerClient) else grpcclient
    tensors = []
    for name, value in inputs.items():
        t = mod.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
        t.set_data_from_numpy(value)
        tensors.append(t)
    result = client.infer(model, tensors, model_version=version)
    raw = result.get_response()
    outputs = raw["outputs"] if isinstance(raw, dict) else raw.outputs
    names = [o["name"] if isinstance(o, dict) else o.name for o in outputs]
    return {n: result.as_numpy(n) for n in names}


def ort_run(path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, inputs), strict=True))


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype, name
        np.testing.assert_array_equal(got[name], value, err_msg=name)


RNG = np.random.default_rng(7)
PROTOCOLS = ["http", "grpc"]


def test_all_models_ready(server: LocalServer) -> None:
    states = {(m.name, m.version): m.state for m in server.models()}
    assert states == {
        (name, "1"): "READY"
        for name in ("embed", "external", "fixed", "mlp", "strings", "ts", "ts_two", "two_io")
    }


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("model", "file", "inputs"),
    [
        ("mlp", "mlp", {"input": RNG.standard_normal((5, 16), dtype=np.float32)}),
        ("fixed", "fixed", {"input": RNG.standard_normal((1, 16), dtype=np.float32)}),
        (
            "two_io",
            "two_io",
            {
                "x": RNG.standard_normal((3, 8), dtype=np.float32),
                "y": RNG.standard_normal((3, 3), dtype=np.float32),
            },
        ),
        ("embed", "int64", {"ids": RNG.integers(0, 16, (4, 9), dtype=np.int64)}),
    ],
)
def test_onnx_equals_in_process(
    clients: dict[str, Any],
    runtime_repo: dict[str, Any],
    protocol: str,
    model: str,
    file: str,
    inputs: dict[str, np.ndarray],
) -> None:
    got = infer(clients[protocol], model, inputs)
    assert_same(got, ort_run(runtime_repo["files"][file], inputs))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_external_data_onnx(
    clients: dict[str, Any], runtime_repo: dict[str, Any], protocol: str
) -> None:
    x = RNG.standard_normal((2, 16), dtype=np.float32)
    assert_same(
        infer(clients[protocol], "external", {"input": x}),
        ort_run(runtime_repo["external"], {"input": x}),
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_torchscript_equals_in_process(
    clients: dict[str, Any], runtime_repo: dict[str, Any], protocol: str
) -> None:
    x = RNG.standard_normal((6, 16), dtype=np.float32)
    module = torch.jit.load(str(runtime_repo["files"]["torchscript"]))
    with torch.inference_mode():
        want = module(torch.from_numpy(x)).numpy()
    got = infer(clients[protocol], "ts", {"INPUT__0": x})
    assert list(got) == ["OUTPUT__0"]
    assert got["OUTPUT__0"].dtype == np.float32
    np.testing.assert_array_equal(got["OUTPUT__0"], want)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_torchscript_binds_inputs_by_argument_name(
    clients: dict[str, Any], runtime_repo: dict[str, Any], protocol: str
) -> None:
    x = RNG.standard_normal((4, 3), dtype=np.float32)
    y = RNG.standard_normal((4, 3), dtype=np.float32)
    module = torch.jit.load(str(runtime_repo["ts_two"]))
    a, b = module(torch.from_numpy(x), torch.from_numpy(y))
    got = infer(clients[protocol], "ts_two", {"y": y, "x": x})
    np.testing.assert_array_equal(got["OUTPUT__0"], a.numpy())
    assert got["OUTPUT__1"].dtype == np.int32
    np.testing.assert_array_equal(got["OUTPUT__1"], b.numpy())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bytes_tensors(clients: dict[str, Any], protocol: str) -> None:
    text = np.array([["héllo".encode(), b"a"], [b"", b"tri ton"]], dtype=object)
    got = infer(clients[protocol], "strings", {"text": text})
    assert got["shout"].dtype == np.object_
    assert got["shout"].tolist() == [["héllo!".encode(), b"a!"], [b"!", b"tri ton!"]]


def test_error_is_answered_per_request_and_model_keeps_serving(clients: dict[str, Any]) -> None:
    bad = np.array([[b"\xff\xfe", b"x"]], dtype=object)  # not UTF-8: ONNX Runtime cannot take it
    with pytest.raises(InferenceServerException, match="UnicodeDecodeError"):
        infer(clients["http"], "strings", {"text": bad})
    ok = infer(clients["http"], "strings", {"text": np.array([[b"a", b"b"]], dtype=object)})
    assert ok["shout"].tolist() == [[b"a!", b"b!"]]


def test_bad_request_does_not_fail_the_requests_batched_with_it(
    clients: dict[str, Any],
) -> None:
    http = clients["http"]
    pending = []
    for text in ([b"\xff\xfe", b"x"], [b"a", b"b"]):  # the first is not UTF-8
        value = np.array([text], dtype=object)
        t = httpclient.InferInput("text", list(value.shape), "BYTES")
        t.set_data_from_numpy(value)
        pending.append(http.async_infer("strings", [t]))  # met in one execute() by the delay
    bad, good = pending
    with pytest.raises(InferenceServerException, match="UnicodeDecodeError"):
        bad.get_result()
    assert good.get_result().as_numpy("shout").tolist() == [[b"a!", b"b!"]]


def test_requested_outputs_only(clients: dict[str, Any]) -> None:
    x = RNG.standard_normal((2, 8), dtype=np.float32)
    y = RNG.standard_normal((2, 3), dtype=np.float32)
    tensors = []
    for name, value in (("x", x), ("y", y)):
        t = httpclient.InferInput(name, list(value.shape), "FP32")
        t.set_data_from_numpy(value)
        tensors.append(t)
    result = clients["http"].infer(
        "two_io", tensors, outputs=[httpclient.InferRequestedOutput("total")]
    )
    assert [o["name"] for o in result.get_response()["outputs"]] == ["total"]


def test_dynamic_batch_runs_once_and_splits_back(
    clients: dict[str, Any], runtime_repo: dict[str, Any]
) -> None:
    http = clients["http"]
    before = _stats(http, "mlp")
    sizes = [1, 3, 2, 1, 4, 2, 1, 2]
    xs = [RNG.standard_normal((n, 16), dtype=np.float32) for n in sizes]
    pending = []
    for x in xs:  # async_infer: the HTTP client's own pool sends them concurrently
        t = httpclient.InferInput("input", list(x.shape), "FP32")
        t.set_data_from_numpy(x)
        pending.append(http.async_infer("mlp", [t]))
    for x, request in zip(xs, pending, strict=True):
        got = {"output": request.get_result().as_numpy("output")}
        assert_same(got, ort_run(runtime_repo["files"]["mlp"], {"input": x}))
    after = settled(
        lambda: _stats(http, "mlp"),
        lambda s: s["inference_count"] - before["inference_count"] >= sum(sizes),
    )
    requests = after["inference_count"] - before["inference_count"]
    runs = after["execution_count"] - before["execution_count"]
    assert requests == sum(sizes)
    # A 100 ms queue delay gathers the concurrent requests: fewer model runs than requests.
    assert runs < len(sizes)


def _stats(client: httpclient.InferenceServerClient, model: str) -> dict[str, int]:
    stats = client.get_inference_statistics(model)["model_stats"][0]
    return {k: int(stats[k]) for k in ("inference_count", "execution_count")}
