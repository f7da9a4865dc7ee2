"""The client's pure core: URLs, input checks and casts, BYTES layout, batch split/reassembly."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format
from hypothesis import given
from hypothesis import strategies as st
from tritonclient.grpc import model_config_pb2

from packager.client.base import add_batch_dim, strip_batch_dim, version_text
from packager.client.core import (
    ModelMetadata,
    RetryPolicy,
    TensorMeta,
    concat_outputs,
    deserialize_bytes,
    facts_from,
    parse_url,
    prepare_inputs,
    serialize_bytes,
    split_batches,
)
from packager.errors import InvalidInput


def make_facts(config_text: str, metadata: ModelMetadata | None = None):
    config = text_format.Parse(config_text, model_config_pb2.ModelConfig())
    if metadata is None:
        batch = (-1,) if config.max_batch_size else ()

        def meta(t, dt):
            return TensorMeta(t.name, dt, batch + tuple(t.dims))

        metadata = ModelMetadata(
            config.name,
            ("1",),
            "python",
            tuple(meta(t, model_config_pb2.DataType.Name(t.data_type)[5:]) for t in config.input),
            tuple(meta(t, model_config_pb2.DataType.Name(t.data_type)[5:]) for t in config.output),
        )
    return facts_from(metadata, config, "")


MLP = make_facts("""
name: "mlp" max_batch_size: 8
input { name: "input" data_type: TYPE_FP32 dims: [ 16 ] }
output { name: "output" data_type: TYPE_FP32 dims: [ 4 ] }
""")
TWO = make_facts("""
name: "two" max_batch_size: 0
input { name: "a" data_type: TYPE_INT64 dims: [ -1, 3 ] }
input { name: "b" data_type: TYPE_FP64 dims: [ 2 ] optional: true }
output { name: "c" data_type: TYPE_FP32 dims: [ 1 ] }
""")
TEXT = make_facts("""
name: "text" max_batch_size: 4
input { name: "s" data_type: TYPE_STRING dims: [ -1 ] }
output { name: "t" data_type: TYPE_STRING dims: [ -1 ] }
""")


# -- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "protocol", "expected"),
    [
        ("localhost:8000", None, ("http", "localhost", 8000, "", False)),
        ("localhost", None, ("http", "localhost", 8000, "", False)),
        ("http://h:9/prefix/", None, ("http", "h", 9, "/prefix", False)),
        ("https://h", None, ("http", "h", 8000, "", True)),
        ("grpc://h:8001", None, ("grpc", "h", 8001, "", False)),
        ("grpcs://h", None, ("grpc", "h", 8001, "", True)),
        ("h:7", "grpc", ("grpc", "h", 7, "", False)),
        ("[::1]:8000", None, ("http", "::1", 8000, "", False)),
    ],
)
def test_parse_url(url: str, protocol: str | None, expected: tuple) -> None:
    e = parse_url(url, protocol)
    assert (e.protocol, e.host, e.port, e.base_path, e.tls) == expected


def test_parse_url_round_trips_through_str() -> None:
    for url in ("http://h:1", "https://h:2/p", "grpc://h:3", "grpcs://[::1]:4"):
        assert str(parse_url(url)) == url


@pytest.mark.parametrize(
    ("url", "protocol", "message"),
    [
        ("ftp://h", None, "unsupported URL scheme"),
        ("grpc://h:1", "http", "is grpc but protocol 'http'"),
        ("h:1", "soap", "protocol must be"),
        ("http://h:99999", None, "bad port"),
        ("grpc://h:1/x", None, "gRPC URLs take no path"),
    ],
)
def test_parse_url_errors(url: str, protocol: str | None, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_url(url, protocol)


def test_version_text() -> None:
    assert version_text("") == "" and version_text(None) == ""
    assert version_text(2) == "2" and version_text(" 3 ") == "3"
    for bad in (0, -1, "latest", "1.5"):
        with pytest.raises(InvalidInput, match="positive integer"):
            version_text(bad)


def test_retry_delay_is_exponential_and_capped() -> None:
    policy = RetryPolicy(retries=5, backoff_s=0.1, max_backoff_s=0.3)
    assert [policy.delay(i) for i in range(4)] == [0.1, 0.2, 0.3, 0.3]


# -- facts ------------------------------------------------------------------------------------


def test_facts_come_from_config_dims_and_metadata() -> None:
    assert MLP.max_batch_size == 8
    assert MLP.inputs["input"].dims == (16,)
    assert MLP.inputs["input"].dtype.wire == "FP32"
    assert TWO.required == ["a"]
    assert TEXT.inputs["s"].dtype.wire == "BYTES"  # TYPE_STRING in the config


# -- input checks -----------------------------------------------------------------------------


def test_one_array_for_a_one_input_model_is_not_copied() -> None:
    x = np.zeros((2, 16), np.float32)
    (p,) = prepare_inputs(MLP, x)
    assert (p.name, p.wire, p.shape) == ("input", "FP32", (2, 16))
    assert p.data is x


def test_positional_array_needs_a_one_input_model() -> None:
    with pytest.raises(InvalidInput, match=r"has 2 inputs \(a, b\); pass a dict"):
        prepare_inputs(TWO, np.zeros((1, 3), np.int64))


def test_unknown_input_lists_the_model_inputs() -> None:
    with pytest.raises(InvalidInput, match=r"no input 'x'; inputs are: a, b"):
        prepare_inputs(TWO, {"x": np.zeros(3)})


def test_missing_required_input_is_named_but_optional_may_be_left_out() -> None:
    with pytest.raises(InvalidInput, match="needs input"):
        prepare_inputs(TWO, {"b": np.zeros(2)})
    assert [p.name for p in prepare_inputs(TWO, {"a": np.zeros((5, 3), np.int64)})] == ["a"]


def test_safe_casts_only() -> None:
    (p,) = prepare_inputs(TWO, {"a": np.ones((1, 3), np.int32)})
    assert p.data.dtype == np.int64 and p.wire == "INT64"
    (p,) = prepare_inputs(MLP, np.ones((1, 16), np.float16))
    assert p.data.dtype == np.float32
    with pytest.raises(InvalidInput, match=r"FP32 \(float32\); got float64.*astype\(np.float32\)"):
        prepare_inputs(MLP, np.ones((1, 16)))
    with pytest.raises(InvalidInput, match="got float32"):
        prepare_inputs(TWO, {"a": np.ones((1, 3), np.float32)})
    with pytest.raises(InvalidInput, match="got strings"):
        prepare_inputs(MLP, np.full((1, 16), "x"))


def test_python_lists_take_the_model_dtype() -> None:
    (p,) = prepare_inputs(MLP, [[0.5] * 16])
    assert p.data.dtype == np.float32 and p.shape == (1, 16)
    with pytest.raises(InvalidInput, match="could not be read as FP32"):
        prepare_inputs(MLP, [["a"] * 16])


def test_non_contiguous_input_is_made_contiguous() -> None:
    x = np.zeros((16, 2), np.float32).T
    (p,) = prepare_inputs(MLP, x)
    assert p.data.flags.c_contiguous and np.array_equal(p.data, x)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((16,), r"takes shape \[batch, 16\] \(batch up to 8\); got \[16\].*infer_sample"),
        ((9, 16), r"batch size 9; the model takes 1 to 8. Use infer_batch"),
        ((0, 16), "batch size 0"),
        ((2, 15), r"takes shape \[batch, 16\]; got \[2, 15\]"),
    ],
)
def test_shape_errors_on_a_batching_model(shape: tuple, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        prepare_inputs(MLP, np.zeros(shape, np.float32))


def test_shape_of_a_model_without_batching_and_variable_dims() -> None:
    prepare_inputs(TWO, {"a": np.zeros((7, 3), np.int64)})  # -1 takes any size
    with pytest.raises(InvalidInput, match=r"takes shape \[-1, 3\] \(the model does not batch\)"):
        prepare_inputs(TWO, {"a": np.zeros((1, 7, 3), np.int64)})


def test_bytes_inputs_accept_str_bytes_and_numpy_strings() -> None:
    for value in (
        np.array([["a", "é"]], dtype=object),
        np.array([[b"a", "é".encode()]], dtype=object),
        np.array([["a", "é"]]),
        [["a", "é"]],
    ):
        (p,) = prepare_inputs(TEXT, value)
        assert p.wire == "BYTES" and p.shape == (1, 2)
        assert p.data == b"\x01\x00\x00\x00a\x02\x00\x00\x00\xc3\xa9"
    with pytest.raises(InvalidInput, match="holds a int"):
        prepare_inputs(TEXT, np.array([[1, 2]], dtype=object))
    with pytest.raises(InvalidInput, match="is BYTES"):
        prepare_inputs(TEXT, np.zeros((1, 2)))


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=12))
def test_bytes_round_trip_keeps_every_byte(items: list[bytes]) -> None:
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    back = deserialize_bytes(serialize_bytes(arr), (len(items),))
    assert list(back) == items  # NULs and trailing bytes survive: no fixed-width truncation


# -- batches ----------------------------------------------------------------------------------


def test_split_batches_views_in_order_and_concat() -> None:
    x = np.arange(20 * 16, dtype=np.float32).reshape(20, 16)
    chunks, total = split_batches(MLP, x, None)
    assert total == 20 and [len(c["input"]) for c in chunks] == [8, 8, 4]
    assert all(np.shares_memory(c["input"], x) for c in chunks)  # views, not copies
    back = concat_outputs([{"o": c["input"] * 2} for c in chunks])
    assert np.array_equal(back["o"], x * 2)
    chunks, _ = split_batches(MLP, {"input": x}, 3)
    assert len(chunks) == 7


@pytest.mark.parametrize(
    ("facts", "inputs", "batch", "message"),
    [
        (TWO, {"a": np.zeros((2, 3))}, None, "does not batch"),
        (MLP, np.zeros((3, 16), np.float32), 9, "batch_size must be 1 to 8"),
        (MLP, np.zeros((0, 16), np.float32), None, "no samples"),
    ],
)
def test_split_batches_errors(facts, inputs, batch, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        split_batches(facts, inputs, batch)


def test_split_batches_needs_equal_leading_sizes() -> None:
    two = make_facts("""
    name: "p" max_batch_size: 4
    input { name: "a" data_type: TYPE_FP32 dims: [ 1 ] }
    input { name: "b" data_type: TYPE_FP32 dims: [ 1 ] }
    output { name: "c" data_type: TYPE_FP32 dims: [ 1 ] }
    """)
    with pytest.raises(InvalidInput, match="same leading"):
        split_batches(two, {"a": np.zeros((3, 1)), "b": np.zeros((2, 1))}, None)


def test_add_and_strip_batch_dim() -> None:
    batched = add_batch_dim(MLP, np.zeros(16, np.float32))
    assert batched["input"].shape == (1, 16)
    assert add_batch_dim(MLP, {"input": [0.0] * 16})["input"].dtype == np.float32
    assert strip_batch_dim(MLP, {"output": np.ones((1, 4))})["output"].shape == (4,)
    sample = {"a": np.zeros((2, 3), np.int64)}
    assert add_batch_dim(TWO, sample) is sample  # no batch dim on a model that does not batch


def test_tls_options_build_contexts_and_credentials(tmp_path) -> None:
    import ssl

    from packager.client.core import TLSOptions
    from packager.client.transport import grpc_channel_args, ssl_context_for

    ctx = ssl_context_for(TLSOptions(verify=False))
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname
    assert ssl_context_for(None).verify_mode == ssl.CERT_REQUIRED
    options, creds = grpc_channel_args(parse_url("grpc://h"), None)
    assert creds is None and ("grpc.max_receive_message_length", -1) in options
    _, creds = grpc_channel_args(parse_url("grpcs://h"), TLSOptions())
    assert creds is not None
    missing = str(tmp_path / "none.pem")
    with pytest.raises(InvalidInput, match=r"none\.pem cannot be read"):
        grpc_channel_args(parse_url("grpcs://h"), TLSOptions(ca_file=missing))
    with pytest.raises(InvalidInput, match="TLS files could not be loaded"):
        ssl_context_for(TLSOptions(ca_file=missing))
