"""Example inputs: ``NAME:DTYPE:DIMS`` option strings, ``.npz`` files, and random data for them.

Used by every source that must run a model to learn about it (TorchScript, PyTorch) and by
warmup/benchmark code that needs data of a tensor's shape.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from packager import dtypes
from packager.errors import PackagerError, SourceError
from packager.spec import TensorSpec


def parse_tensor_arg(text: str) -> TensorSpec:
    """``x:FP32:3,224,224`` -> TensorSpec(x, FP32, (3, 224, 224)); dims exclude the batch dim.

    ``-1`` marks a dynamic dim; an empty dims part (``t:FP32:``) is a scalar per sample (rank 0,
    served as ``dims [1]`` with ``reshape []``).
    """
    parts = text.split(":")
    if len(parts) != 3 or not parts[0]:
        raise PackagerError(
            f"--input {text!r} is not NAME:DTYPE:DIMS (e.g. x:FP32:3,224,224 or ids:INT64:-1)"
        )
    name, dtype, dims_text = parts
    try:
        dims = tuple(int(d) for d in dims_text.split(",") if d.strip())
    except ValueError:
        raise PackagerError(
            f"--input {text!r}: dims must be integers separated by commas"
        ) from None
    if any(d == 0 or d < -1 for d in dims):
        raise PackagerError(f"--input {text!r}: dims are positive or -1 (dynamic)")
    return TensorSpec(name, dtypes.parse(dtype), dims)


def load_npz(path: Path | str) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` file by name, in file order; pickled object arrays are refused."""
    p = Path(path)
    if not p.is_file():
        raise SourceError(f"example input file {p} does not exist")
    try:
        with np.load(p, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise SourceError(f"{p} is not a readable .npz file of numeric arrays: {exc}") from exc


MAX_EXAMPLE_BYTES = 1 << 30  # random example data made to run a model (per input)


def random_array(
    spec: TensorSpec, batch: int | None, dynamic: int = 2, seed: int = 0
) -> np.ndarray:
    """Random data for ``spec`` (dims without batch); ``batch`` None = no batch dim; -1 dims -> ``dynamic``."""
    shape = ([batch] if batch is not None else []) + [dynamic if d < 0 else d for d in spec.dims]
    # Checked before allocating: with memory overcommit a huge array may "succeed" and then
    # page the machine to death (random data is generated as float64, 8 bytes a value).
    if int(np.prod(shape, dtype=object)) * 8 > MAX_EXAMPLE_BYTES:
        raise SourceError(
            f"example data of shape {shape} for {spec.name!r} would take more than "
            f"{MAX_EXAMPLE_BYTES >> 30} GiB; check its dims, or give --example-input FILE.npz"
        )
    try:
        return _random(spec, shape, seed)
    except (MemoryError, ValueError) as exc:  # absurd dims, e.g. --input x:FP32:100000000000
        raise SourceError(
            f"cannot make example data of shape {shape} for {spec.name!r} ({exc}); "
            "check its dims, or give --example-input FILE.npz"
        ) from exc


def _random(spec: TensorSpec, shape: list[int], seed: int) -> np.ndarray:
    return dtypes.random_array(spec.dtype, tuple(shape), np.random.default_rng(seed))


def random_inputs(
    specs: Iterable[TensorSpec], batch: int | None, dynamic: int = 2, seed: int = 0
) -> dict[str, np.ndarray]:
    return {s.name: random_array(s, batch, dynamic, seed + i) for i, s in enumerate(specs)}


def resolve_examples(
    example: Mapping[str, Any] | Sequence[Any] | str | Path | Any | None,
    specs: Sequence[TensorSpec] = (),
    batch: int = 2,
) -> dict[str, np.ndarray]:
    """Example inputs from a dict, a single array, a ``.npz`` path, or random data for ``specs``."""
    if example is None:
        if not specs:
            raise SourceError(
                "the model must be run to learn its outputs: give example inputs "
                "(--example-input FILE.npz or --input NAME:DTYPE:DIMS)"
            )
        return random_inputs(specs, batch)
    if isinstance(example, (str, Path)):
        return load_npz(example)
    if isinstance(example, Mapping):
        return {str(k): np.asarray(v) for k, v in example.items()}
    if isinstance(example, (list, tuple)):
        return {f"INPUT__{i}": np.asarray(v) for i, v in enumerate(example)}
    return {"INPUT__0": np.asarray(example)}
