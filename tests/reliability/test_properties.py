"""Property tests: every valid spec renders to a config Triton's schema parses and that round-trips;
every invalid spec is rejected with a message naming the problem.

Hypothesis draws specs from the whole ModelSpec surface (names, every dtype, dynamic and huge dims,
instance groups, dynamic batching with queue policies, version policies, warmups, parameters, GPU
options). ``max_examples`` is bounded so the file runs in seconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from packager import dtypes
from packager.errors import SpecError
from packager.render import parse_config, render_config, spec_from_config
from packager.spec import (
    DynamicBatching,
    GpuOptimization,
    InstanceGroup,
    ModelSpec,
    QueuePolicy,
    TensorSpec,
    VersionPolicy,
    Warmup,
    WarmupInput,
    problems,
)

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
INT64_MAX = 2**63 - 1

_FIRST = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
model_names = st.builds(
    str.__add__, st.sampled_from(_FIRST), st.text(alphabet=_FIRST + ".-", max_size=30)
)
# Tensor names are not paths: Triton takes e.g. "input:0" or "x/y" from TF graphs, and unicode.
tensor_names = st.text(
    alphabet=st.characters(categories=("L", "N", "P", "S"), exclude_characters='"\\'),
    min_size=1,
    max_size=12,
)
dims = st.lists(
    st.one_of(st.just(-1), st.integers(1, 64), st.integers(1, INT64_MAX)), min_size=1, max_size=4
).map(tuple)
all_dtypes = st.sampled_from(dtypes.ALL)


@st.composite
def valid_specs(draw: Any) -> ModelSpec:
    """A ModelSpec with no problems, drawn across every field the renderer writes."""
    n_in, n_out = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    drawn = draw(st.lists(tensor_names, min_size=n_in + n_out, max_size=n_in + n_out))
    # Distinct names without a filter (filters make hypothesis retry): rename repeats.
    names: list[str] = []
    for n in drawn:
        while n in names:
            n += "_"
        names.append(n)
    inputs = tuple(
        TensorSpec(n, draw(all_dtypes), draw(dims), optional=draw(st.booleans()))
        for n in names[:n_in]
    )
    outputs = tuple(
        TensorSpec(
            n,
            draw(all_dtypes),
            draw(dims),
            label_filename=draw(st.none() | st.just("labels.txt")),
        )
        for n in names[n_in:]
    )
    runtime = draw(
        st.sampled_from([("onnxruntime_onnx", None), ("pytorch_libtorch", None), (None, "python")])
    )
    mbs = draw(st.integers(0, 1024))
    groups = tuple(
        draw(
            st.lists(
                st.one_of(
                    st.builds(
                        InstanceGroup,
                        st.sampled_from(["KIND_CPU", "KIND_AUTO", "KIND_MODEL"]),
                        st.integers(1, 8),
                        name=st.none() | model_names,
                    ),
                    st.builds(
                        InstanceGroup,
                        st.just("KIND_GPU"),
                        st.integers(1, 4),
                        st.lists(st.integers(0, 7), unique=True, max_size=3).map(tuple),
                    ),
                ),
                max_size=2,
            )
        )
    )
    db = None
    if mbs and draw(st.booleans()):
        # Triton refuses preserve ordering with more than one priority level.
        preserve_ordering = draw(st.booleans())
        levels = draw(st.integers(0, 1 if preserve_ordering else 5))
        db = DynamicBatching(
            tuple(draw(st.lists(st.integers(1, mbs), unique=True, max_size=3))),
            draw(st.integers(0, 100_000)),
            preserve_ordering,
            levels,
            draw(st.integers(1, levels)) if levels else 0,
            draw(
                st.none()
                | st.builds(
                    QueuePolicy,
                    # Triton refuses a DELAY timeout action with preserve ordering.
                    st.sampled_from(["REJECT"] if preserve_ordering else ["REJECT", "DELAY"]),
                    st.integers(0, 10**9),
                    st.booleans(),
                    st.integers(0, 10_000),
                )
            ),
        )
    policy = draw(
        st.none()
        | st.builds(VersionPolicy, st.just("latest"), st.integers(1, 10))
        | st.just(VersionPolicy("all"))
        | st.builds(
            lambda vs: VersionPolicy("specific", versions=tuple(vs)),
            st.lists(st.integers(1, 1000), min_size=1, max_size=3, unique=True),
        )
    )
    warmup: tuple[Warmup, ...] = ()
    if draw(st.booleans()):
        warmup = (
            Warmup(
                draw(model_names),
                draw(st.integers(1, mbs)) if mbs else 1,
                tuple(
                    WarmupInput(
                        t.name,
                        t.dtype,
                        tuple(d if d > 0 else 1 for d in t.dims),
                        data=draw(st.sampled_from(["random", "zero"])),
                        input_data_file=draw(st.none() | st.just(f"{i}.bin")),
                    )
                    for i, t in enumerate(inputs)
                ),
                draw(st.integers(1, 5)),
            ),
        )
    params = draw(st.dictionaries(tensor_names, st.text(max_size=20), max_size=3))
    gpu = None
    if runtime[0] == "onnxruntime_onnx" and draw(st.booleans()):
        gpu = GpuOptimization(
            draw(st.booleans()),
            draw(st.sampled_from(["FP16", "FP32"])),
            draw(st.integers(1, 1 << 34)),
            draw(st.booleans()),
        )
    return ModelSpec(
        name=draw(model_names),
        inputs=inputs,
        outputs=outputs,
        platform=runtime[0],
        backend=runtime[1],
        max_batch_size=mbs,
        instance_groups=groups,
        dynamic_batching=db,
        version_policy=policy,
        warmup=warmup,
        parameters=params,
        gpu_optimization=gpu,
        default_model_filename=draw(st.none() | st.just("model.bin")),
    )


def _normalized(spec: ModelSpec) -> ModelSpec:
    """What a round trip may legitimately drop: TensorRT options while TensorRT is off, and the
    random/zero choice of a warmup input that reads its data from a file."""
    go = spec.gpu_optimization
    if go is not None and not go.tensorrt:
        spec = spec.replace(gpu_optimization=GpuOptimization(cuda_graphs=go.cuda_graphs))
    warmup = tuple(
        w.__class__(
            w.name,
            w.batch_size,
            tuple(
                wi.__class__(wi.name, wi.dtype, wi.dims, "random", wi.input_data_file)
                if wi.input_data_file
                else wi
                for wi in w.inputs
            ),
            w.count,
        )
        for w in spec.warmup
    )
    return spec.replace(warmup=warmup)


@SETTINGS
@given(valid_specs())
def test_every_valid_spec_renders_parses_and_round_trips(spec: ModelSpec) -> None:
    assert problems(spec) == []
    text = render_config(spec)
    config = parse_config(text)  # Triton's own schema
    assert config.name == spec.name
    assert config.max_batch_size == spec.max_batch_size
    back = spec_from_config(config)
    assert back == _normalized(spec)
    # Rendering is a pure function of the spec: the round-tripped spec renders the same text.
    assert render_config(back) == text


# Each mutation breaks one rule; the needle is a word the problem message must contain.
MUTATIONS: dict[str, tuple[Any, str]] = {
    "path traversal name": (lambda s: s.replace(name="../" + s.name), "path separator"),
    "name with space": (lambda s: s.replace(name=s.name + " x"), "characters Triton rejects"),
    "empty name": (lambda s: s.replace(name=""), "empty"),
    "no runtime": (lambda s: s.replace(platform=None, backend=None), "exactly one"),
    "two runtimes": (
        lambda s: s.replace(platform="onnxruntime_onnx", backend="python"),
        "exactly one",
    ),
    "negative batch": (lambda s: s.replace(max_batch_size=-3), "max_batch_size"),
    "no outputs": (lambda s: s.replace(outputs=()), "no outputs"),
    "no inputs": (lambda s: s.replace(inputs=()), "no inputs"),
    "zero dim": (
        lambda s: s.replace(inputs=(TensorSpec(s.inputs[0].name, "FP32", (3, 0)), *s.inputs[1:])),
        "dim 0",
    ),
    "negative dim": (
        lambda s: s.replace(outputs=(TensorSpec(s.outputs[0].name, "FP32", (-7,)),)),
        "dim -7",
    ),
    "rank 0": (
        lambda s: s.replace(inputs=(TensorSpec(s.inputs[0].name, "FP32", ()), *s.inputs[1:])),
        "rank 0",
    ),
    "dim beyond int64": (
        lambda s: s.replace(inputs=(TensorSpec(s.inputs[0].name, "FP32", (2**63,)), *s.inputs[1:])),
        "dim",
    ),
    "duplicate tensor": (lambda s: s.replace(outputs=(*s.outputs, s.inputs[0])), "duplicate"),
    "bad kind": (lambda s: s.replace(instance_groups=(InstanceGroup("KIND_TPU"),)), "KIND_TPU"),
    "zero instances": (
        lambda s: s.replace(instance_groups=(InstanceGroup("KIND_CPU", 0),)),
        "count",
    ),
    "gpus on cpu": (
        lambda s: s.replace(instance_groups=(InstanceGroup("KIND_CPU", 1, (0,)),)),
        "only allowed with KIND_GPU",
    ),
    "batching without batch": (
        lambda s: s.replace(max_batch_size=0, dynamic_batching=DynamicBatching(), warmup=()),
        "max_batch_size > 0",
    ),
    "preferred above max": (
        lambda s: s.replace(max_batch_size=4, dynamic_batching=DynamicBatching((8,)), warmup=()),
        "preferred batch size 8",
    ),
    "latest 0": (lambda s: s.replace(version_policy=VersionPolicy("latest", 0)), "at least 1"),
    "specific 0": (
        lambda s: s.replace(version_policy=VersionPolicy("specific", versions=(0,))),
        "positive version",
    ),
    "quote in tensor name": (
        lambda s: s.replace(inputs=(TensorSpec('a"b', "FP32", (1,)), *s.inputs[1:])),
        "input name",
    ),
}


@SETTINGS
@given(valid_specs(), st.sampled_from(sorted(MUTATIONS)))
def test_every_invalid_spec_is_rejected_with_a_message(spec: ModelSpec, which: str) -> None:
    mutate, needle = MUTATIONS[which]
    bad = mutate(spec)
    found = problems(bad)
    assert found, which
    with pytest.raises(SpecError) as err:
        render_config(bad)
    assert err.value.problems == found
    assert needle in str(err.value), (which, str(err.value))


@SETTINGS
@given(valid_specs())
def test_no_spec_passes_the_checks_yet_fails_to_parse(spec: ModelSpec) -> None:
    """problems() is complete: whatever it accepts, Triton's schema parses."""
    # Push the numbers a user types (dims, max batch size) towards and past the protobuf limits.
    for big in (2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64):
        wide = spec.replace(
            inputs=(TensorSpec(spec.inputs[0].name, "FP32", (big,)), *spec.inputs[1:]),
            max_batch_size=big if spec.max_batch_size else 0,
            dynamic_batching=None,
            warmup=(),
        )
        if problems(wide):
            with pytest.raises(SpecError):
                render_config(wide)
        else:
            parse_config(render_config(wide))


# ---------------------------------------------------------------- client input validation

# Numpy dtypes a caller may hand over (object = Python strings/bytes).
ARRAY_DTYPES = [
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "object",
]  # fmt: skip


@st.composite
def requests(draw: Any) -> tuple[str, dict[str, Any]]:
    """A valid request for one of the served models, then 0 to 3 random mistakes: a wrong
    dtype, a dim off by one (or 0, or past the batch limit), an axis more or less, batch sizes
    that differ between inputs, a missing or unknown input, a plain Python list."""
    model = draw(st.sampled_from(["mlp", "addsub", "echo", "pair"]))
    b = draw(st.integers(1, 8))
    n = draw(st.integers(0, 3))
    valid: dict[str, tuple[str, tuple[int, ...]]] = {
        "mlp": {"input": ("float32", (b, 16))},
        "addsub": {"INPUT0": ("float32", (4,)), "INPUT1": ("float32", (4,))},
        "echo": {"text": ("object", (b, n))},
        "pair": {"a": ("float32", (b, 3)), "b": ("int64", (b, n))},
    }[model]
    specs = {k: [dtype, list(shape)] for k, (dtype, shape) in valid.items()}
    mistakes = draw(st.lists(st.integers(0, 5), max_size=3))
    for m in mistakes:
        name = draw(st.sampled_from(sorted(specs))) if specs else None
        if m == 0 and name:
            specs[name][0] = draw(st.sampled_from(ARRAY_DTYPES))
        elif m == 1 and name and specs[name][1]:
            axis = draw(st.integers(0, len(specs[name][1]) - 1))
            specs[name][1][axis] = max(0, specs[name][1][axis] + draw(st.sampled_from([-1, 1, 65])))
        elif m == 2 and name:
            if specs[name][1] and draw(st.booleans()):
                specs[name][1].pop()
            else:
                specs[name][1].append(draw(st.integers(1, 2)))
        elif m == 3 and len(specs) > 1:
            specs.pop(draw(st.sampled_from(sorted(specs))))
        elif m == 4:
            specs[draw(st.sampled_from(["x", "extra"]))] = ["float32", [b, 16]]
        elif m == 5 and name and specs[name][1]:
            specs[name][1][0] += 1  # another batch size than the other input(s)
    inputs: dict[str, Any] = {}
    as_list = draw(st.integers(0, 7)) == 0
    for name, (dtype, shape) in specs.items():
        if dtype == "object":
            arr = np.full(tuple(shape), b"tok", dtype=object)
        else:
            arr = (np.arange(int(np.prod(shape))) % 3).astype(dtype).reshape(shape)
        inputs[name] = arr.tolist() if as_list else arr
    return model, inputs


@pytest.fixture(scope="module")
def http_and_grpc(client_server: Any) -> Any:
    from packager.client import Client

    with (
        Client(client_server.http_url, timeout_s=30) as http,
        Client(f"grpc://{client_server.grpc_url}", timeout_s=30) as grpc,
    ):
        yield http, grpc


@pytest.mark.integration
@settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(requests())
def test_client_never_sends_a_request_the_server_rejects_for_shape_or_dtype(
    http_and_grpc: Any, case: tuple[str, dict[str, Any]]
) -> None:
    """Whatever the client's checks accept, the server runs; whatever they refuse is refused
    before sending, with InvalidInput (the server never sees it)."""
    from packager.client.core import prepare_inputs
    from packager.errors import InvalidInput

    model, inputs = case
    for client in http_and_grpc:
        facts = client._model_facts(model, "")
        try:
            prepare_inputs(facts, inputs)
        except InvalidInput:
            event(f"{model}: refused before sending")
            with pytest.raises(InvalidInput):
                client.infer(model, inputs)
            continue
        event(f"{model}: sent and served")
        outputs = client.infer(model, inputs)  # any ClientError here is a finding
        assert set(outputs) == set(facts.outputs)
