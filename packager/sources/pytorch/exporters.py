"""The two exporters behind :mod:`packager.sources.pytorch.export`: ONNX (torch.export based) and TorchScript.

Each takes the generated wrapper module (fixed named tensor inputs, flat tuple of tensor
outputs) and writes the artifact into a work directory. Exporter chatter (progress prints,
logs, deprecation notices) is silenced; failures become :class:`ExportError` with the root
cause and a hint at what to change.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from packager import dtypes
from packager.errors import ExportError
from packager.formats import FORMATS
from packager.sources import Signature
from packager.sources.onnx_edits import set_output_names
from packager.sources.onnx_external import ONNX_SINGLE_FILE_LIMIT, external_locations
from packager.spec import TensorSpec


@contextlib.contextmanager
def quiet(caught: list[warnings.WarningMessage]) -> Iterator[None]:
    """Silence the exporters' prints, logs and warnings; collect the warnings in ``caught``."""
    saved = {n: logging.getLogger(n).level for n in ("torch", "onnxscript", "onnx_ir")}
    for n in saved:
        logging.getLogger(n).setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with (
            warnings.catch_warnings(record=True) as got,
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
        ):
            warnings.simplefilter("always")
            try:
                yield
            finally:
                caught.extend(got)
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    # Callers add their own full stop after the quoted line.
    return text.splitlines()[0].rstrip(".:") if text else repr(exc)


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception: torch.onnx wraps the real reason in a long report."""
    seen = {id(exc)}
    while (nxt := exc.__cause__ or exc.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        exc = nxt
    return exc


# --- ONNX --------------------------------------------------------------------------------------


def export_onnx(
    wrapper: Any,
    args: tuple[Any, ...],
    output_names: list[str],
    dynamic: Mapping[str, frozenset[int]],
    opset: int | None,
    workdir: Path,
    auto: Mapping[str, frozenset[int]] | None = None,
) -> tuple[dict[str, Path], int, dict[str, dict[int, int]]]:
    """Export with torch.export; returns the files for the version folder, the real opset and
    the ``auto`` axes torch.export specialised (name -> {axis: size}).

    Axis 0 of every input, and the axes in ``dynamic``, become symbolic dims. The axes in
    ``auto`` (found dynamic by running the module) are left to torch.export's own shape logic
    (``Dim.AUTO``): it keeps them symbolic unless the model's code fixes them (a reshape to a
    constant, an unrolled nn.LSTM), and then they are exported at the example's size.
    The weights are stored inside ``model.onnx`` (one self-contained file) unless that would
    pass protobuf's 2 GB limit; then the external data file the graph names is returned beside it.
    """
    import onnx
    import torch

    input_names = list(dynamic)
    auto = auto or {}
    shapes = {
        n: {ax: torch.export.Dim.DYNAMIC for ax in sorted({0} | set(dynamic[n]))}
        | {ax: torch.export.Dim.AUTO for ax in sorted(auto.get(n, ()))}
        for n in input_names
    }
    # Exported under placeholder names, renamed afterwards: the exporter names internal values
    # after ops and modules, and a wanted name such as "embedding" may already be taken.
    placeholders = [f"tp_output__{i}" for i in range(len(output_names))]
    caught: list[warnings.WarningMessage] = []
    try:
        with quiet(caught):
            # torch.export first (the ONNX exporter would run it too): its program says which
            # axes the model's shape logic fixed, and the ONNX translation reuses it.
            exported = torch.export.export(
                wrapper, args, kwargs=None, dynamic_shapes=shapes, strict=False
            )
            specialised = _specialised(exported, input_names, auto)
            program = torch.onnx.export(
                exported,
                args,
                None,
                input_names=input_names,
                output_names=placeholders,
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
    except Exception as exc:
        root = root_cause(exc)
        raise ExportError(
            f"cannot export the model to ONNX: {type(root).__name__}: {first_line(root)}. {_onnx_hint(root)}"
        ) from exc
    if program is None:  # pragma: no cover - only the legacy exporter returns None
        raise ExportError("torch.onnx.export returned no program")
    dst = workdir / FORMATS["onnx"].artifact
    size = sum(t.numel() * t.element_size() for t in wrapper.state_dict().values())
    program.save(str(dst), external_data=size >= ONNX_SINGLE_FILE_LIMIT)
    model = onnx.load(str(dst), load_external_data=False)
    set_output_names(model, dict(zip(placeholders, output_names, strict=True)))
    _drop_stack_traces(model.graph)
    # The ONNX translation still names a specialised dim with a symbol: the graph says its size.
    for value in model.graph.input:
        for ax, size in specialised.get(value.name, {}).items():
            value.type.tensor_type.shape.dim[ax].dim_value = size
    onnx.save(model, str(dst))  # external weights, if any, keep their file and location
    files = {dst.name: dst}
    for loc in external_locations(model):
        # Only for > 2 GB models: the data file must sit beside model.onnx in the version folder.
        if "/" in loc or "\\" in loc or not (workdir / loc).is_file():
            raise ExportError(
                f"the exported ONNX graph refers to external data {loc!r} that was not written"
            )
        files[loc] = workdir / loc
    real = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset is not None and real != opset:
        raise ExportError(
            f"the ONNX exporter could not produce opset {opset} (it made opset {real}); "
            f"use --opset {real} or leave --opset out"
        )
    return files, int(real), specialised


def _drop_stack_traces(graph: Any) -> None:
    """Remove the exporter's per-node Python stack traces: they name this machine's paths (the
    export's temporary folder, the user's source files), so two builds of one model would
    differ in their bytes and the artifact would carry local paths into a deployment."""
    for node in graph.node:
        kept = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        if len(kept) != len(node.metadata_props):
            copies = [type(p)() for p in kept]
            for c, p in zip(copies, kept, strict=True):
                c.CopyFrom(p)
            del node.metadata_props[:]
            node.metadata_props.extend(copies)
        for attr in node.attribute:
            if attr.HasField("g"):
                _drop_stack_traces(attr.g)
            for sub in attr.graphs:
                _drop_stack_traces(sub)


def _specialised(
    exported: Any, input_names: list[str], auto: Mapping[str, frozenset[int]]
) -> dict[str, dict[int, int]]:
    """The ``auto`` axes whose size the exported program holds as a number, not a symbol."""
    from torch.fx.experimental.symbolic_shapes import is_concrete_int

    placeholders = [
        n for n in exported.graph.nodes if n.op == "placeholder" and n.name in set(input_names)
    ]
    found: dict[str, dict[int, int]] = {}
    for node in placeholders:
        val = node.meta.get("val")
        if val is None:
            continue
        for ax in sorted(auto.get(node.name, ())):
            # A specialised dim can still be a SymInt whose expression is a constant.
            if ax < len(val.shape) and is_concrete_int(val.shape[ax]):
                found.setdefault(node.name, {})[ax] = int(val.shape[ax])
    return found


def _onnx_hint(root: BaseException) -> str:
    text = f"{type(root).__name__} {root}"
    if "data-dependent" in text or "GuardOnDataDependent" in text:
        return (
            "forward() has Python control flow (if/while) or shapes that depend on tensor values, "
            "which torch.export cannot capture. Use tensor ops (torch.where, torch.cond) instead of "
            "Python branches, or try --format torchscript --torchscript-mode script"
        )
    if "Constraints violated" in text or "specialized" in text:
        return (
            "The model fixes the size of an axis that must be dynamic (axis 0 is always dynamic so "
            "that Triton can batch requests); remove hard-coded sizes such as x.view(2, -1)"
        )
    return (
        "Make forward() exportable with torch.export (https://pytorch.org/docs/stable/export.html) "
        "or try --format torchscript"
    )


def onnx_signature(path: Path, out_dynamic: Mapping[str, frozenset[int]]) -> Signature:
    """Inputs/outputs as the graph declares them; a symbolic dim is -1."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}

    def spec(v: Any) -> TensorSpec:
        dims = tuple(
            d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim
        )
        return TensorSpec(v.name, dtypes.from_onnx(v.type.tensor_type.elem_type), dims)

    inputs = tuple(spec(v) for v in graph.input if v.name not in inits)
    outputs = tuple(spec(v) for v in graph.output)
    for out in outputs:
        fixed = sorted(
            a for a in out_dynamic.get(out.name, ()) if a < len(out.dims) and out.dims[a] != -1
        )
        if fixed:
            raise ExportError(
                f"output {out.name!r} axis {fixed[0]} was declared dynamic but the exported graph fixes "
                f"it at {out.dims[fixed[0]]}; declare the input axis it follows as dynamic instead"
            )
    return Signature(inputs, outputs)


# --- TorchScript -------------------------------------------------------------------------------


def export_torchscript(wrapper: Any, args: tuple[Any, ...], mode: str, dst: Path) -> list[str]:
    """Trace or script ``wrapper`` into ``dst``; returns the tracer's warnings, once each."""
    import torch

    caught: list[warnings.WarningMessage] = []
    try:
        with quiet(caught):
            if mode == "script":
                compiled = torch.jit.script(wrapper)
            else:
                # check_trace off: verification compares the saved file on two batch sizes instead.
                compiled = torch.jit.trace(wrapper, args, check_trace=False)
            compiled.save(str(dst))
        stable_serialization_id(dst)
    except Exception as exc:
        root = root_cause(exc)
        advice = (
            "torch.jit.script understands a typed subset of Python (no numpy, no **kwargs, "
            "no dynamic attributes); try the default --torchscript-mode trace"
            if mode == "script"
            else "Tracing needs a forward() that computes with torch ops on tensors; "
            "try --torchscript-mode script or --format onnx"
        )
        raise ExportError(
            f"cannot {mode} the model to TorchScript: {type(root).__name__}: {first_line(root)}. {advice}"
        ) from exc
    notes = (
        str(w.message).strip().splitlines()[0]
        for w in caught
        if issubclass(w.category, torch.jit.TracerWarning)
    )
    return list(dict.fromkeys(notes))


def stable_serialization_id(path: Path) -> None:
    """Replace the random ``.data/serialization_id`` torch.jit.save writes into every archive
    with one derived from the archive's other contents, so that two exports of one model are
    byte-identical. The member is stored uncompressed: its bytes and CRC are patched in place
    (local header or data descriptor, and the central directory), the layout is untouched."""
    import hashlib
    import struct
    import zipfile
    import zlib

    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        target = next((i for i in infos if i.filename.endswith(".data/serialization_id")), None)
        if target is None or target.compress_type != zipfile.ZIP_STORED:
            return
        digest = hashlib.sha256()
        for info in infos:
            if info is not target:
                digest.update(info.filename.encode())
                digest.update(zf.read(info))
    size = target.file_size
    new = str(int(digest.hexdigest(), 16))[:size].rjust(size, "0").encode()
    old_crc, crc = struct.pack("<I", target.CRC), struct.pack("<I", zlib.crc32(new))
    head = target.header_offset
    name_len, extra_len = struct.unpack("<HH", data[head + 26 : head + 30])
    start = head + 30 + name_len + extra_len
    data[start : start + size] = new
    if data[head + 14 : head + 18] == old_crc:
        data[head + 14 : head + 18] = crc
    if target.flag_bits & 0x08:  # a data descriptor after the bytes holds the CRC
        at = start + size + (4 if data[start + size : start + size + 4] == b"PK\x07\x08" else 0)
        if data[at : at + 4] == old_crc:
            data[at : at + 4] = crc
    name = target.filename.encode()
    at = data.find(b"PK\x01\x02")
    while at != -1:
        n = struct.unpack("<H", data[at + 28 : at + 30])[0]
        if data[at + 46 : at + 46 + n] == name and data[at + 16 : at + 20] == old_crc:
            data[at + 16 : at + 20] = crc
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))


def observed_signature(
    arrays: Mapping[str, np.ndarray],
    dynamic: Mapping[str, frozenset[int]],
    runs: Sequence[Mapping[str, np.ndarray]],
    out_dynamic: Mapping[str, frozenset[int]],
) -> Signature:
    """TorchScript records no shapes: inputs from the examples; outputs from several runs (other
    batch sizes, dynamic input axes smaller and larger), where a dim that changed in any of
    them is dynamic. (One smaller size is not enough: a ceil-mode pooling maps 12 and 11 to the
    same output size, 13 to another.)"""
    inputs = tuple(
        TensorSpec(
            n,
            dtypes.from_numpy(a.dtype),
            tuple(-1 if i == 0 or i in dynamic.get(n, ()) else d for i, d in enumerate(a.shape)),
        )
        for n, a in arrays.items()
    )
    outputs = []
    for name, a in runs[0].items():
        shapes = [r[name].shape for r in runs]
        if len({len(s) for s in shapes}) > 1:
            raise ExportError(
                f"output {name!r} changes rank with the input sizes ({', '.join(map(str, shapes))})"
            )
        dims = tuple(
            -1 if len({s[i] for s in shapes}) > 1 or i in out_dynamic.get(name, ()) else x
            for i, x in enumerate(a.shape)
        )
        outputs.append(TensorSpec(name, dtypes.from_numpy(a.dtype), dims))
    return Signature(inputs, tuple(outputs))
