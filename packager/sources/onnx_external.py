"""ONNX external data: the files a graph's tensors point to, checked without reading the weights.

A tensor stored outside the ``.onnx`` protobuf names its file (``location``, relative to the
model file), an ``offset`` and a ``length`` in its ``external_data`` entries. Protobuf caps one
message at 2 GB, so every larger model keeps its weights this way; Triton's ONNX Runtime backend
and ONNX Runtime itself load them from beside ``model.onnx``. Everything here reads only the
graph (``onnx.load(..., load_external_data=False)``) and the files' sizes: never the weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

# protobuf cannot serialize a message of 2 GiB or more; keep a margin for the graph itself.
# An exporter writes external data files above this size, one self-contained file below it.
ONNX_SINGLE_FILE_LIMIT = 2 * 1024**3 - 64 * 1024**2
# A model file that arrives with external data is inlined into one model.onnx only below this:
# inlining holds the whole model in memory (about twice, while it is serialized), and Triton
# loads a model.onnx with its data files beside it just as well. Above, the files are kept.
INLINE_LIMIT = 256 * 1024**2

_STRING = 8  # TensorProto.STRING
_PACKED_4BIT = (21, 22, 23)  # UINT4, INT4, FLOAT4E2M1


@dataclass(frozen=True)
class ExternalRef:
    """One tensor's bytes in an external file."""

    tensor: str
    location: str  # as the graph records it, relative to the model file
    offset: int
    length: int | None  # None: the graph does not say (the tensor's own size is used)
    nbytes: int | None  # the tensor's size from its dims and type (None: not computable)

    @property
    def needed(self) -> int | None:
        """Bytes the file must hold from ``offset``."""
        return self.length if self.length is not None else self.nbytes


def external_refs(model: Any) -> list[ExternalRef]:
    """Every tensor of ``model`` (initializers, Constant attributes, subgraphs) kept outside it."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    out = []
    for t in _get_all_tensors(model):
        if not uses_external_data(t):
            continue
        info = {e.key: e.value for e in t.external_data}
        length = info.get("length")
        out.append(
            ExternalRef(
                tensor=t.name,
                location=info.get("location", ""),
                offset=int(info.get("offset") or 0),
                length=int(length) if length else None,
                nbytes=_nbytes(t),
            )
        )
    return out


def external_locations(model: Any) -> list[str]:
    """File names of every external data blob an ONNX model refers to, in graph order."""
    locs: list[str] = []
    for ref in external_refs(model):
        if ref.location not in locs:
            locs.append(ref.location)
    return locs


def location_problem(location: str, reserved: Iterable[str] = ()) -> str | None:
    """Why ``location`` cannot be a file inside a version folder (None: it can)."""
    if not location:
        return "an external data entry with no location"
    path = PurePosixPath(location)
    if "\\" in location or path.is_absolute() or ".." in path.parts:
        return f"external data location {location!r} leaves the model's folder"
    if any(part.startswith(".") for part in path.parts):
        return f"external data location {location!r} is a hidden file (Triton skips such names)"
    if location in set(reserved):
        return f"external data location {location!r} collides with a file the repository writes"
    return None


def data_problems(model: Any, folder: Path, what: str, reserved: Iterable[str] = ()) -> list[str]:
    """Missing, misplaced or truncated external data of ``model`` whose files live in ``folder``:
    one line per data file."""
    problems: list[str] = []
    by_location: dict[str, list[ExternalRef]] = {}
    for ref in external_refs(model):
        by_location.setdefault(ref.location, []).append(ref)
    for location, refs in by_location.items():
        problem = location_problem(location, reserved)
        file = folder / location
        if problem is None and not file.is_file():
            problem = f"external data file {location} is missing (tensor {refs[0].tensor!r})"
        if problem is not None:
            problems.append(f"{what}: {problem}")
            continue
        size = file.stat().st_size
        short = [r for r in refs if r.needed is not None and r.offset + r.needed > size]
        if short:
            first = short[0]
            more = f" ({len(short) - 1} more tensors do not fit either)" if len(short) > 1 else ""
            problems.append(
                f"{what}: external data file {location} is truncated: it has {size} bytes and "
                f"tensor {first.tensor!r} needs bytes {first.offset}..{first.offset + (first.needed or 0)}"
                + more
            )
    return problems


def external_bytes(model: Any, folder: Path) -> int:
    """Bytes of the external data files of ``model`` that exist in ``folder`` (each once)."""
    total = 0
    for loc in external_locations(model):
        file = folder / loc
        if location_problem(loc) is None and file.is_file():
            total += file.stat().st_size
    return total


def data_record(files: Mapping[str, Path], artifact: str) -> list[dict[str, Any]]:
    """build.json's list of a version's external data files: name and size, sorted (their
    hashes are in SHA256SUMS). ``files``: name in the version folder -> file to copy there."""
    return [
        {"file": name, "bytes": src.stat().st_size}
        for name, src in sorted(files.items())
        if name != artifact
    ]


def _nbytes(t: Any) -> int | None:
    from onnx import helper

    try:
        itemsize = helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    except (KeyError, ValueError, TypeError):
        return None
    if itemsize == 0 or t.data_type == _STRING:
        return None
    if t.data_type in _PACKED_4BIT:  # two values per byte
        return math.ceil(math.prod(t.dims) / 2)
    return math.prod(t.dims) * itemsize
