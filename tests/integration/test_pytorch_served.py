"""PyTorch modules built with ``packager.build`` (ONNX and TorchScript), served by the real
embedded tritonserver, answer tritonclient requests like the source module does.

The embedded server has only the Python backend: :class:`packager.serve.server.LocalServer` serves
these native-platform repositories through the generated Python runtime (its "shadow").
One server for the whole module.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import np_to_triton_dtype

from packager.builder import build
from packager.serve.server import LocalServer
from tests.support.torch_models import (
    MLP,
    Scaled,
    SmallCNN,
    TextClassifier,
    TwoInTwoOut,
    text_inputs,
)

pytestmark = pytest.mark.integration

RNG = np.random.default_rng(11)


def _features(batch: int) -> dict[str, np.ndarray]:
    return {
        "features": RNG.standard_normal((batch, 6)).astype(np.float32),
        "category": RNG.integers(0, 10, size=(batch, 2)).astype(np.int64),
    }


# name -> (module factory, build options, fresh request inputs: other batch / sequence sizes)
MODELS: dict[str, tuple[Any, dict[str, Any], Any]] = {
    "mlp": (MLP, {"input_specs": ["x:FP32:16"]}, lambda: {"x": RNG.standard_normal((3, 16)).astype(np.float32)}),
    "cnn": (SmallCNN, {"input_specs": ["image:FP32:3,16,16"]},
            lambda: {"image": RNG.standard_normal((5, 3, 16, 16)).astype(np.float32)}),
    "text": (TextClassifier, {"example_inputs": text_inputs(2, 7), "dynamic_axes": {"input_ids": [1], "attention_mask": [1]}},
             lambda: text_inputs(3, 11)),
    "two": (TwoInTwoOut, {"example_inputs": _features(2)}, lambda: _features(4)),
}  # fmt: skip
FORMATS = {"onnx": "onnx", "ts": "torchscript"}
CASES = [(m, f) for m in MODELS for f in FORMATS]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, start_server: Any) -> Iterator[dict[str, Any]]:
    repo = tmp_path_factory.mktemp("pytorch_served") / "repo"
    modules: dict[str, torch.nn.Module] = {}
    for name, (factory, options, _) in MODELS.items():
        torch.manual_seed(0)
        modules[name] = factory().eval()
        for suffix, fmt in FORMATS.items():
            build(
                modules[name],
                name=f"{name}_{suffix}",
                output=repo,
                format=fmt,
                max_batch_size=8,
                **options,
            )
    # A per-sample scalar input (``t:FP32:`` = rank 0 per sample): dims [1] + reshape [].
    modules["scaled"] = Scaled().eval()
    for suffix, fmt in FORMATS.items():
        build(
            modules["scaled"],
            name=f"scaled_{suffix}",
            output=repo,
            format=fmt,
            max_batch_size=8,
            input_specs=["x:FP32:4", "t:FP32:"],
        )
    server = start_server(repo)
    http = httpclient.InferenceServerClient(server.http_url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    yield {"server": server, "modules": modules, "http": http, "grpc": grpc}
    http.close()
    grpc.close()
    server.stop()


def _infer(client: Any, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    mod = httpclient if isinstance(client, httpclient.InferenceServerClient) else grpcclient
    tensors = []
    for name, value in inputs.items():
        t = mod.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
        t.set_data_from_numpy(value)
        tensors.append(t)
    meta = client.get_model_metadata(model)
    names = (
        [o["name"] for o in meta["outputs"]]
        if isinstance(meta, dict)
        else [o.name for o in meta.outputs]
    )
    result = client.infer(model, tensors)
    return {n: result.as_numpy(n) for n in names}


def _source(module: torch.nn.Module, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    outs = list(out.values()) if isinstance(out, dict) else [out]
    return [o.numpy() for o in outs]


def test_every_model_is_ready(served: dict[str, Any]) -> None:
    server: LocalServer = served["server"]
    states = {m.name: m.state for m in server.models()}
    names = [*MODELS, "scaled"]
    assert states == {f"{m}_{s}": "READY" for m, s in ((m, s) for m in names for s in FORMATS)}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize(("model", "suffix"), CASES, ids=[f"{m}-{s}" for m, s in CASES])
def test_served_outputs_match_source_module(
    served: dict[str, Any], model: str, suffix: str, protocol: str
) -> None:
    inputs = MODELS[model][2]()
    got = _infer(served[protocol], f"{model}_{suffix}", inputs)
    expected = _source(served["modules"][model], inputs)
    assert len(got) == len(expected)
    for (name, value), want in zip(got.items(), expected, strict=True):
        assert value.shape == want.shape, name
        np.testing.assert_allclose(value, want, atol=1e-4, rtol=1e-3, err_msg=name)


@pytest.mark.parametrize("suffix", list(FORMATS))
def test_a_per_sample_scalar_input_is_dims_1_with_reshape(
    served: dict[str, Any], suffix: str
) -> None:
    http = served["http"]
    config = http.get_model_config(f"scaled_{suffix}")
    t = next(i for i in config["input"] if i["name"] == "t")
    assert t["dims"] == [1] and t["reshape"] == {"shape": []}
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    t_values = RNG.standard_normal(5).astype(np.float32)
    # The client sends [5, 1] (Triton's dims); the module sees [5], as it was written for.
    got = _infer(http, f"scaled_{suffix}", {"x": x, "t": t_values[:, None]})
    (want,) = _source(served["modules"]["scaled"], {"x": x, "t": t_values})
    (value,) = got.values()
    np.testing.assert_allclose(value, want, atol=1e-5, rtol=1e-4)


def test_served_names_follow_each_format(served: dict[str, Any]) -> None:
    http = served["http"]
    onnx_meta = http.get_model_metadata("two_onnx")
    ts_meta = http.get_model_metadata("two_ts")
    assert [o["name"] for o in onnx_meta["outputs"]] == ["logits", "probs"]
    assert [o["name"] for o in ts_meta["outputs"]] == ["logits__0", "probs__1"]
    text_inputs_meta = {
        i["name"]: (i["datatype"], i["shape"]) for i in http.get_model_metadata("text_ts")["inputs"]
    }
    assert text_inputs_meta == {
        "input_ids": ("INT64", [-1, -1]),
        "attention_mask": ("BOOL", [-1, -1]),
    }


def test_build_record_holds_verification(served: dict[str, Any]) -> None:
    import json

    server: LocalServer = served["server"]
    record = json.loads((Path(server.repository) / "text_onnx/1/build.json").read_text())
    assert record["verification"]["passed"] is True
    assert {c["output"] for c in record["verification"]["checks"]} == {"output"}
