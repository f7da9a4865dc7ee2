import numpy as np
import pytest

from packager import dtypes
from packager.errors import DTypeError


@pytest.mark.parametrize("d", dtypes.ALL, ids=lambda d: d.wire)
def test_every_type_round_trips_through_every_spelling(d: dtypes.DType) -> None:
    assert dtypes.parse(d.wire) is d
    assert dtypes.parse(d.config) is d
    assert dtypes.from_config(d.config) is d
    if d.onnx is not None:
        assert dtypes.from_onnx(d.onnx) is d
    if d.torch is not None:
        assert dtypes.from_torch(f"torch.{d.torch}") is d
    if d.wire not in ("BF16",):
        assert dtypes.from_numpy(d.numpy) is d


def test_torch_dtypes_exist_in_torch() -> None:
    import torch

    for d in dtypes.ALL:
        if d.torch is not None:
            assert dtypes.from_torch(getattr(torch, d.torch)) is d


def test_onnx_numbers_match_onnx() -> None:
    import onnx

    for d in dtypes.ALL:
        if d.onnx is not None:
            assert onnx.helper.tensor_dtype_to_np_dtype(d.onnx) == d.numpy or d.wire in (
                "BYTES",
                "BF16",
            )


def test_config_names_exist_in_tritons_schema() -> None:
    from tritonclient.grpc import model_config_pb2 as pb

    for d in dtypes.ALL:
        assert d.config in pb.DataType.keys()  # noqa: SIM118 - an EnumTypeWrapper, not a dict


def test_strings_map_to_bytes_and_aliases_parse() -> None:
    assert dtypes.from_numpy(np.array(["a"]).dtype).wire == "BYTES"
    assert dtypes.from_numpy(np.dtype("S3")).wire == "BYTES"
    assert dtypes.parse("float32").wire == "FP32"
    assert dtypes.parse("TYPE_STRING").wire == "BYTES"
    assert dtypes.parse("fp16").itemsize == 2


def test_unknown_types_name_the_choices() -> None:
    with pytest.raises(DTypeError, match="use one of: BOOL"):
        dtypes.parse("complex64")
    with pytest.raises(DTypeError, match="no Triton equivalent"):
        dtypes.from_numpy(np.complex64)
    with pytest.raises(DTypeError, match="not supported by Triton"):
        dtypes.from_onnx(14)  # COMPLEX64
