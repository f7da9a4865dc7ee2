"""ONNX files: signature from the graph, artifact made self-contained for Triton."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from packager import dtypes
from packager.errors import DTypeError, SourceError
from packager.repository import sha256_file
from packager.sources import LoadedModel, Signature, register
from packager.sources.formats import FORMATS
from packager.sources.onnx_edits import lift_scalars, scalar_names
from packager.spec import TensorSpec

FMT = FORMATS["onnx"]

# protobuf stores larger-than-2GB models only with external data; below that we inline it.
_INLINE_LIMIT = 1_800_000_000


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

    def load(self, ref: Any, options: Mapping[str, Any]) -> LoadedModel:
        path = Path(ref)
        model = load_proto(path, external=False)
        workdir = tempfile.TemporaryDirectory(prefix="tp-onnx-")
        try:
            artifact = _self_contained(model, path, Path(workdir.name))
            lifted: list[str] = []
            if any(scalar_names(model)):  # Triton has no rank-0 tensors: make them [1]
                model = load_proto(artifact, external=True)
                lifted = lift_scalars(model)
                artifact = Path(workdir.name) / FMT.artifact
                _save(model, artifact)
        except BaseException:
            workdir.cleanup()
            raise
        signature = signature_of(model, path)
        return LoadedModel(
            format=FMT.name,
            platform=FMT.platform,
            signature=signature,
            files={FMT.artifact: artifact},
            record={
                "source": {"format": "onnx", "file": path.name, "sha256": sha256_file(path)},
                "onnx": {
                    "ir_version": model.ir_version,
                    "opsets": {d.domain or "ai.onnx": d.version for d in model.opset_import},
                    "producer": f"{model.producer_name} {model.producer_version}".strip(),
                    **({"rank0_made_1": lifted} if lifted else {}),
                },
            },
            workdir=workdir,
        )


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


def _self_contained(model: Any, path: Path, workdir: Path) -> Path:
    """A copy Triton can load from a version folder: external weights inlined (or carried along)."""
    from onnx.external_data_helper import uses_external_data

    external = [t for t in model.graph.initializer if uses_external_data(t)]
    target = workdir / FMT.artifact
    if not external:
        return path  # copied as is by the writer
    missing = sorted(
        {
            e.value
            for t in external
            for e in t.external_data
            if e.key == "location" and not (path.parent / e.value).is_file()
        }
    )
    if missing:
        raise SourceError(
            f"{path} keeps its weights in external data file(s) that are missing: "
            f"{', '.join(missing)}; copy them next to the model (torch's exporter writes NAME.onnx.data)"
        )
    full = load_proto(path, external=True)
    if full.ByteSize() < _INLINE_LIMIT:
        _save(full, target)
        return target
    raise SourceError(
        f"{path} is larger than 2 GB with external data; such models are not supported yet "
        "(Triton can load them, but this tool inlines weights into one file)"
    )


def _save(model: Any, target: Path) -> None:
    import onnx

    onnx.save(model, str(target))


register("onnx", OnnxSource)
