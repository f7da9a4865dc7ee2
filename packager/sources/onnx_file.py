"""ONNX files: signature from the graph, artifact made loadable from a version folder.

Weights in external data files (:mod:`packager.sources.onnx_external`) are inlined into one
self-contained ``model.onnx`` when the whole model is small (``INLINE_LIMIT``, 256 MiB); a larger
one (and every model above protobuf's 2 GB limit) goes into the version folder as it is: the graph
and its data files under the names the graph records, copied by the repository writer without
reading the weights into memory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from packager import dtypes
from packager.errors import DTypeError, SourceError
from packager.formats import FORMATS, PYTHON_FILE
from packager.repository import CHECKSUMS, CONFIG, RECORD, sha256_file
from packager.sources import LoadedModel, Signature, SourceOptions, register
from packager.sources import onnx_external as ext
from packager.sources.onnx_edits import lift_scalars, scalar_names
from packager.spec import TensorSpec

FMT = FORMATS["onnx"]
# Names a version folder already uses: an external data file may not take one of them.
RESERVED = (FMT.artifact, CHECKSUMS, RECORD, CONFIG, PYTHON_FILE)


def _read_head(path: Path, n: int = 64) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


class OnnxSource:
    name = "onnx"
    description = "ONNX model file (.onnx), run by ONNX Runtime"

    def sniff(self, ref: Any) -> bool:
        if not isinstance(ref, (str, Path)) or not Path(ref).is_file():
            return False
        head = _read_head(Path(ref))
        # A ModelProto starts with field 1 (ir_version, varint): tag byte 0x08. Zip files
        # (TorchScript, torch.save) start with "PK". Then a real parse decides.
        if not head.startswith(b"\x08"):
            return False
        try:
            load_proto(Path(ref), external=False)
        except SourceError:
            return False
        return True

    def load(self, ref: Any, options: SourceOptions) -> LoadedModel:
        path = Path(ref)
        model = load_proto(path, external=False)
        workdir = tempfile.TemporaryDirectory(prefix="tp-onnx-")
        try:
            files = _version_files(model, path, Path(workdir.name))
            carried = len(files) > 1  # the data files stay beside the graph
            lifted: list[str] = []
            if any(scalar_names(model)):  # Triton has no rank-0 tensors: make them [1]
                model = load_proto(files[FMT.artifact], external=not carried)
                lifted = lift_scalars(model)
                files[FMT.artifact] = Path(workdir.name) / FMT.artifact
                _save(model, files[FMT.artifact])  # external tensors keep their references
            converted = None
            if options.opset is not None:
                model, converted = _convert(model, files, path, options, Path(workdir.name))
        except BaseException:
            workdir.cleanup()
            raise
        signature = signature_of(model, path)
        return LoadedModel(
            format=FMT.name,
            platform=FMT.platform,
            signature=signature,
            files=files,
            record={
                "source": {"format": "onnx", "file": path.name, "sha256": sha256_file(path)},
                "onnx": {
                    "ir_version": model.ir_version,
                    "opsets": {d.domain or "ai.onnx": d.version for d in model.opset_import},
                    "producer": f"{model.producer_name} {model.producer_version}".strip(),
                    **({"rank0_made_1": lifted} if lifted else {}),
                    **({"converted": converted} if converted else {}),
                },
            },
            workdir=workdir,
        )


def _convert(
    model: Any, files: dict[str, Path], path: Path, options: SourceOptions, workdir: Path
) -> tuple[Any, dict[str, Any] | None]:
    """``--opset N``: convert with ONNX's version converter, then compare with the source model.

    Returns the model now in ``files`` and what was done (None when it already had that opset).
    """
    from packager.sources import onnx_target

    opset = int(options.opset or 0)
    before = next((d.version for d in model.opset_import if d.domain in ("", "ai.onnx")), None)
    if before == opset and model.ir_version <= onnx_target.TARGET.onnx_ir:
        return model, None
    if len(files) > 1:
        raise SourceError(
            f"--opset {opset}: {path.name} keeps its weights in external data files over "
            f"{ext.INLINE_LIMIT >> 20} MiB; convert it yourself (onnx.version_converter) and build "
            "the result"
        )
    source = files[FMT.artifact]
    converted = onnx_target.convert(load_proto(source, external=True), opset, path.name)
    target = workdir / "converted" / FMT.artifact
    target.parent.mkdir()
    _save(converted, target)
    files[FMT.artifact] = target
    record: dict[str, Any] = {"from_opset": before, "to_opset": opset}
    if options.verify:
        record["verification"] = _verify_conversion(source, target, model, options)
    else:
        record["verification"] = {"skipped": True}
    return load_proto(target, external=False), record


def _verify_conversion(
    source: Path, converted: Path, model: Any, options: SourceOptions
) -> dict[str, Any]:
    """Run the source and the converted model (in-process ONNX Runtime) on the same inputs."""
    from packager.sources.inputs import load_npz, random_inputs
    from packager.sources.verify import DEFAULT_ATOL, DEFAULT_RTOL, onnx_runner, verify

    sig = signature_of(model, source)
    example = options.example
    inputs = load_npz(example) if isinstance(example, (str, Path)) else (
        dict(example) if isinstance(example, Mapping) else random_inputs(sig.inputs, None)
    )  # fmt: skip
    try:
        reference = onnx_runner(source)
    except Exception as exc:
        raise SourceError(
            f"--opset: cannot run {source.name} with this environment's ONNX Runtime to compare "
            f"the conversion ({str(exc).strip().splitlines()[0]}); pass --no-verify to skip"
        ) from exc
    atol = options.atol or DEFAULT_ATOL
    rtol = options.rtol or DEFAULT_RTOL
    report = verify(
        reference, onnx_runner(converted), [("random" if example is None else "example", inputs)],
        atol=atol, rtol=rtol, what=f"model converted to opset {options.opset}",
    )  # fmt: skip
    worst = max((c.max_abs_err for c in report.checks), default=0.0)
    return {"atol": atol, "rtol": rtol, "max_abs_err": worst, "passed": report.passed}


def load_proto(path: Path, external: bool) -> Any:
    """``onnx.load`` with our errors; ``external`` also reads external weight files."""
    import onnx
    from google.protobuf.message import DecodeError

    if not path.is_file():
        raise SourceError(f"model file {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=external)
    except DecodeError as exc:
        raise SourceError(
            f"{path} is not a valid ONNX file (truncated or corrupt: {exc}); re-export the model"
        ) from exc
    except FileNotFoundError as exc:
        raise SourceError(
            f"{path} keeps its weights in an external data file that is missing ({exc.filename}); "
            "copy the .onnx.data file(s) next to the model"
        ) from exc
    except Exception as exc:  # onnx raises a variety of errors for junk input
        raise SourceError(f"{path} is not a valid ONNX file: {exc}") from exc
    if model.ir_version <= 0 or not model.graph.node:
        raise SourceError(f"{path} is not a valid ONNX model (no graph); re-export the model")
    return model


def signature_of(model: Any, path: Path | str = "model") -> Signature:
    """Graph inputs minus initializers, with Triton dtypes and -1 for every dynamic dim."""
    initializers = {i.name for i in model.graph.initializer}

    def tensor(value_info: Any) -> TensorSpec:
        ttype = value_info.type
        if not ttype.HasField("tensor_type"):
            raise SourceError(
                f"{path}: {value_info.name!r} is not a tensor (sequence/map types are not supported by Triton)"
            )
        try:
            dt = dtypes.from_onnx(ttype.tensor_type.elem_type)
        except DTypeError as exc:
            raise SourceError(f"{path}: tensor {value_info.name!r}: {exc}") from exc
        dims = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1
            for d in ttype.tensor_type.shape.dim
        )
        return TensorSpec(value_info.name, dt, dims)

    inputs = tuple(tensor(v) for v in model.graph.input if v.name not in initializers)
    outputs = tuple(tensor(v) for v in model.graph.output)
    return Signature(inputs, outputs)


def _version_files(model: Any, path: Path, workdir: Path) -> dict[str, Path]:
    """The files of the version folder: ``model.onnx`` and, unless the model is small, its data files.

    A small model whose weights are external is inlined into one file (one file Triton loads,
    nothing to keep together); a larger one keeps its data files,
    each under the location the graph records (checked first: present, complete, inside the
    folder), and nothing is read but the graph.
    """
    if not ext.external_refs(model):
        return {FMT.artifact: path}  # copied as is by the writer
    problems = ext.data_problems(model, path.parent, str(path), RESERVED)
    if problems:
        raise SourceError(
            "; ".join(problems) + "; copy every data file the graph names next to the model, "
            "as the exporter wrote them (torch's exporter writes NAME.onnx.data)"
        )
    if model.ByteSize() + ext.external_bytes(model, path.parent) < ext.INLINE_LIMIT:
        target = workdir / FMT.artifact
        _save(load_proto(path, external=True), target)
        return {FMT.artifact: target}
    files = {FMT.artifact: path}
    for loc in ext.external_locations(model):
        files[loc] = path.parent / loc
    return files


def _save(model: Any, target: Path) -> None:
    import onnx

    onnx.save(model, str(target))


register("onnx", OnnxSource)
