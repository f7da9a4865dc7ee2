"""The memory one ONNX graph needs: its weights, and its activations at a given input shape.

Weights are the bytes of every initializer and ``Constant`` (external data included, read from
the tensors' dims, never loaded). Activations come from ONNX shape inference with the inputs'
dims made concrete (the batch dim set to the max batch size, symbolic dims resolved by name),
then a **peak-liveness** sweep over the nodes in their (topological) order: a tensor is live
from the node that produces it to the last node that reads it, and the estimate is the largest
sum of live tensor bytes at any node. ONNX Runtime's memory planner reuses a buffer once its
tensor is dead, so summing every tensor of the graph would overstate a deep model many times;
peak liveness is what a planner that reuses perfectly needs. Tensors whose shape stays unknown
are listed, not guessed: the figure is then a lower bound.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packager import dtypes
from packager.errors import DTypeError, SourceError

# Initializers above this size are never shape data (Reshape targets and the like are tiny):
# their bytes are dropped before shape inference so that a large model is not copied twice.
_STRIP_ABOVE = 1 << 20


@dataclass(frozen=True)
class GraphMemory:
    """Weights and activation peak of one ONNX graph at one input shape."""

    weight_bytes: int
    activation_bytes: int  # peak of live tensors whose size is known
    unknown: tuple[str, ...] = ()  # tensors whose size stayed unknown (not counted)
    unresolved: tuple[str, ...] = ()  # inputs with a dim that nothing gave a value
    problem: str | None = None  # why no activation figure could be made at all

    @property
    def lower_bound(self) -> bool:
        """The activation figure leaves something out."""
        return bool(self.unknown or self.unresolved or self.problem)


def graph_memory(path: Path, input_shapes: Mapping[str, Sequence[int]] = {}) -> GraphMemory:
    """Weights and activations of the ONNX file at ``path``.

    ``input_shapes``: per graph input, the dims to use, batch included (-1 = unknown there). A
    symbolic dim that one input's shape fixes takes that value wherever else it appears (an
    attention mask's sequence axis, once the ids' is given). When an input's rank differs from
    the graph's (a config ``reshape``), only its first (batch) dim is used.
    """
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several types for a damaged file
        raise SourceError(f"cannot read {path} as ONNX: {exc}") from exc
    graph = model.graph
    weights = sum(_tensor_bytes(t) for t in _weight_tensors(graph))
    for t in graph.initializer:
        if len(t.raw_data) > _STRIP_ABOVE:
            t.ClearField("raw_data")
    known = _fix_inputs(graph, input_shapes)
    unresolved = tuple(_unresolved(graph))
    del graph.value_info[:]  # stale symbolic shapes from the exporter would mask the new ones
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # onnx raises InferenceError, ValidationError, RuntimeError...
        return GraphMemory(weights, 0, (), unresolved, f"{exc}".strip())
    sizes: dict[str, int | None] = {}
    _collect_sizes(inferred.graph, known, sizes)
    unknown: set[str] = set()
    peak = _peak(inferred.graph, sizes, unknown)
    return GraphMemory(weights, peak, tuple(sorted(unknown)), unresolved)


# --------------------------------------------------------------------------- weights


def _weight_tensors(graph: Any) -> Iterable[Any]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
        for sub in _subgraphs(node):
            yield from _weight_tensors(sub)


def _tensor_bytes(t: Any) -> int:
    if t.data_type == dtypes.BY_WIRE["BYTES"].onnx:
        return sum(len(s) for s in t.string_data)
    return math.prod(t.dims) * _itemsize(t.data_type)


def _itemsize(elem_type: int) -> int:
    try:
        return dtypes.from_onnx(elem_type).itemsize
    except DTypeError:  # types Triton cannot carry (float8, int4...) still occur inside graphs
        from onnx import helper

        try:
            return max(1, helper.tensor_dtype_to_np_dtype(elem_type).itemsize)
        except (KeyError, ValueError, TypeError):
            return 1


# --------------------------------------------------------------------------- shapes


def _graph_inputs(graph: Any) -> list[Any]:
    initializers = {t.name for t in graph.initializer}
    return [v for v in graph.input if v.name not in initializers]


def _unresolved(graph: Any) -> list[str]:
    return [
        v.name
        for v in _graph_inputs(graph)
        if not all(d.HasField("dim_value") for d in v.type.tensor_type.shape.dim)
    ]


def _fix_inputs(graph: Any, input_shapes: Mapping[str, Sequence[int]]) -> dict[str, int]:
    """Make the graph inputs' dims concrete where the shapes say what they are; returns the
    value of each symbolic dim that they fixed."""
    symbols: dict[str, int] = {}
    inputs = _graph_inputs(graph)
    for value in inputs:  # first learn which symbol each given dim fixes
        wanted = input_shapes.get(value.name, ())
        dims = value.type.tensor_type.shape.dim
        for d, n in zip(dims, wanted if len(wanted) == len(dims) else wanted[:1], strict=False):
            if n >= 0 and d.HasField("dim_param"):
                symbols.setdefault(d.dim_param, n)
    for value in inputs:
        wanted = input_shapes.get(value.name, ())
        dims = value.type.tensor_type.shape.dim
        given = wanted if len(wanted) == len(dims) else wanted[:1]  # ranks differ: batch only
        for i, d in enumerate(dims):
            n = given[i] if i < len(given) else -1
            if n < 0 and d.HasField("dim_param"):
                n = symbols.get(d.dim_param, -1)
            if n >= 0:
                d.dim_value = n
    for value in graph.output:  # declared output shapes must agree with the new input dims
        for d in value.type.tensor_type.shape.dim:
            if d.HasField("dim_param"):
                if d.dim_param in symbols:
                    d.dim_value = symbols[d.dim_param]
                else:
                    d.Clear()
    return symbols


def _collect_sizes(graph: Any, symbols: Mapping[str, int], out: dict[str, int | None]) -> None:
    for value in [*graph.input, *graph.value_info, *graph.output]:
        out[value.name] = _value_bytes(value, symbols)
    for node in graph.node:
        for sub in _subgraphs(node):
            _collect_sizes(sub, symbols, out)


def _value_bytes(value: Any, symbols: Mapping[str, int]) -> int | None:
    if not value.type.HasField("tensor_type"):
        return None  # sequences, maps, optionals: no fixed size
    tt = value.type.tensor_type
    if not tt.elem_type or not tt.HasField("shape"):
        return None
    if tt.elem_type == dtypes.BY_WIRE["BYTES"].onnx:
        return None  # strings have no size until they exist
    n = 1
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            n *= d.dim_value
        elif d.HasField("dim_param") and d.dim_param in symbols:
            n *= symbols[d.dim_param]
        else:
            return None
    return n * _itemsize(tt.elem_type)


# --------------------------------------------------------------------------- liveness


def _subgraphs(node: Any) -> list[Any]:
    subs = []
    for attr in node.attribute:
        if attr.HasField("g"):
            subs.append(attr.g)
        subs.extend(attr.graphs)
    return subs


def _outer_reads(graph: Any) -> set[str]:
    """Names a subgraph reads from enclosing scopes (ONNX lets If/Loop bodies do that)."""
    defined = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    reads: set[str] = set()
    for node in graph.node:
        reads.update(n for n in node.input if n)
        for sub in _subgraphs(node):
            reads |= _outer_reads(sub)
        defined.update(node.output)
    return reads - defined


def _peak(graph: Any, sizes: Mapping[str, int | None], unknown: set[str]) -> int:
    """Largest sum of live tensor bytes at any node of ``graph`` (values read from outer scopes
    are counted by the outer graph)."""
    nodes = list(graph.node)
    constants = {t.name for t in graph.initializer}
    constants |= {o for n in nodes if n.op_type == "Constant" for o in n.output}  # weights
    first: dict[str, int] = {v.name: 0 for v in graph.input if v.name not in constants}
    last: dict[str, int] = dict(first)
    extra = [0] * len(nodes)  # a subgraph's own peak while its node runs
    for i, node in enumerate(nodes):
        reads = [n for n in node.input if n]
        for sub in _subgraphs(node):
            reads.extend(_outer_reads(sub))
            extra[i] = max(extra[i], _peak(sub, sizes, unknown))
        for name in reads:
            if name in first:
                last[name] = i
        for name in node.output:
            if name and name not in constants:
                first.setdefault(name, i)
                last.setdefault(name, i)  # produced but never read: lives while made
    end = max(len(nodes) - 1, 0)
    for value in graph.output:
        if value.name in first:
            last[value.name] = end  # returned to the caller: alive to the end
    delta = [0] * (len(nodes) + 1)
    for name, start in first.items():
        size = sizes.get(name)
        if size is None:
            unknown.add(name)
            continue
        delta[start] += size
        delta[last[name] + 1] -= size
    peak = live = 0
    for i in range(len(nodes)):
        live += delta[i]
        peak = max(peak, live + extra[i])
    if not nodes:
        peak = delta[0]
    return peak
