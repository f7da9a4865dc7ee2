"""TorchScript files: inputs declared by the user, outputs found by running the model.

A TorchScript file does not record tensor shapes or dtypes, so inputs come from ``--input
NAME:DTYPE:DIMS`` or an example ``.npz``; the model is run twice (different batch and dynamic
sizes) and every output dim that changes is dynamic.

Triton's libtorch backend names: inputs either after forward()'s arguments or ``<name>__<i>``;
outputs must be ``<name>__<i>`` (the index is the position in forward()'s returned tuple).
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from packager import dtypes
from packager.errors import PackagerError, SourceError
from packager.formats import FORMATS
from packager.repository import sha256_file
from packager.sources import LoadedModel, Signature, SourceOptions, register
from packager.sources.inputs import parse_tensor_arg, resolve_examples
from packager.spec import TensorSpec

FMT = FORMATS["torchscript"]

_INDEXED = re.compile(r"^.+__(\d+)$")


def is_torchscript_zip(path: Path) -> bool:
    """TorchScript archives are zips holding compiled code; a plain state_dict zip has none."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


class TorchScriptSource:
    name = "torchscript"
    description = "TorchScript file (.pt from torch.jit.save), run by libtorch"

    def sniff(self, ref: Any) -> bool:
        return (
            isinstance(ref, (str, Path)) and Path(ref).is_file() and is_torchscript_zip(Path(ref))
        )

    def load(self, ref: Any, options: SourceOptions) -> LoadedModel:
        import torch

        path = Path(ref)
        if not is_torchscript_zip(path):
            raise SourceError(f"{path} is not a TorchScript archive (save it with torch.jit.save)")
        try:
            module = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as exc:
            raise SourceError(f"{path} cannot be loaded by torch.jit.load: {exc}") from exc
        specs = [
            s if isinstance(s, TensorSpec) else parse_tensor_arg(s) for s in options.input_specs
        ]
        examples = options.example
        if not specs and examples is None:
            raise SourceError(
                "a TorchScript file does not record its inputs: give --input NAME:DTYPE:DIMS "
                "(dims without the batch dim) or --example-input FILE.npz"
            )
        _check_tensor_args(module, path)
        arg_names = _forward_args(module)
        inputs = specs or _specs_from_examples(resolve_examples(examples), arg_names)
        _check_input_names(inputs, arg_names)
        batching = options.max_batch_size != 0
        probe_order = _positional(inputs, arg_names)
        outputs = _probe_outputs(module, probe_order, batching, options.output_names)
        full_inputs = tuple(
            TensorSpec(t.name, t.dtype, ((-1,) if batching else ()) + t.dims) for t in inputs
        )
        return LoadedModel(
            format=FMT.name,
            platform=FMT.platform,
            signature=Signature(full_inputs, outputs),
            files={FMT.artifact: path},
            record={
                "source": {"format": "torchscript", "file": path.name, "sha256": sha256_file(path)},
                "torch": torch.__version__,
            },
            workdir=tempfile.TemporaryDirectory(prefix="tp-ts-"),
        )


def _forward_args(module: Any) -> list[str]:
    try:
        args = module.forward.schema.arguments
    except (AttributeError, RuntimeError):
        return []
    return [a.name for a in args if a.name != "self"]


def _check_tensor_args(module: Any, path: Path) -> None:
    """Refuse forward() arguments that Triton cannot pass (it passes tensors only)."""
    try:
        args = [a for a in module.forward.schema.arguments if a.name != "self"]
    except (AttributeError, RuntimeError):
        return
    for a in args:
        kind = a.type.kind()
        inner = a.type.getElementType().kind() if kind in ("OptionalType", "ListType") else ""
        tensor = kind == "TensorType" or (kind == "OptionalType" and inner == "TensorType")
        text = kind == "ListType" and inner == "StringType"  # BYTES inputs arrive as List[str]
        if tensor or text or a.has_default_value():
            continue
        raise SourceError(
            f"{path.name}: forward() argument {a.name!r} is {a.type}, not a tensor; Triton passes "
            "tensors only. Wrap the model in a module whose forward takes a tensor there "
            f"(e.g. `{a.name}: Tensor` and `int({a.name})` inside), script and save that, "
            "or export the model to ONNX"
        )


def _specs_from_examples(
    arrays: Mapping[str, np.ndarray], arg_names: Sequence[str]
) -> list[TensorSpec]:
    specs = []
    for i, (name, arr) in enumerate(arrays.items()):
        if arr.ndim < 2:
            raise SourceError(
                f"example input {name!r} has shape {arr.shape}; examples carry a batch dim first "
                "and at least one dim per sample"
            )
        # npz keys like arr_0 are not names the user chose: fall back to forward()'s arguments.
        chosen = (
            name
            if not name.startswith("arr_")
            else (arg_names[i] if i < len(arg_names) else f"INPUT__{i}")
        )
        specs.append(TensorSpec(chosen, dtypes.from_numpy(arr.dtype), arr.shape[1:]))
    return specs


def _check_input_names(inputs: Sequence[TensorSpec], arg_names: Sequence[str]) -> None:
    bad = [t.name for t in inputs if t.name not in arg_names and not _INDEXED.match(t.name)]
    if bad:
        raise PackagerError(
            f"TorchScript input name(s) {', '.join(bad)} are neither forward() arguments "
            f"({', '.join(arg_names) or 'unknown'}) nor of the form NAME__<index>; "
            "Triton's libtorch backend could not bind them"
        )


def _positional(inputs: Sequence[TensorSpec], arg_names: Sequence[str]) -> list[TensorSpec]:
    """Inputs in the order forward() takes them, bound as Triton's libtorch backend (and the
    Python runtime) binds them: NAME__<i> by index, else by forward()'s argument names."""
    if inputs and all(_INDEXED.match(t.name) for t in inputs):
        return sorted(inputs, key=lambda t: int(t.name.rsplit("__", 1)[1]))
    if all(t.name in arg_names for t in inputs):
        return sorted(inputs, key=lambda t: list(arg_names).index(t.name))
    return list(inputs)


def _reason(exc: Exception) -> str:
    """The line of a TorchScript error that says what went wrong.

    The interpreter's message starts with a generic header and a traceback; the cause
    (e.g. "RuntimeError: mat1 and mat2 shapes cannot be multiplied") is its last line.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else repr(exc)


def _probe_outputs(
    module: Any, inputs: Sequence[TensorSpec], batching: bool, names: Sequence[str] | None
) -> tuple[TensorSpec, ...]:
    """Run twice with different batch/dynamic sizes; dims that change are dynamic (-1)."""
    import torch

    from packager.sources.inputs import random_inputs

    shapes: list[list[tuple[int, ...]]] = []
    kinds: list[Any] = []
    for batch, dyn in ((2, 3), (3, 4)):
        arrays = random_inputs(inputs, batch if batching else None, dynamic=dyn)
        tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays.values()]
        try:
            with torch.no_grad():
                result = module(*tensors)
        except Exception as exc:
            raise SourceError(
                f"running the TorchScript model on inputs {[tuple(t.shape) for t in tensors]} failed: "
                f"{_reason(exc)}; check --input dtypes and dims"
            ) from exc
        outs = list(result) if isinstance(result, (tuple, list)) else [result]
        if not all(isinstance(o, torch.Tensor) for o in outs):
            raise SourceError(
                "the TorchScript model must return a tensor or a tuple/list of tensors"
            )
        shapes.append([tuple(o.shape) for o in outs])
        kinds = [o.dtype for o in outs]
    if names and len(names) != len(kinds):
        raise PackagerError(
            f"{len(names)} output names given but the model returns {len(kinds)} outputs"
        )
    specs = []
    for i, (a, b) in enumerate(zip(shapes[0], shapes[1], strict=True)):
        dims = tuple(-1 if x != y else x for x, y in zip(a, b, strict=True))
        name = names[i] if names else f"OUTPUT__{i}"
        if not _INDEXED.match(name):
            raise PackagerError(
                f"TorchScript output name {name!r} must end with __<index> (e.g. OUTPUT__{i})"
            )
        specs.append(TensorSpec(name, dtypes.from_torch(kinds[i]), dims))
    return tuple(specs)


register("torchscript", TorchScriptSource)
