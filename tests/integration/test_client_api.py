"""Every public method of Client and AsyncClient, over HTTP and gRPC, on the real tritonserver.

One server for the module (explicit model control, all models loaded). Each test runs four
times: http-sync, http-async, grpc-sync, grpc-async (see tests/support/client_facade.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from packager.client import TensorMeta
from packager.client.core import Prepared
from packager.errors import (
    InferenceServerError,
    InferenceTimeout,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
)
from packager.releases import TRITON_VERSION
from packager.serve.server import LocalServer
from tests.support.client_facade import MODES, client_for
from tests.support.client_models import mlp_reference, write_repository
from tests.support.polling import settled

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_repository(tmp_path_factory.mktemp("client") / "repo")


@pytest.fixture(scope="module")
def server(start_server: Any, repo: Path) -> LocalServer:
    # Forwarded headers arrive in the model as request parameters: the echo model shows them.
    return start_server(
        repo,
        model_control_mode="explicit",
        load_models=["*"],
        extra_args=["--http-header-forward-pattern=x-.*", "--grpc-header-forward-pattern=x-.*"],
    )


@pytest.fixture(scope="module", params=MODES)
def api(request: pytest.FixtureRequest, server: LocalServer) -> Iterator[Any]:
    with client_for(request.param, server.http_url, server.grpc_url, timeout_s=30) as client:
        yield client


def test_health_and_repository(api: Any) -> None:
    assert api.is_live() and api.is_ready()
    assert api.is_ready("mlp") and api.is_ready("versioned", version=1)
    assert not api.is_ready("nope")
    api.wait_until_ready("mlp", timeout_s=10)
    api.wait_until_ready(timeout_s=10)
    states = {(m.name, m.version): m.state for m in api.models()}
    assert states[("mlp", "1")] == "READY"
    assert states[("versioned", "1")] == states[("versioned", "2")] == "READY"
    with pytest.raises(ModelNotFound, match=r"'nope' is not in the server's repository; models: "):
        api.wait_until_ready("nope", timeout_s=0.2)
    meta = api.server_metadata()
    assert (meta.name, meta.version) == ("triton", TRITON_VERSION)
    assert "model_repository" in meta.extensions


def test_metadata_config_and_statistics(api: Any) -> None:
    meta = api.metadata("mlp")
    assert meta.name == "mlp" and meta.versions == ("1",)
    assert meta.inputs == (TensorMeta("input", "FP32", (-1, 16)),)
    assert meta.outputs == (TensorMeta("output", "FP32", (-1, 4)),)
    config = api.config("addsub")
    assert config.max_batch_size == 0 and [i.name for i in config.input] == ["INPUT0", "INPUT1"]
    config.max_batch_size = 99  # a copy: the cached facts keep the server's value
    assert api.config("addsub").max_batch_size == 0

    def count() -> int:
        (stats,) = api.statistics("addsub").model_stats
        return int(stats.inference_count)

    before = count()
    api.infer("addsub", {"INPUT0": np.ones(4, np.float32), "INPUT1": np.ones(4, np.float32)})
    # Triton counts a request just after answering it.
    assert settled(count, lambda n: n >= before + 1) == before + 1
    names = {s.name for s in api.statistics().model_stats}
    assert {"mlp", "addsub", "echo"} <= names


def test_infer_mlp_matches_onnx_runtime(api: Any, repo: Path) -> None:
    x = np.random.default_rng(1).standard_normal((5, 16)).astype(np.float32)
    expected = mlp_reference(repo, x)
    out = api.infer("mlp", {"input": x})
    assert list(out) == ["output"]
    np.testing.assert_allclose(out["output"], expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(api.infer("mlp", x)["output"], expected, rtol=1e-6, atol=1e-6)
    # A safe cast (float16 -> float32) and a plain list are converted before sending.
    half = x.astype(np.float16)
    np.testing.assert_allclose(
        api.infer("mlp", half)["output"], mlp_reference(repo, half.astype(np.float32)), rtol=1e-6
    )
    assert api.infer("mlp", x[:1].tolist())["output"].shape == (1, 4)


def test_infer_sample(api: Any, repo: Path) -> None:
    x0 = np.linspace(-1, 1, 16, dtype=np.float32)
    out = api.infer_sample("mlp", x0)
    assert out["output"].shape == (4,)
    np.testing.assert_allclose(out["output"], mlp_reference(repo, x0[None])[0], rtol=1e-6)
    # A model without batching takes the sample as it is.
    sums = api.infer_sample(
        "addsub", {"INPUT0": np.ones(4, np.float32), "INPUT1": np.ones(4, np.float32)}
    )
    assert sums["OUTPUT0"].tolist() == [2, 2, 2, 2]


def test_infer_batch_splits_and_keeps_order(api: Any, repo: Path) -> None:
    x = np.random.default_rng(2).standard_normal((1000, 16)).astype(np.float32)
    expected = mlp_reference(repo, x)
    out = api.infer_batch("mlp", x)  # max_batch_size 64: 16 requests, 4 in flight
    np.testing.assert_allclose(out["output"], expected, rtol=1e-6, atol=1e-6)
    out = api.infer_batch("mlp", {"input": x[:25]}, batch_size=10, concurrency=2)
    np.testing.assert_allclose(out["output"], expected[:25], rtol=1e-6, atol=1e-6)
    with pytest.raises(InvalidInput, match="does not batch"):
        api.infer_batch("addsub", {"INPUT0": np.ones(4), "INPUT1": np.ones(4)})


def test_multi_input_and_requested_outputs(api: Any) -> None:
    a = np.array([1, 2, 3, 4], np.float32)
    b = np.array([4, 3, 2, 1], np.float32)
    out = api.infer("addsub", {"INPUT0": a, "INPUT1": b})
    assert out["OUTPUT0"].tolist() == [5, 5, 5, 5] and out["OUTPUT1"].tolist() == [-3, -1, 1, 3]
    only = api.infer("addsub", {"INPUT0": a, "INPUT1": b}, outputs=["OUTPUT1"])
    assert list(only) == ["OUTPUT1"]
    with pytest.raises(InvalidInput, match="no output"):
        api.infer("addsub", {"INPUT0": a, "INPUT1": b}, outputs=["OUTPUT9"])
    with pytest.raises(InvalidInput, match=r"needs input\(s\) INPUT1; inputs are: INPUT0, INPUT1"):
        api.infer("addsub", {"INPUT0": a})


def test_bytes_parameters_headers_and_request_id(api: Any) -> None:
    texts = np.array([["héllo wörld", "nul\x00inside", ""]], dtype=object)
    out = api.infer(
        "echo",
        texts,
        parameters={"note": "hi", "n": 3},
        headers={"X-Trace": "abc"},
        request_id="req-7",
    )
    assert out["upper"].dtype == object and out["upper"].shape == (1, 3)
    # bytes.upper() in the model: ASCII letters change, the UTF-8 bytes of é and ö survive.
    assert out["upper"].tolist() == [["héllo wörld".encode().upper(), b"NUL\x00INSIDE", b""]]
    meta = json.loads(out["meta"].reshape(-1)[0])
    assert meta["id"] == "req-7"
    params = {k.lower(): v for k, v in meta["parameters"].items()}
    assert params["note"] == "hi" and params["n"] == 3 and params["x-trace"] == "abc"
    # numpy fixed-width strings and bytes go through too.
    assert api.infer("echo", np.array([["ab", "c"]]))["upper"].tolist() == [[b"AB", b"C"]]
    assert api.infer_sample("echo", [b"x"])["upper"].tolist() == [b"X"]


def test_versions(api: Any) -> None:
    x = np.zeros((1, 2), np.float32)
    assert api.infer("versioned", x, version=1)["y"].tolist() == [[1, 1]]
    assert api.infer("versioned", x, version="2")["y"].tolist() == [[2, 2]]
    assert api.infer("versioned", x)["y"].tolist() == [[2, 2]]  # latest
    assert api.metadata("versioned").versions == ("1", "2")
    assert api.metadata("versioned", version=1).versions == ("1",)
    with pytest.raises(ModelNotFound, match="version 3 is not found"):
        api.infer("versioned", x, version=3)
    with pytest.raises(InvalidInput, match="positive integer"):
        api.infer("versioned", x, version=0)


def test_priority(api: Any) -> None:
    x = np.ones((1, 16), np.float32)
    assert api.infer("mlp", x, priority=1)["output"].shape == (1, 4)


def test_inputs_checked_before_sending(api: Any) -> None:
    with pytest.raises(InvalidInput, match=r"got float64.*astype"):
        api.infer("mlp", np.ones((1, 16)))
    with pytest.raises(InvalidInput, match=r"batch size 65; the model takes 1 to 64"):
        api.infer("mlp", np.ones((65, 16), np.float32))
    with pytest.raises(InvalidInput, match="no input 'x'; inputs are: input"):
        api.infer("mlp", {"x": np.ones((1, 16), np.float32)})


def test_server_side_errors_are_mapped(api: Any) -> None:
    # Past the client's checks (sent as is): the server itself refuses the shape.
    bad = Prepared("INPUT0", "FP32", (3,), np.zeros(3, np.float32))
    good = Prepared("INPUT1", "FP32", (4,), np.zeros(4, np.float32))
    with pytest.raises(InvalidInput, match="INPUT0"):
        api._send(api._codec.infer("addsub", "", [bad, good]))
    with pytest.raises(InferenceServerError, match="echo was asked to fail"):
        api.infer("echo", np.array([["fail"]], dtype=object))
    with pytest.raises(ModelNotFound, match="'nope' is not found"):
        api.infer("nope", np.ones(1))


def test_slow_model_times_out_and_the_client_recovers(api: Any) -> None:
    # InferenceTimeout itself shows the call did not wait the model's 1 s (it would have
    # answered); no elapsed-time bound, which a busy machine can break.
    with pytest.raises(InferenceTimeout, match="timeout"):
        api.infer("slow", np.array([1.0], np.float32), timeout_s=0.3)
    out = api.infer("slow", np.array([0.0], np.float32), timeout_s=10)  # queued behind the 1 s
    assert out["slept"].tolist() == [0.0]


def test_unload_gives_model_not_ready_and_load_brings_it_back(api: Any) -> None:
    x = np.ones((1, 2), np.float32)
    assert api.infer("spare", x)["y"].tolist() == [[2, 2]]
    api.unload_model("spare")
    with pytest.raises(ModelNotReady, match="load it"):
        api.infer("spare", x)
    assert not api.is_ready("spare")
    with pytest.raises(ModelNotReady, match="'spare' is not ready after"):
        api.wait_until_ready("spare", timeout_s=0.3)
    api.load_model("spare")
    api.wait_until_ready("spare", timeout_s=30)
    assert api.infer("spare", x)["y"].tolist() == [[2, 2]]
    with pytest.raises(ModelNotFound, match="failed to poll from model repository"):
        api.load_model("not_in_repo")


def test_many_callers_share_one_client(api: Any, repo: Path) -> None:
    """Threads (Client) or tasks (AsyncClient) each get their own answers back."""
    xs = np.random.default_rng(3).standard_normal((8, 30, 1, 16)).astype(np.float32)
    expected = mlp_reference(repo, xs.reshape(-1, 16)).reshape(8, 30, 1, 4)
    results = np.zeros_like(expected)
    if getattr(api, "is_async", False):
        import asyncio

        async def all_calls() -> None:
            async def one(i: int, j: int) -> None:
                results[i, j] = (await api.client.infer("mlp", xs[i, j]))["output"]

            await asyncio.gather(*(one(i, j) for i in range(8) for j in range(30)))

        api.run(all_calls)
    else:
        errors: list[BaseException] = []

        def worker(i: int) -> None:
            try:
                for j in range(30):
                    results[i, j] = api.infer("mlp", xs[i, j])["output"]
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
    np.testing.assert_allclose(results, expected, rtol=1e-6, atol=1e-6)
