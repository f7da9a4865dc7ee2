"""TorchScript files: inputs declared by the user, outputs found by running the model.

A TorchScript file does not record tensor shapes or dtypes, so inputs come from ``--input
NAME:DTYPE:DIMS``, an example ``.npz``, or both (``--input`` names the dims, ``-1`` for dynamic;
the example gives the sizes the model is run at). The model is run at the example and at other
sizes around it: other batch sizes, each dynamic dim smaller and larger (and twice as large:
a stride-32 network maps sizes one apart to the same output). Every output dim that changes
in any run is dynamic. With an example and no ``--input``, a non-batch axis the model runs at
several sizes around the example's (smaller and larger, both parities) becomes dynamic, as for
an exported PyTorch module. Without an example, ``-1`` dims are given the first size of
:data:`BASE_SIZES` the model runs at (a detector may need 32 pixels or more).

Triton's libtorch backend names: inputs either after forward()'s arguments or ``<name>__<i>``;
outputs must be ``<name>__<i>`` (the index is the position in forward()'s returned tuple).
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
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
BASE_SIZES = (4, 8, 16, 32, 64, 128, 224)  # tried, in order, for -1 dims without an example


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
        arrays = None if examples is None else resolve_examples(examples)
        batching = options.max_batch_size != 0
        inputs = specs or _specs_from_examples(arrays or {}, arg_names)
        _check_input_names(inputs, arg_names)
        probe_order = _positional(inputs, arg_names)
        run = _Runner(module, probe_order, batching)
        if arrays is not None:
            example = _bind_examples(arrays, probe_order, bool(specs), batching)
        else:
            example = run.base_case()
        if not specs:  # sizes from the example alone: the model says which axes are free
            probe_order = run.find_free_axes(example)
            run = _Runner(module, probe_order, batching)
            inputs = [next(t for t in probe_order if t.name == s.name) for s in inputs]
        outputs = _output_specs(run, example, options.output_names)
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


Case = dict[str, np.ndarray]  # one set of inputs, in forward()'s order


class _Runner:
    """Runs the TorchScript module on input sets; knows which dims are dynamic (-1)."""

    def __init__(self, module: Any, inputs: Sequence[TensorSpec], batching: bool) -> None:
        self.module, self.inputs, self.batching = module, list(inputs), batching
        self.lead = 1 if batching else 0  # where a spec's dims start in an array's shape

    def __call__(self, case: Case) -> list[Any]:
        import torch

        tensors = [torch.from_numpy(np.ascontiguousarray(case[t.name])) for t in self.inputs]
        try:
            with torch.no_grad():
                result = self.module(*tensors)
        except Exception as exc:
            raise SourceError(
                f"running the TorchScript model on inputs {[tuple(t.shape) for t in tensors]} "
                f"failed: {_reason(exc)}; check --input dtypes and dims"
            ) from exc
        outs = list(result) if isinstance(result, (tuple, list)) else [result]
        if not all(isinstance(o, torch.Tensor) for o in outs):
            raise SourceError(
                "the TorchScript model must return a tensor or a tuple/list of tensors"
            )
        return outs

    def base_case(self) -> Case:
        """Random inputs; -1 dims at the first size of BASE_SIZES the model runs at."""
        from packager.sources.inputs import random_inputs

        batch = 2 if self.batching else None
        if not any(d < 0 for t in self.inputs for d in t.dims):
            case = random_inputs(self.inputs, batch)
            self(case)  # the model must run: its error is the user's first clue
            return case
        first: SourceError | None = None
        for size in BASE_SIZES:
            case = random_inputs(self.inputs, batch, dynamic=size)
            try:
                self(case)
                return case
            except SourceError as exc:
                first = first or exc
        raise SourceError(
            f"the TorchScript model fails with random inputs at every size tried for the -1 dims "
            f"({', '.join(map(str, BASE_SIZES))}): {first}. Give --example-input FILE.npz "
            "with inputs it accepts (with --input, its arrays set the sizes of the -1 dims)"
        ) from first

    def resized(self, case: Case, batch: int | None, grow: Callable[[int], int]) -> Case:
        """``case`` with ``batch`` rows and every -1 dim resized by ``grow`` (values repeated)."""
        out = {}
        for t in self.inputs:
            a = case[t.name]
            if self.batching and batch is not None:
                a = np.take(a, np.arange(batch) % a.shape[0], axis=0)
            for i, d in enumerate(t.dims):
                ax = i + self.lead
                if d < 0:
                    a = np.take(a, np.arange(grow(a.shape[ax])) % a.shape[ax], axis=ax)
            out[t.name] = a
        return out

    def find_free_axes(self, example: Case) -> list[TensorSpec]:
        """Specs with -1 where the model runs at every size of ``probe_sizes`` around the example."""
        from packager.sources.pytorch.export import probe_sizes

        dims = {t.name: list(t.dims) for t in self.inputs}
        groups: dict[int, list[tuple[str, int]]] = {}
        for t in self.inputs:
            for i, d in enumerate(t.dims):
                if d > 1:  # size-1 axes are singletons or broadcasts far more often than lengths
                    groups.setdefault(d, []).append((t.name, i))
        for size, members in sorted(groups.items()):
            try:
                for other in probe_sizes(size):
                    case = dict(example)
                    for name, i in members:
                        ax = i + self.lead
                        case[name] = np.take(case[name], np.arange(other) % size, axis=ax)
                    self(case)
            except SourceError:
                continue
            for name, i in members:
                dims[name][i] = -1
        return [TensorSpec(t.name, t.dtype, tuple(dims[t.name])) for t in self.inputs]


def _bind_examples(
    arrays: Mapping[str, np.ndarray], inputs: Sequence[TensorSpec], declared: bool, batching: bool
) -> Case:
    """The example arrays under the inputs' names, checked against ``--input`` when given."""
    values = list(arrays.values())
    problems = []
    out: Case = {}
    for i, t in enumerate(inputs):
        arr = arrays.get(t.name)
        if arr is None and len(values) == len(inputs) and all(k.startswith("arr_") for k in arrays):
            arr = values[i]
        if arr is None:
            problems.append(f"no example array named {t.name!r} (given: {', '.join(arrays)})")
            continue
        arr = np.asarray(arr)
        dims = arr.shape[1:] if batching else arr.shape
        if declared and (
            len(dims) != len(t.dims)
            or any(d not in (-1, a) for d, a in zip(t.dims, dims, strict=False))
        ):
            problems.append(
                f"{t.name}: example dims {list(dims)} do not fit --input {list(t.dims)}"
            )
        out[t.name] = arr.astype(t.dtype.numpy, copy=False)
    if problems:
        raise SourceError("the example inputs do not match the inputs: " + "; ".join(problems))
    return out


def _output_specs(
    run: _Runner, example: Case, names: Sequence[str] | None
) -> tuple[TensorSpec, ...]:
    """Output dims from runs at the example and at other sizes: a dim that changes is -1.

    Batch sizes 3 and 1 beside the example's; each -1 input dim one smaller, one larger and
    twice as large (one size is not enough: a ceil-mode pooling maps 12 and 11 to one size).
    """
    batch = 2 if run.batching else None
    cases = [
        example,
        run.resized(example, 3 if run.batching else None, lambda n: max(n - 1, 1)),
        run.resized(example, 1 if run.batching else None, lambda n: n + 1),
        run.resized(example, batch, lambda n: 2 * n),
    ]
    shapes: list[list[tuple[int, ...]]] = []
    kinds: list[Any] = []
    for case in cases:
        outs = run(case)
        shapes.append([tuple(o.shape) for o in outs])
        kinds = [o.dtype for o in outs]
    if names and len(names) != len(kinds):
        raise PackagerError(
            f"{len(names)} output names given but the model returns {len(kinds)} outputs"
        )
    specs = []
    for i in range(len(kinds)):
        seen = [s[i] for s in shapes]
        if len({len(s) for s in seen}) > 1:
            raise SourceError(f"output {i} changes rank with the input sizes: {seen}")
        dims = tuple(-1 if len({s[a] for s in seen}) > 1 else x for a, x in enumerate(seen[0]))
        name = names[i] if names else f"OUTPUT__{i}"
        if not _INDEXED.match(name):
            raise PackagerError(
                f"TorchScript output name {name!r} must end with __<index> (e.g. OUTPUT__{i})"
            )
        specs.append(TensorSpec(name, dtypes.from_torch(kinds[i]), dims))
    return tuple(specs)


def dims_problems(
    path: Path, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], batching: bool
) -> list[str]:
    """Where a config's dims (batch excluded) contradict what the TorchScript file does.

    The file records no shapes, so it is run as a build runs it (random inputs at the declared
    dims, -1 dims at sizes it accepts, then smaller, larger and twice as large): a declared
    dynamic input dim it fails at, or a declared fixed output dim that changes, is a problem.
    """
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:
        return [f"{path.name} cannot be loaded by torch.jit.load: {_reason(exc)}"]
    order = _positional(inputs, _forward_args(module))
    run = _Runner(module, order, batching)
    try:
        observed = _output_specs(run, run.base_case(), [t.name for t in outputs])
    except PackagerError as exc:  # SourceError too: a declared dim the model does not take
        return [f"{path.name} does not run at the config's input dims: {exc}"]
    out = []
    for declared, seen in zip(outputs, observed, strict=True):
        dims = declared.reshape if declared.reshape is not None else declared.dims
        got = seen.dims[1:] if batching else seen.dims
        if len(dims) != len(got) or any(
            d != -1 and g != d for d, g in zip(dims, got, strict=False)
        ):
            out.append(
                f"output {declared.name!r} dims {list(dims)} contradict {path.name}, which returns "
                f"{list(got)} (-1: changes with the input sizes; batch dim excluded)"
            )
    return out


register("torchscript", TorchScriptSource)
