"""The target profile: one table per Triton release, agreeing with the vendored sources."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

from packager import releases as rel

ARCHIVE = Path(__file__).parents[2] / "third_party" / "triton-r24.10" / "sources.tar.gz"


def test_shorthands_are_the_target_profile() -> None:
    t = rel.TARGET
    assert rel.NGC_IMAGE == t.image == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert rel.NGC_VLLM_IMAGE == t.vllm_image == "nvcr.io/nvidia/tritonserver:24.10-vllm-python-py3"
    assert t.triton_version == rel.TRITON_VERSION and t.vllm == rel.VLLM_VERSION
    assert rel.TARGETS[t.release] is t
    assert t.describe() == "Triton 24.10 (ONNX Runtime 1.19, opset 21, IR 10)"
    assert t.to_dict()["image"] == t.image


def test_vendored_sources_are_the_targets_release() -> None:
    t = rel.TARGET
    assert ARCHIVE.parent.name == f"triton-{t.source_branch}"
    with tarfile.open(ARCHIVE) as tar:
        header = tar.extractfile("onnxruntime_c_api.h")
        assert header is not None
        text = header.read().decode()
    api = int(re.search(r"#define ORT_API_VERSION (\d+)", text).group(1))  # type: ignore[union-attr]
    # The backend asks for the C API of its ONNX Runtime: 19 <-> 1.19.
    assert api == t.onnxruntime_c_api == int(t.onnxruntime.split(".")[1])


def test_python_backend_runtime_pin_is_the_targets_onnxruntime() -> None:
    assert rel.PYTHON_BACKEND_RUNTIMES["onnx"] == (f"onnxruntime-gpu=={rel.TARGET.onnxruntime}",)
