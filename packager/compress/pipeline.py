"""The compression step of ``build``: between loading the source and writing the repository.

:func:`compress_loaded` replaces the loaded ``model.onnx`` with its quantized or fp16 copy (in
the build's temporary folder) and records the before/after figures; pruning happens earlier,
inside the PyTorch source, on the module before export (:class:`PruneRequest` travels there in
``source_options["prune"]``). Everything is checked and computed before the repository writer
runs, so a bad option or bad calibration data leaves the repository untouched.
"""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from packager.compress.fp16 import convert_fp16, out_of_range
from packager.compress.prune import PruneRequest, check_amount
from packager.compress.quantize import QUANTIZE_MODES, check_inputs, load_calibration, quantize
from packager.compress.report import CompressionReport, Stage, onnx_stage
from packager.errors import PackagerError
from packager.formats import FORMATS
from packager.sources import LoadedModel

_LABEL = {"dynamic-int8": "dynamic int8", "static-int8": "static int8 (QDQ)"}


@dataclass(frozen=True)
class CompressOptions:
    """The compression options of ``build`` (all off by default)."""

    quantize: str | None = None  # "dynamic-int8" | "static-int8"
    calibration_data: str | Path | Mapping[str, np.ndarray] | None = None
    per_channel: bool = False
    fp16: bool = False
    fp16_io: bool = False  # fp16 inputs/outputs too (implies fp16)
    prune: float | None = None
    prune_structured: bool = False
    eval_data: str | Path | None = None  # labeled .npz: metric before/after
    eval_metric: str = "accuracy"
    labels_key: str = "labels"

    @property
    def active(self) -> bool:
        return bool(self.quantize or self.fp16 or self.fp16_io or self.prune is not None)

    def problems(self) -> list[str]:
        """Option combinations that make no sense, found before anything is loaded."""
        out = []
        if self.quantize is not None and self.quantize not in QUANTIZE_MODES:
            out.append(
                f"--quantize must be one of {', '.join(QUANTIZE_MODES)}, got {self.quantize!r}"
            )
        if self.quantize and (self.fp16 or self.fp16_io):
            out.append("choose --quantize or --fp16, not both (int8 weights are not fp16)")
        if self.calibration_data is not None and self.quantize != "static-int8":
            out.append("--calibration-data is used only with --quantize static-int8")
        if self.quantize == "static-int8" and self.calibration_data is None:
            out.append(
                "--quantize static-int8 needs --calibration-data FILE.npz (representative inputs, "
                "one array per model input, samples first)"
            )
        if self.per_channel and not self.quantize:
            out.append("--per-channel applies to --quantize")
        if self.prune_structured and self.prune is None:
            out.append("--prune-structured needs --prune AMOUNT")
        if self.prune is not None:
            try:
                check_amount(self.prune)
            except PackagerError as exc:
                out.append(str(exc))
        if self.eval_data is not None and not self.active:
            out.append("--eval-data measures a compression: add --quantize, --fp16 or --prune")
        return out

    def prune_request(self) -> PruneRequest | None:
        """What the PyTorch source needs to prune before export (with a torch evaluator)."""
        if self.prune is None:
            return None
        evaluate = None
        if self.eval_data is not None:
            from packager.compress.evaluate import load_labeled, parse_metric

            data = load_labeled(self.eval_data, self.labels_key)
            evaluate = _torch_evaluator(data.inputs, data.labels, parse_metric(self.eval_metric))
        return PruneRequest(self.prune, self.prune_structured, evaluate, self.eval_metric)


def compress_loaded(loaded: LoadedModel, options: CompressOptions) -> CompressionReport | None:
    """Apply ``options`` to ``loaded`` in place; returns the report (also put in its record)."""
    if not options.active:
        return None
    pruned = loaded.record.pop("prune", None)
    if options.prune is not None and pruned is None:
        source = loaded.record.get("source", {}).get("format", loaded.format)
        raise PackagerError(
            f"--prune works on PyTorch modules before export, and this model is a file of format {source}; "
            "build from the module (module.path:factory) or use --quantize / --fp16 instead"
        )
    if (options.quantize or options.fp16 or options.fp16_io) and loaded.format != "onnx":
        raise PackagerError(
            f"--quantize and --fp16 work on ONNX models; this build makes a {loaded.format} "
            "artifact (build an ONNX file, or export the module with --format onnx)"
        )
    if loaded.format == "onnx" and len(loaded.files) > 1:
        data_files = ", ".join(sorted(n for n in loaded.files if n != FORMATS["onnx"].artifact))
        raise PackagerError(
            "--quantize, --fp16 and --prune work on models that fit in one ONNX file (< 2 GB); "
            f"this one keeps its weights in external data ({data_files}). Build it without "
            "compression, or compress it first with onnxruntime.quantization.quantize_dynamic"
            "(..., use_external_data_format=True) and build the result"
        )
    metric_name = None
    data = None
    if options.eval_data is not None:
        from packager.compress.evaluate import load_labeled, parse_metric

        metric_name = parse_metric(options.eval_metric)
        names = [t.name for t in loaded.signature.inputs]
        data = load_labeled(options.eval_data, options.labels_key, names)
        check_inputs(data.inputs, loaded.signature, f"evaluation data {options.eval_data}")
    calibration = None
    if options.quantize == "static-int8":
        calibration = (
            check_inputs(options.calibration_data, loaded.signature)
            if isinstance(options.calibration_data, Mapping)
            else load_calibration(str(options.calibration_data), loaded.signature)
        )

    def measure(path: Path, label: str) -> Stage:
        metric = None
        if data is not None and metric_name is not None:
            from packager.compress.evaluate import evaluate_local

            metric = evaluate_local(path, data, [metric_name])[metric_name]
        return onnx_stage(path, label, metric)

    artifact = FORMATS["onnx"].artifact
    src = loaded.files[artifact] if loaded.format == "onnx" else None
    if pruned is not None:
        report = CompressionReport.from_dict(pruned)
        if src is not None:  # the pruned stage, as exported (file size, metric through ORT)
            report = CompressionReport(
                stages=(report.original, measure(src, report.final.label)),
                metric_name=metric_name,
                steps=report.steps,
                details=report.details,
            )
    else:
        assert src is not None
        report = CompressionReport((measure(src, "original"),), metric_name)

    if options.quantize or options.fp16 or options.fp16_io:
        assert src is not None
        if loaded.workdir is None:  # the source handed over the user's file as is
            loaded.workdir = tempfile.TemporaryDirectory(prefix="tp-compress-")
        work = Path(loaded.workdir.name) / "compressed"
        work.mkdir(exist_ok=True)
        if options.quantize:
            dst = quantize(
                src,
                work / artifact,
                options.quantize,
                calibration=calibration,
                per_channel=options.per_channel,
            )
            label = _LABEL[options.quantize] + (" per-channel" if options.per_channel else "")
            step = f"quantize {options.quantize}" + (" per-channel" if options.per_channel else "")
        else:
            dst = convert_fp16(src, work / artifact, keep_io_types=not options.fp16_io)
            clamped = out_of_range(src)
            if clamped:  # recorded: such weights were clamped to +-65504
                report = replace(report, details={**report.details, "fp16_clamped": clamped})
            label = "fp16" + (" (fp16 inputs/outputs)" if options.fp16_io else "")
            step = "fp16" + (" io" if options.fp16_io else " (fp32 inputs/outputs kept)")
        report = report.with_stage(measure(dst, label), step)
        loaded.files[artifact] = dst
        if options.fp16_io:  # the inputs and outputs changed type: the config must follow
            from packager.sources.onnx_file import load_proto, signature_of

            loaded.signature = signature_of(load_proto(dst, external=False), dst)
    loaded.record["compression"] = report.to_dict()
    return report


def _torch_evaluator(inputs: Mapping[str, np.ndarray], labels: np.ndarray, metric: str) -> Any:
    """module -> metric on the evaluation data (for the before/after of pruning)."""

    def evaluate(module: Any) -> float:
        import torch

        from packager.compress.evaluate import score

        names = list(inputs)
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}
        try:
            params = inspect.signature(module.forward).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        with torch.no_grad():
            if all(n in params for n in names):
                out = module(**tensors)
            else:  # inputs named INPUT__0... or differently: pass them in file order
                out = module(*tensors.values())
        while isinstance(out, (tuple, list)):
            out = out[0]
        if isinstance(out, dict):
            out = next(iter(out.values()))
        return score(metric, out.detach().cpu().numpy(), labels)

    return evaluate
