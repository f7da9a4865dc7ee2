"""fp16 conversion of ONNX models: weights and compute in half precision.

The converter is ONNX Runtime's ``onnxruntime.transformers.float16`` (ONNX Runtime's maintained
copy of onnxconverter-common's float16 module), so no extra package is needed. By default the
model keeps fp32 inputs and outputs (a Cast at each end): clients and the Triton config do not
change and only the weights shrink. ``keep_io_types=False`` (``--fp16-io``) makes the inputs and
outputs FP16 too, which halves the bytes on the wire but changes the model's signature.

fp16 pays off on GPUs; ONNX Runtime's CPU provider runs many fp16 ops by casting back to fp32,
so on CPU it saves memory and disk, not time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from packager.errors import PackagerError

FP16_MAX = float(np.finfo(np.float16).max)  # 65504


def convert_fp16(src: Path | str, dst: Path | str, *, keep_io_types: bool = True) -> Path:
    """Write an fp16 copy of ONNX file ``src`` to ``dst``; returns ``dst``."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    floats = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    if not floats:
        raise PackagerError(
            f"{Path(src).name} has no fp32 weights to convert (already fp16 or quantized?); "
            "--fp16 applies to fp32 models"
        )
    try:
        converted = convert_float_to_float16(
            model,
            keep_io_types=keep_io_types,
            # Values beyond fp16's range are clamped (not turned into inf); tiny ones flushed.
            max_finite_val=FP16_MAX,
        )
    except Exception as exc:
        raise PackagerError(
            f"fp16 conversion of {Path(src).name} failed: {type(exc).__name__}: {exc}"
        ) from exc
    onnx.save(converted, str(dst))
    return Path(dst)


def out_of_range(src: Path | str) -> list[str]:
    """Names of fp32 weights with values beyond fp16's range (they will be clamped)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    return [
        t.name
        for t in model.graph.initializer
        if t.data_type == onnx.TensorProto.FLOAT
        and np.abs(numpy_helper.to_array(t)).max(initial=0.0) > FP16_MAX
    ]
