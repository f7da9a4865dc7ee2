"""Edits of ONNX graphs that Triton needs: rank-0 tensors made ``[1]``, values renamed safely.

:func:`rename_value` renames a value everywhere (subgraphs included), so that a user-facing
tensor name never collides with a graph-internal one (torch's exporter names internal values
after ops and modules: an output called ``embedding`` met an internal ``embedding``).

Triton has no scalar tensors: every config tensor needs a dim, and ``reshape: { shape: [] }`` is
refused for a model without a batch axis. A graph with a rank-0 input (the sampling rate ``sr``
of a voice-activity model, say) or output would therefore not load. :func:`lift_scalars`
rewrites the graph: the input ``sr`` becomes ``[1]`` followed by a Reshape to ``[]`` that
produces the value the graph always used, and a rank-0 output gets a Reshape to ``[1]``. The
names users see stay the same; the results are identical.
"""

from __future__ import annotations

from typing import Any

SUFFIX = "__scalar"  # the internal name the original rank-0 value takes


def scalar_names(model: Any) -> tuple[list[str], list[str]]:
    """Names of the rank-0 graph inputs (initializers excluded) and outputs."""
    initializers = {i.name for i in model.graph.initializer}

    def rank0(v: Any) -> bool:
        t = v.type.tensor_type
        return v.type.HasField("tensor_type") and t.HasField("shape") and len(t.shape.dim) == 0

    ins = [v.name for v in model.graph.input if v.name not in initializers and rank0(v)]
    outs = [v.name for v in model.graph.output if rank0(v)]
    return ins, outs


def lift_scalars(model: Any) -> list[str]:
    """Rewrite ``model`` in place (see the module docstring); returns the names changed."""
    import numpy as np
    from onnx import helper, numpy_helper

    ins, outs = scalar_names(model)
    if not ins and not outs:
        return []
    graph = model.graph
    taken = _all_names(graph)

    def fresh(base: str) -> str:
        name = base + SUFFIX
        while name in taken:
            name += "_"
        taken.add(name)
        return name

    nodes = []
    for name in ins:
        inner = fresh(name)
        _rename_uses(graph, name, inner)  # every consumer, subgraphs included
        shape = fresh(name + "_shape")
        graph.initializer.append(numpy_helper.from_array(np.zeros((0,), np.int64), shape))
        nodes.append(
            helper.make_node("Reshape", [name, shape], [inner], name=fresh(name + "_reshape"))
        )
        value = next(v for v in graph.input if v.name == name)
        value.type.tensor_type.shape.dim.add().dim_value = 1
    for name in outs:
        inner = fresh(name)
        for node in graph.node:  # the producer now writes the inner name
            node.output[:] = [inner if o == name else o for o in node.output]
        _rename_uses(graph, name, inner)
        shape = fresh(name + "_shape")
        graph.initializer.append(numpy_helper.from_array(np.ones((1,), np.int64), shape))
        graph.node.append(
            helper.make_node("Reshape", [inner, shape], [name], name=fresh(name + "_reshape"))
        )
        value = next(v for v in graph.output if v.name == name)
        value.type.tensor_type.shape.dim.add().dim_value = 1
    # Nodes must stay topologically sorted: the input reshapes go first.
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    return ins + outs


def _rename_uses(graph: Any, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` wherever a node reads it, in subgraphs too (outer-scope use)."""
    from onnx import AttributeProto

    for node in graph.node:
        node.input[:] = [new if i == old else i for i in node.input]
        for attr in node.attribute:
            subgraphs = (
                [attr.g] if attr.type == AttributeProto.GRAPH
                else list(attr.graphs) if attr.type == AttributeProto.GRAPHS
                else []
            )  # fmt: skip
            for sub in subgraphs:
                local = {v.name for v in sub.input} | {i.name for i in sub.initializer}
                if old not in local:  # a subgraph's own name of that spelling hides the outer one
                    _rename_uses(sub, old, new)


def _all_names(graph: Any) -> set[str]:
    from onnx import AttributeProto

    names = {v.name for v in (*graph.input, *graph.output, *graph.value_info)}
    names |= {i.name for i in graph.initializer}
    for node in graph.node:
        names |= {*node.input, *node.output, node.name}
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                names |= _all_names(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    names |= _all_names(sub)
    return names


def rename_value(graph: Any, old: str, new: str) -> None:
    """Rename the value ``old`` to ``new`` wherever it is defined or used, subgraphs included."""
    for v in (*graph.input, *graph.output, *graph.value_info):
        if v.name == old:
            v.name = new
    for init in graph.initializer:
        if init.name == old:
            init.name = new
    for node in graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
    _rename_uses(graph, old, new)


def set_output_names(model: Any, names: dict[str, str]) -> None:
    """Rename graph outputs ``{current: wanted}``; an internal value already called ``wanted``
    is moved aside first, so the graph stays valid."""
    graph = model.graph
    taken = _all_names(graph)
    for current, wanted in names.items():
        if current == wanted:
            continue
        if wanted in taken:
            aside = wanted + "__internal"
            while aside in taken:
                aside += "_"
            rename_value(graph, wanted, aside)
            taken.add(aside)
        rename_value(graph, current, wanted)
        taken.add(wanted)


def canonical_names(model: Any) -> bool:
    """Name the graph's nodes, internal values and initializers after their place in the graph.

    tf2onnx names the nodes it adds from a counter and emits constants in the order its
    optimizers met them, both of which change from one conversion to the next; with these
    names (``<op>_<i>``, ``<op>_<i>:<k>``, ``const_<j>`` by first use) and the initializers in
    that order, two conversions to the same graph are byte-identical. The graph's inputs and
    outputs keep their names. A graph with subgraphs (If/Loop bodies) is left as it is;
    returns whether it was renamed.
    """
    graph = model.graph
    if any(a.type in (a.GRAPH, a.GRAPHS) for n in graph.node for a in n.attribute):
        return False
    keep = {v.name for v in graph.input} | {v.name for v in graph.output} | {""}
    inits = {i.name for i in graph.initializer}
    new: dict[str, str] = {}
    for i, node in enumerate(graph.node):
        node.name = f"{node.op_type}_{i}"
        for name in node.input:
            if name in inits and name not in keep and name not in new:
                new[name] = f"const_{sum(v.startswith('const_') for v in new.values())}"
        for k, name in enumerate(node.output):
            if name not in keep:
                new[name] = f"{node.op_type}_{i}:{k}"
    for node in graph.node:
        node.input[:] = [new.get(n, n) for n in node.input]
        node.output[:] = [new.get(n, n) for n in node.output]
    for init in graph.initializer:
        init.name = new.get(init.name, init.name)
    order = {f"const_{j}": j for j in range(len(graph.initializer))}
    ordered = sorted(graph.initializer, key=lambda t: order.get(t.name, len(order)))
    infos = sorted(graph.value_info, key=lambda v: new.get(v.name, v.name))
    for info in infos:
        info.name = new.get(info.name, info.name)
    copies = [type(t)() for t in ordered]
    for c, t in zip(copies, ordered, strict=True):
        c.CopyFrom(t)
    del graph.initializer[:]
    graph.initializer.extend(copies)
    info_copies = [type(v)() for v in infos]
    for c, v in zip(info_copies, infos, strict=True):
        c.CopyFrom(v)
    del graph.value_info[:]
    graph.value_info.extend(info_copies)
    # Symbolic dims tf2onnx made up ("unk__<counter>") are numbered by first appearance too.
    dims: dict[str, str] = {}
    for value in (*graph.input, *graph.output, *graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param.startswith("unk__"):
                dim.dim_param = dims.setdefault(dim.dim_param, f"unk_{len(dims)}")
    return True
