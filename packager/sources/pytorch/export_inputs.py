"""Example inputs for exporting a PyTorch module: bound to ``forward()``'s arguments by name.

Examples arrive as a dict (name -> array/tensor), a single array or tensor, a list/tuple
(positional), a ``.npz`` path, or ``NAME:DTYPE:DIMS`` specs (random data). Whatever the form,
the result is an ordered ``{argument name: numpy array}`` with the batch dim first, plus the
axes the user declared dynamic. Parsing of specs and ``.npz`` files is shared with the other
sources (:mod:`packager.sources.inputs`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from packager import dtypes
from packager.errors import PackagerError, SourceError
from packager.sources.inputs import load_npz, parse_tensor_arg, random_array
from packager.spec import TensorSpec, name_problem

# Size given to a ``-1`` (dynamic) dim of an input spec: >= 3 so that the second verification
# case can shrink it and the exporter never sees a 0/1-sized dim (which torch.export specializes).
DYNAMIC_EXAMPLE_SIZE = 4


@dataclass(frozen=True)
class Param:
    """How one input reaches ``forward()``: by keyword, or by position (``*args``)."""

    name: str
    keyword: bool


@dataclass(frozen=True)
class Examples:
    """Example arrays in call order and, per input, the axes beyond the batch that are dynamic."""

    arrays: dict[str, np.ndarray]
    params: tuple[Param, ...]
    dynamic: dict[str, frozenset[int]]

    @property
    def batch(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0])


def forward_params(module: Any) -> tuple[list[str], bool, bool]:
    """(named parameters of forward(), accepts *args, accepts **kwargs)."""
    try:
        sig = inspect.signature(module.forward)
    except (TypeError, ValueError):
        return [], True, False
    names = [
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    kinds = {p.kind for p in sig.parameters.values()}
    return names, inspect.Parameter.VAR_POSITIONAL in kinds, inspect.Parameter.VAR_KEYWORD in kinds


def _to_numpy(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(
        value, "numpy"
    ):  # a torch.Tensor, without importing torch
        if str(getattr(value, "dtype", "")) == "torch.bfloat16":
            raise SourceError(
                f"example input {name!r} is bfloat16, which numpy and ONNX Runtime's Python API "
                "cannot carry; give it as float32 or float16"
            )
        return np.asarray(value.detach().cpu().numpy())
    arr = np.asarray(value)
    if arr.dtype.kind in "OUS":
        raise SourceError(
            f"example input {name!r} holds {arr.dtype} data; PyTorch export needs numeric tensors"
        )
    return arr


def resolve(
    module: Any,
    example_inputs: Any = None,
    input_specs: Sequence[str | TensorSpec] | None = None,
    batch_size: int = 2,
) -> Examples:
    """Bind examples (or random data for specs) to ``module.forward``'s arguments."""
    names, var_pos, var_kw = forward_params(module)
    specs = [s if isinstance(s, TensorSpec) else parse_tensor_arg(s) for s in input_specs or ()]
    if example_inputs is None and not specs:
        raise SourceError(
            "exporting a PyTorch module needs example inputs: pass --example-input FILE.npz or "
            "--input NAME:DTYPE:DIMS (dims without the batch dim, e.g. x:FP32:3,224,224), or "
            "example_inputs={'x': array} from Python"
        )
    if batch_size < 1:
        raise PackagerError(f"batch_size for random example inputs must be >= 1, got {batch_size}")

    if example_inputs is None:
        raw: dict[str, Any] = {
            s.name: random_array(s, batch_size, DYNAMIC_EXAMPLE_SIZE, seed=i)
            for i, s in enumerate(specs)
        }
        keyed = True
    elif isinstance(example_inputs, (str, Path)):
        raw = dict(load_npz(example_inputs))
        # np.savez(f, a, b) names arrays arr_0, arr_1: those are positions, not names.
        keyed = not all(k == f"arr_{i}" for i, k in enumerate(raw))
    elif isinstance(example_inputs, Mapping):
        raw = {str(k): v for k, v in example_inputs.items()}
        keyed = True
    elif isinstance(example_inputs, (list, tuple)):
        raw = {f"arr_{i}": v for i, v in enumerate(example_inputs)}
        keyed = False
    else:
        raw = {"arr_0": example_inputs}
        keyed = False
    arrays = {k: _to_numpy(v, k) for k, v in raw.items()}
    if not arrays:
        raise SourceError("the example inputs are empty; give at least one input tensor")

    if keyed:
        unknown = [k for k in arrays if k not in names]
        if unknown and not (var_kw or var_pos):
            raise SourceError(
                f"example input(s) {', '.join(unknown)} are not arguments of {type(module).__name__}.forward"
                f"({', '.join(names)}); name the inputs after forward()'s arguments"
            )
        if var_pos and not var_kw and unknown:
            # forward(self, *inputs): keys only name the tensors; they are passed in order.
            params = tuple(Param(k, False) for k in arrays)
        else:
            # Call order follows forward()'s signature so TorchScript inputs line up with Triton's.
            ordered = [n for n in names if n in arrays] + [k for k in arrays if k not in names]
            arrays = {k: arrays[k] for k in ordered}
            params = tuple(Param(k, True) for k in ordered)
    else:
        if len(arrays) > len(names) and not var_pos:
            raise SourceError(
                f"{len(arrays)} example inputs given but {type(module).__name__}.forward takes "
                f"{len(names)} ({', '.join(names)})"
            )
        chosen = [names[i] if i < len(names) else f"INPUT__{i}" for i in range(len(arrays))]
        arrays = dict(zip(chosen, arrays.values(), strict=True))
        params = tuple(Param(n, i < len(names)) for i, n in enumerate(chosen))

    missing = _required_missing(module, names, set(arrays))
    if missing:
        raise SourceError(
            f"{type(module).__name__}.forward needs argument(s) {', '.join(missing)} but no example "
            f"input has that name (given: {', '.join(arrays)})"
        )
    for name, arr in arrays.items():
        if (p := name_problem(name, "input name")) is not None:
            raise SourceError(p)
        if not name.isidentifier():
            raise SourceError(
                f"input name {name!r} must be a Python identifier to become an argument name"
            )
        if arr.ndim < 1:
            raise SourceError(
                f"example input {name!r} is a scalar; examples carry the batch dim first"
            )
        dtypes.from_numpy(arr.dtype)  # raises DTypeError for types Triton cannot carry
    batches = {n: a.shape[0] for n, a in arrays.items()}
    if len(set(batches.values())) > 1:
        raise SourceError(
            f"example inputs disagree on the batch size (first dim): {batches}; "
            "every input must carry the same batch"
        )
    dynamic = _check_specs(arrays, specs) if example_inputs is not None else _spec_dynamic(specs)
    return Examples(arrays, params, dynamic)


def _required_missing(module: Any, names: list[str], given: set[str]) -> list[str]:
    try:
        sig = inspect.signature(module.forward)
    except (TypeError, ValueError):
        return []
    return [
        n for n in names if n not in given and sig.parameters[n].default is inspect.Parameter.empty
    ]


def _spec_dynamic(specs: Sequence[TensorSpec]) -> dict[str, frozenset[int]]:
    return {s.name: frozenset(i + 1 for i, d in enumerate(s.dims) if d == -1) for s in specs}


def _check_specs(
    arrays: Mapping[str, np.ndarray], specs: Sequence[TensorSpec]
) -> dict[str, frozenset[int]]:
    """Specs given beside real examples describe them: check, and take their -1 dims as dynamic."""
    problems = []
    for s in specs:
        arr = arrays.get(s.name)
        if arr is None:
            problems.append(f"--input {s.name} has no example array of that name")
            continue
        if dtypes.from_numpy(arr.dtype) != s.dtype:
            problems.append(
                f"{s.name}: example is {dtypes.from_numpy(arr.dtype)}, --input says {s.dtype}"
            )
        if len(arr.shape) - 1 != len(s.dims) or any(
            d not in (-1, a) for d, a in zip(s.dims, arr.shape[1:], strict=False)
        ):
            problems.append(
                f"{s.name}: example dims {list(arr.shape[1:])} do not fit --input dims {list(s.dims)}"
            )
    if problems:
        raise SourceError("example inputs do not match --input: " + "; ".join(problems))
    return _spec_dynamic(specs)


def normalize_dynamic_axes(
    dynamic_axes: Mapping[str, Sequence[int] | int] | Sequence[str] | None,
    option: str = "--dynamic-axis",
) -> dict[str, frozenset[int]]:
    """``{"ids": [1]}``, ``["ids:1"]`` (the CLI's NAME:AXIS strings) -> ``{"ids": {1}}``."""
    out: dict[str, set[int]] = {}
    if not dynamic_axes:
        return {}
    items: list[tuple[str, Any]]
    if isinstance(dynamic_axes, Mapping):
        items = list(dynamic_axes.items())
    else:
        items = []
        for text in dynamic_axes:
            name, sep, axis = str(text).rpartition(":")
            if not sep or not name:
                raise PackagerError(f"{option} {text!r} is not NAME:AXIS (e.g. input_ids:1)")
            items.append((name, axis))
    for name, axes in items:
        for ax in [axes] if isinstance(axes, (int, str)) else axes:
            try:
                value = int(ax)
            except (TypeError, ValueError):
                raise PackagerError(f"{option} axis {ax!r} of {name!r} is not an integer") from None
            out.setdefault(name, set()).add(value)
    return {k: frozenset(v) for k, v in out.items()}


def with_axes(
    arrays: Mapping[str, np.ndarray],
    batch: int,
    shrink: Mapping[str, frozenset[int]],
    grow: bool = False,
) -> dict[str, np.ndarray]:
    """Real example rows repeated/cut to ``batch`` rows, and each axis in ``shrink`` cut by one
    (or, with ``grow``, made one longer by repeating the example's values).

    Used for the verification cases (other batch sizes, other dynamic sizes on both sides).
    """
    out = {}
    for name, arr in arrays.items():
        a = np.take(arr, np.arange(batch) % arr.shape[0], axis=0)
        for ax in sorted(shrink.get(name, ())):
            if ax < a.ndim and grow and a.shape[ax] >= 1:
                a = np.take(a, np.arange(a.shape[ax] + 1) % a.shape[ax], axis=ax)
            elif ax < a.ndim and a.shape[ax] >= 3:
                a = np.take(a, np.arange(a.shape[ax] - 1), axis=ax)
        out[name] = np.ascontiguousarray(a)
    return out


def grow_small_dynamic(
    arrays: Mapping[str, np.ndarray], dynamic: Mapping[str, frozenset[int]]
) -> dict[str, np.ndarray]:
    """Dynamic dims of size < 2 repeated to size 2, so that export does not specialize them."""
    out = {}
    for name, arr in arrays.items():
        a = arr
        for ax in sorted({0} | set(dynamic.get(name, ()))):
            if ax < a.ndim and a.shape[ax] < 2:
                if a.shape[ax] == 0:
                    raise SourceError(
                        f"example input {name!r} has an empty axis {ax}; give real data"
                    )
                a = np.repeat(a, 2, axis=ax)
        out[name] = np.ascontiguousarray(a)
    return out
