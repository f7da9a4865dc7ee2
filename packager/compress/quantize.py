"""int8 quantization of ONNX models with ONNX Runtime's quantization tools.

* dynamic int8: weights stored as int8, activations quantized at run time from their observed
  range (MatMulInteger / ConvInteger). No data needed; the usual choice for MLPs and transformers.
* static int8 (QDQ): weights *and* activations quantized with scales fixed ahead of time from
  calibration data (min/max of every activation over the samples). QuantizeLinear /
  DequantizeLinear pairs around each op keep the graph runnable by any ONNX Runtime build.

Both first run ONNX Runtime's quantization pre-processing (shape inference + graph
optimization such as folding BatchNorm into Conv), which makes the result more accurate.
Calibration data is checked against the model's inputs before anything runs, so a bad file
fails with a message that names the problem and nothing is written.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from packager.errors import PackagerError
from packager.sources import Signature

QUANTIZE_MODES = ("dynamic-int8", "static-int8")
CALIBRATION_BATCH = 32  # rows per calibration run; min/max does not depend on it


def quantize(
    src: Path | str,
    dst: Path | str,
    mode: str,
    *,
    calibration: Mapping[str, np.ndarray] | None = None,
    per_channel: bool = False,
) -> Path:
    """Quantize ONNX file ``src`` into ``dst`` (``mode`` is one of :data:`QUANTIZE_MODES`)."""
    if mode == "dynamic-int8":
        if calibration is not None:
            raise PackagerError(
                "--calibration-data is used by --quantize static-int8 only; "
                "dynamic int8 measures activation ranges at run time"
            )
        return quantize_dynamic(src, dst, per_channel=per_channel)
    if mode == "static-int8":
        if calibration is None:
            raise PackagerError(
                "--quantize static-int8 needs --calibration-data FILE.npz: a few hundred "
                "representative inputs, one array per model input, batch dim first"
            )
        return quantize_static(src, dst, calibration, per_channel=per_channel)
    raise PackagerError(f"unknown quantization {mode!r}; choose from: {', '.join(QUANTIZE_MODES)}")


def quantize_dynamic(src: Path | str, dst: Path | str, *, per_channel: bool = False) -> Path:
    """Weights to int8, activations quantized on the fly."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    dst = Path(dst)
    pre = _preprocess(Path(src), dst.with_name(dst.stem + ".pre.onnx"))
    with _ort_errors("dynamic int8 quantization"):
        ort_quantize_dynamic(pre, dst, per_channel=per_channel, weight_type=QuantType.QInt8)
    return dst


def quantize_static(
    src: Path | str,
    dst: Path | str,
    calibration: Mapping[str, np.ndarray],
    *,
    per_channel: bool = False,
) -> Path:
    """Weights and activations to int8 (QDQ format), ranges calibrated on ``calibration``.

    ``calibration`` must already be checked with :func:`check_inputs`.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
    )
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = _batches(calibration, CALIBRATION_BATCH)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    dst = Path(dst)
    pre = _preprocess(Path(src), dst.with_name(dst.stem + ".pre.onnx"))
    with _ort_errors("static int8 quantization"):
        ort_quantize_static(
            pre,
            dst,
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    return dst


def load_calibration(path: Path | str, signature: Signature) -> dict[str, np.ndarray]:
    """Read a calibration ``.npz`` and check it against the model's inputs (see below)."""
    from packager.sources.inputs import load_npz

    p = Path(path)
    if not p.is_file():
        raise PackagerError(f"calibration data file {p} does not exist")
    return check_inputs(load_npz(p), signature, f"calibration data {p}")


def check_inputs(
    data: Mapping[str, np.ndarray], signature: Signature, where: str = "calibration data"
) -> dict[str, np.ndarray]:
    """Every problem at once: input names, dims, dtypes, and one shared number of samples.

    Arrays carry the batch dim first when the model has one. A dtype that converts without loss
    (int32 data for an int64 input) is converted; anything else is refused, because quietly
    rounding float64 calibration data would calibrate on values the model never sees.
    """
    problems: list[str] = []
    want = {t.name: t for t in signature.inputs}
    missing = [n for n in want if n not in data]
    extra = [n for n in data if n not in want]
    if missing or extra:
        problems.append(
            f"arrays must be named after the model's inputs ({', '.join(want)}); "
            + "; ".join(
                part
                for part in (
                    f"missing: {', '.join(missing)}" if missing else "",
                    f"unknown: {', '.join(extra)}" if extra else "",
                )
                if part
            )
        )
    out: dict[str, np.ndarray] = {}
    rows: dict[str, int] = {}
    for name, spec in want.items():
        if name not in data:
            continue
        arr = np.asarray(data[name])
        expected = spec.dtype.numpy
        if arr.dtype != expected:
            if arr.dtype.kind in "biuf" and np.can_cast(arr.dtype, expected, "safe"):
                arr = arr.astype(expected)
            else:
                problems.append(
                    f"{name!r} is {arr.dtype} but the model takes {spec.dtype.wire} "
                    f"({expected}); save it as {expected} (e.g. arr.astype(np.{expected}))"
                )
                continue
        dims = spec.dims
        shape_ok = arr.ndim == len(dims) and all(
            d < 0 or d == s for d, s in zip(dims, arr.shape, strict=True)
        )
        if not shape_ok:
            problems.append(
                f"{name!r} has shape {list(arr.shape)} but the model takes {list(dims)} "
                "(-1 = any size; the first dim is the sample axis)"
            )
            continue
        if arr.size == 0:
            problems.append(f"{name!r} holds no samples")
            continue
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            problems.append(f"{name!r} contains NaN or infinite values")
            continue
        out[name] = arr
        rows[name] = arr.shape[0] if arr.ndim else 1
    if len(set(rows.values())) > 1:
        problems.append(
            "every input needs the same number of samples; got "
            + ", ".join(f"{n}: {r}" for n, r in rows.items())
        )
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise PackagerError(f"{where} does not fit the model:\n{lines}")
    return out


def _batches(data: Mapping[str, np.ndarray], size: int) -> Iterator[dict[str, np.ndarray]]:
    n = next(iter(data.values())).shape[0]
    for start in range(0, n, size):
        yield {k: v[start : start + size] for k, v in data.items()}


def _preprocess(src: Path, dst: Path) -> Path:
    """ONNX Runtime's pre-processing; falls back to the model as is when it cannot run.

    Symbolic shape inference is skipped: it is slow (it imports sympy and walks every node) and
    only matters for transformer graphs; ONNX's own shape inference still runs.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        with _quiet_ort():
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    except Exception:  # an optimization that fails must not block quantization
        return src
    return dst


@contextlib.contextmanager
def _ort_errors(what: str) -> Iterator[None]:
    try:
        with _quiet_ort():
            yield
    except PackagerError:
        raise
    except Exception as exc:
        raise PackagerError(
            f"{what} failed in ONNX Runtime: {type(exc).__name__}: {exc}; "
            "check that the model runs with onnxruntime, or try the other --quantize mode"
        ) from exc


@contextlib.contextmanager
def _quiet_ort() -> Iterator[None]:
    # ORT's quantization tools log advice through the *root* logger at WARNING; silence
    # that (and only while they run) so the command's output stays the table.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
