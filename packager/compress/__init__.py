"""Smaller models: int8 quantization and fp16 conversion of ONNX files, pruning of PyTorch modules.

Every step writes a new file (or prunes a copy of the module) and reports its figures before and
after (:class:`CompressionReport`); ``build --quantize/--fp16/--prune`` runs them through
:func:`compress_loaded` before anything is written to the repository.
"""

from __future__ import annotations

from packager.compress.fp16 import convert_fp16
from packager.compress.pipeline import CompressOptions, compress_loaded
from packager.compress.prune import PruneRequest, prune_module
from packager.compress.quantize import (
    QUANTIZE_MODES,
    check_inputs,
    load_calibration,
    quantize,
    quantize_dynamic,
    quantize_static,
)
from packager.compress.report import CompressionReport, Stage, onnx_stage

__all__ = [
    "QUANTIZE_MODES",
    "CompressOptions",
    "CompressionReport",
    "PruneRequest",
    "Stage",
    "check_inputs",
    "compress_loaded",
    "convert_fp16",
    "load_calibration",
    "onnx_stage",
    "prune_module",
    "quantize",
    "quantize_dynamic",
    "quantize_static",
]
