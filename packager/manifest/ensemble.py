"""Ensembles: a Triton ``platform: "ensemble"`` model wired from ordered steps, and its checks.

An ensemble is a data-flow graph over *ensemble tensors*. Each step runs one member model;
its ``input_map`` says which ensemble tensor feeds each member input and its ``output_map``
names the ensemble tensor that each member output becomes (Triton's own key -> value order)::

    EnsembleStep("tokenizer", input_map=(("TEXT", "TEXT"),), output_map=(("INPUT_IDS", "ids"),))

:func:`wiring_issues` lists every reason Triton would refuse the wiring (or that would fail at
run time): unknown members or tensors, unwired inputs, dtype/shape disagreements between
producer and consumer, several producers, cycles, unproduced outputs and batch sizes larger
than a member accepts, each with a key path (``steps[1].inputs.ids``) relative to the ensemble.
It works on specs read back from config.pbtxt too (``validate``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from packager.errors import SpecError
from packager.manifest.yamlcheck import KeyPath, key_path
from packager.spec import ModelSpec, TensorSpec, VersionPolicy
from packager.spec import problems as spec_problems

ENSEMBLE = "ensemble"


@dataclass(frozen=True)
class EnsembleStep:
    """One step: run ``model_name`` (``model_version`` -1 = the newest served version)."""

    model_name: str
    model_version: int = -1
    input_map: tuple[tuple[str, str], ...] = ()  # member input -> ensemble tensor
    output_map: tuple[tuple[str, str], ...] = ()  # member output -> ensemble tensor

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_map", _pairs(self.input_map))
        object.__setattr__(self, "output_map", _pairs(self.output_map))


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple((str(k), str(v)) for k, v in items)


Issue = tuple[KeyPath, str]  # (key path relative to the ensemble, message)


@dataclass(frozen=True)
class _Port:
    """Where an ensemble tensor comes from or goes to, with its full shape (batch dim included)."""

    where: str  # human words: "steps[1] (classifier) output 'LOGITS'", "ensemble input"
    path: KeyPath  # where a problem with this end is reported
    step: int | None  # None for the ensemble's own inputs/outputs
    tensor: TensorSpec
    full_dims: tuple[int, ...]


def _full(dims: tuple[int, ...], max_batch_size: int) -> tuple[int, ...]:
    # Triton owns the batch dim of a batching model; comparing full shapes lets a non-batching
    # ensemble feed a batching member (its first dim becomes the batch) and still be checked.
    return (-1, *dims) if max_batch_size > 0 else tuple(dims)


def _dims_agree(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a, b, strict=True))


def _label(i: int, step: Any) -> str:
    return f"steps[{i}] ({step.model_name})"


def wiring_problems(spec: ModelSpec, members: Mapping[str, ModelSpec]) -> list[str]:
    """Every problem in the wiring of ensemble ``spec``, one line each (for ``validate``)."""
    return [f"{key_path(p)}: {m}" for p, m in wiring_issues(spec, members)]


def wiring_issues(spec: ModelSpec, members: Mapping[str, ModelSpec]) -> list[Issue]:
    """Every problem in the wiring of ensemble ``spec`` given its members' specs, with key paths
    (``("steps", 1, "inputs", "ids")``) relative to the ensemble."""
    out: list[Issue] = []
    steps = list(spec.ensemble_steps)
    if not steps:
        return [(("steps",), "an ensemble needs at least one step")]
    ens_inputs = {t.name: (i, t) for i, t in enumerate(spec.inputs)}
    ens_outputs = {t.name: (i, t) for i, t in enumerate(spec.outputs)}
    producers: dict[str, list[_Port]] = {
        n: [_Port("ensemble input", ("inputs", i), None, t, _full(t.dims, spec.max_batch_size))]
        for n, (i, t) in ens_inputs.items()
    }
    consumers: dict[str, list[_Port]] = {}
    known: dict[int, ModelSpec] = {}

    for i, step in enumerate(steps):
        here: KeyPath = ("steps", i)
        if step.model_name == spec.name:
            out.append(((*here, "model"), "an ensemble cannot run itself"))
            continue
        member = members.get(step.model_name)
        if member is None:
            have = ", ".join(sorted(n for n in members if n != spec.name)) or "none"
            out.append(
                ((*here, "model"), f"model {step.model_name!r} does not exist; models are: {have}")
            )
            continue
        known[i] = member
        if step.model_version != -1 and step.model_version < 1:
            out.append(((*here, "version"), "expected -1 (newest) or a positive version"))
        m_inputs = {t.name: t for t in member.inputs}
        m_outputs = {t.name: t for t in member.outputs}
        for role, mapping, tensors, pool in (
            ("input", step.input_map, consumers, m_inputs),
            ("output", step.output_map, producers, m_outputs),
        ):
            for key, tensor in mapping:
                t = pool.get(key)
                path = (*here, f"{role}s", key)
                if t is None:
                    out.append(
                        (
                            path,
                            f"model {member.name!r} has no {role} {key!r}; {role}s are: "
                            f"{', '.join(pool) or 'none'}",
                        )
                    )
                    continue
                where = f"{_label(i, step)} {role} {key!r}"
                full = _full(t.dims, member.max_batch_size)
                tensors.setdefault(tensor, []).append(_Port(where, path, i, t, full))
        wired = {k for k, _ in step.input_map}
        for t in member.inputs:
            if t.name not in wired and not t.optional:
                out.append(
                    (
                        (*here, "inputs"),
                        f"input {t.name!r} of model {member.name!r} is not wired; "
                        f"map it to a tensor: {{{t.name}: <tensor>}}",
                    )
                )
        if spec.max_batch_size > member.max_batch_size:
            out.append(
                (
                    ("max_batch_size",),
                    f"{spec.max_batch_size} is larger than the max_batch_size "
                    f"{member.max_batch_size} of {member.name!r} ({_label(i, step)}); use at most "
                    f"{member.max_batch_size}",
                )
            )

    for tensor, ports in producers.items():
        for extra in ports[1:]:
            out.append(
                (
                    extra.path,
                    f"tensor {tensor!r} is already produced by {ports[0].where}; "
                    "each ensemble tensor has exactly one producer",
                )
            )
    for tensor, ports in consumers.items():
        made = producers.get(tensor)
        for port in ports:
            if not made:
                have = ", ".join(sorted(producers)) or "none"
                out.append(
                    (
                        port.path,
                        f"wired to tensor {tensor!r}, which no step produces and which "
                        f"is not an ensemble input; tensors available: {have}",
                    )
                )
            else:
                out.extend(_agree(tensor, made[0], port))
    for name, (i, t) in ens_outputs.items():
        made = producers.get(name)
        if not made or made[0].step is None:
            out.append(
                (
                    ("outputs", i),
                    f"ensemble output {name!r} is not produced by any step; "
                    "map a step output to it",
                )
            )
            continue
        port = _Port(
            "the ensemble output", ("outputs", i), None, t, _full(t.dims, spec.max_batch_size)
        )
        out.extend(_agree(name, made[0], port))
    for name, (i, _) in ens_inputs.items():
        if name not in consumers and name not in ens_outputs:
            out.append((("inputs", i), f"ensemble input {name!r} is not used by any step"))
    out.extend(_cycle_issues(steps, known, producers, consumers))
    return out


def _agree(tensor: str, producer: _Port, consumer: _Port) -> list[Issue]:
    out: list[Issue] = []
    if producer.tensor.dtype != consumer.tensor.dtype:
        out.append(
            (
                consumer.path,
                f"dtype mismatch on tensor {tensor!r}: {producer.where} is "
                f"{producer.tensor.dtype.wire} but {consumer.where} expects "
                f"{consumer.tensor.dtype.wire}",
            )
        )
    if not _dims_agree(producer.full_dims, consumer.full_dims):
        out.append(
            (
                consumer.path,
                f"shape mismatch on tensor {tensor!r}: {producer.where} has "
                f"{list(producer.full_dims)} but {consumer.where} expects "
                f"{list(consumer.full_dims)} (batch dim included, -1 = any)",
            )
        )
    return out


def _cycle_issues(
    steps: list[Any],
    known: Mapping[int, ModelSpec],
    producers: Mapping[str, list[_Port]],
    consumers: Mapping[str, list[_Port]],
) -> list[Issue]:
    """Steps whose tensors depend on each other in a loop (Triton would never run them)."""
    edges: dict[int, set[int]] = {i: set() for i in known}
    for tensor, cons in consumers.items():
        for prod in producers.get(tensor, [])[:1]:
            if prod.step is None:
                continue
            for c in cons:
                if c.step is not None:
                    edges[prod.step].add(c.step)
    state: dict[int, int] = {}  # 1 = on the current path, 2 = done
    path: list[int] = []

    def visit(n: int) -> list[int] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return [*path[path.index(m) :], m]
            if m not in state and (found := visit(m)) is not None:
                return found
        path.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (cycle := visit(n)) is not None:
            chain = " -> ".join(_label(i, steps[i]) for i in cycle)
            return [
                (("steps",), f"the steps form a cycle: {chain}; an ensemble must not loop back")
            ]
    return []


def plan_ensemble(
    name: str,
    steps: Sequence[EnsembleStep],
    members: Mapping[str, ModelSpec],
    *,
    outputs: Sequence[TensorSpec | str],
    inputs: Sequence[TensorSpec | str] | None = None,
    max_batch_size: int | None = None,
    version_policy: VersionPolicy | None = None,
    parameters: Mapping[str, str] | None = None,
) -> tuple[ModelSpec | None, list[Issue]]:
    """The ensemble's spec and every issue found (spec None when tensors cannot be resolved).

    ``inputs``/``outputs`` given by name take dtype and dims from the step that consumes or
    produces them; ``inputs`` None means every tensor some step consumes and none produces.
    ``max_batch_size`` None means the smallest of the members'.
    """
    steps = tuple(steps)
    found = [m for s in steps if (m := members.get(s.model_name)) is not None]
    if max_batch_size is None:
        max_batch_size = min((m.max_batch_size for m in found), default=0)
    consumed: dict[str, TensorSpec] = {}
    produced: dict[str, TensorSpec] = {}
    for s in steps:
        member = members.get(s.model_name)
        if member is None:
            continue
        ins = {t.name: t for t in member.inputs}
        outs = {t.name: t for t in member.outputs}
        for key, tensor in s.input_map:
            if key in ins:
                consumed.setdefault(tensor, _rebatch(ins[key], tensor, member, max_batch_size))
        for key, tensor in s.output_map:
            if key in outs:
                produced.setdefault(tensor, _rebatch(outs[key], tensor, member, max_batch_size))
    issues: list[Issue] = []
    if inputs is None:
        inputs = [n for n in consumed if n not in produced]

    def resolve(items: Sequence[TensorSpec | str], role: str) -> list[TensorSpec]:
        pool = consumed if role == "inputs" else produced
        resolved = []
        for i, item in enumerate(items):
            if isinstance(item, TensorSpec):
                resolved.append(item)
            elif item in pool:
                resolved.append(TensorSpec(item, pool[item].dtype, pool[item].dims))
            else:
                verb = "consumes" if role == "inputs" else "produces"
                issues.append(
                    (
                        (role, i),
                        f"no step {verb} a tensor named {item!r}, so its dtype and dims "
                        "are unknown; wire it in a step or declare {name, dtype, dims}",
                    )
                )
        return resolved

    spec = ModelSpec(
        name=name,
        platform=ENSEMBLE,
        max_batch_size=max_batch_size,
        inputs=tuple(resolve(inputs, "inputs")),
        outputs=tuple(resolve(outputs, "outputs")),
        version_policy=version_policy,
        parameters=dict(parameters or {}),
        ensemble_steps=steps,
    )
    if issues:
        # Wiring checks still run on what resolved, so one pass shows every problem.
        return None, issues + [i for i in wiring_issues(spec, members) if i[0][0] == "steps"]
    issues = [((), p) for p in spec_problems(spec)] + wiring_issues(spec, members)
    return (None if issues else spec), issues


def ensemble_spec(
    name: str,
    steps: Sequence[EnsembleStep],
    members: Mapping[str, ModelSpec],
    **options: Any,
) -> ModelSpec:
    """The checked spec of an ensemble (see :func:`plan_ensemble`); raise :class:`SpecError`
    listing every problem."""
    spec, issues = plan_ensemble(name, steps, members, **options)
    if spec is None:
        raise SpecError(
            [f"{key_path(p)}: {m}" if p else m for p, m in issues], subject=f"ensemble {name!r}"
        )
    return spec


def _rebatch(t: TensorSpec, name: str, member: ModelSpec, ensemble_mbs: int) -> TensorSpec:
    """Member tensor ``t`` as ensemble tensor ``name`` (dims relative to the ensemble's batching)."""
    dims = t.dims
    if member.max_batch_size > 0 and ensemble_mbs == 0:
        dims = (-1, *dims)
    elif member.max_batch_size == 0 and ensemble_mbs > 0:
        dims = dims[1:] or (1,)
    return TensorSpec(name, t.dtype, dims, label_filename=t.label_filename)
