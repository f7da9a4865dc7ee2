"""The scheduling parts of a model config beyond dynamic batching: the sequence batcher with its
control tensors and implicit state, and the rate limiter of an instance group.

Frozen dataclasses like those in :mod:`packager.spec` (which holds them on a ``ModelSpec``), and
the rules Triton 2.51 applies to them when it loads a model (``ValidateModelConfig`` in Triton's
core), so that a config Triton would refuse is refused at build time with what to change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from packager import dtypes
from packager.dtypes import DType

# Control kinds (model_config.proto ModelSequenceBatching.Control.Kind), by the short names of
# the CLI (``--sequence-control start=START``) and the manifest.
CONTROL_KINDS: dict[str, str] = {
    "start": "CONTROL_SEQUENCE_START",
    "end": "CONTROL_SEQUENCE_END",
    "ready": "CONTROL_SEQUENCE_READY",
    "corrid": "CONTROL_SEQUENCE_CORRID",
}
# The boolean controls carry (false, true) in one of these dtypes; CORRID carries the sequence id.
_FLAG_DTYPES = ("INT32", "FP32", "BOOL")
_CORRID_DTYPES = ("UINT64", "INT64", "UINT32", "INT32", "BYTES")
# Triton's own default when max_sequence_idle_microseconds is 0 or unset (1 s).
DEFAULT_IDLE_US = 1_000_000


@dataclass(frozen=True)
class SequenceControl:
    """One control tensor the sequence batcher feeds the model (``control_input``)."""

    kind: str  # a value of CONTROL_KINDS, e.g. "CONTROL_SEQUENCE_START"
    name: str  # the model input that receives it
    dtype: DType | str = "INT32"  # START/END/READY: INT32|FP32|BOOL; CORRID: the id type

    def __post_init__(self) -> None:
        kind = CONTROL_KINDS.get(self.kind.lower(), self.kind)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "dtype", dtypes.parse(self.dtype))

    @property
    def wire(self) -> str:
        return dtypes.parse(self.dtype).wire

    @property
    def is_flag(self) -> bool:
        return self.kind != "CONTROL_SEQUENCE_CORRID"


@dataclass(frozen=True)
class SequenceState:
    """An implicit state: the server keeps output ``output_name`` of one request of a sequence
    and feeds it back as input ``input_name`` of the next; the first request gets zeros."""

    input_name: str
    output_name: str
    dtype: DType
    dims: tuple[int, ...]  # without the batch dim when the model batches; -1 only with no batch

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", dtypes.parse(self.dtype))
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))


@dataclass(frozen=True)
class SequenceBatching:
    """``sequence_batching``: every request of a sequence goes to the same model instance.

    ``direct`` gives each sequence a batch slot of its own; ``oldest`` batches requests of up to
    ``max_candidate_sequences`` sequences, oldest first (``preferred_batch_sizes`` and
    ``max_queue_delay_us`` are the oldest strategy's).
    """

    strategy: Literal["direct", "oldest"] = "direct"
    max_sequence_idle_us: int = DEFAULT_IDLE_US
    controls: tuple[SequenceControl, ...] = ()
    states: tuple[SequenceState, ...] = ()
    max_candidate_sequences: int = 0  # oldest; 0 = Triton's default (1)
    preferred_batch_sizes: tuple[int, ...] = ()  # oldest
    max_queue_delay_us: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "controls", tuple(self.controls))
        object.__setattr__(self, "states", tuple(self.states))
        object.__setattr__(
            self, "preferred_batch_sizes", tuple(int(b) for b in self.preferred_batch_sizes)
        )


@dataclass(frozen=True)
class RateLimitResource:
    """One resource an instance needs to execute (``rate_limiter.resources``)."""

    name: str
    count: int = 1
    global_: bool = False  # shared by every device, not per device

    @classmethod
    def parse(cls, text: str) -> RateLimitResource:
        """``NAME``, ``NAME:COUNT`` or ``NAME:COUNT:global``."""
        name, _, rest = text.partition(":")
        count, _, scope = rest.partition(":")
        try:
            n = int(count) if count else 1
        except ValueError:
            n = -1
        if not name or n < 0 or scope not in ("", "global"):
            from packager.errors import SpecError

            raise SpecError(
                [f"rate limit resource {text!r} is not NAME[:COUNT[:global]] (e.g. gpu_mem:2)"]
            )
        return cls(name, n, scope == "global")


@dataclass(frozen=True)
class RateLimiter:
    """``rate_limiter`` of an instance group: an instance runs only while it holds
    ``resources``; among waiting instances the lower ``priority`` weight runs more often."""

    resources: tuple[RateLimitResource, ...] = ()
    priority: int = 0  # 0 = Triton's default weight (1)

    def __post_init__(self) -> None:
        object.__setattr__(self, "resources", tuple(self.resources))


def sequence_problems(
    sb: SequenceBatching,
    *,
    max_batch_size: int,
    input_names: set[str],
    dynamic_batching: bool,
    response_cache: bool,
    ensemble: bool,
) -> list[str]:
    """Why Triton would refuse ``sb`` on a model with these facts (every reason)."""
    out: list[str] = []
    if dynamic_batching:
        out.append(
            "sequence batching and dynamic batching exclude each other (one scheduler per "
            "model); drop --dynamic-batching or use the oldest strategy, which batches "
            "sequences itself"
        )
    if response_cache:
        out.append(
            "Triton's response cache does not support sequence batching (a stateful answer "
            "depends on earlier requests); drop --response-cache"
        )
    if ensemble:
        out.append("an ensemble has its own scheduler; put sequence batching on its steps")
    if sb.strategy not in ("direct", "oldest"):
        out.append(f"sequence strategy must be direct or oldest, got {sb.strategy!r}")
    if sb.max_sequence_idle_us < 0:
        out.append(f"max sequence idle must be >= 0 us, got {sb.max_sequence_idle_us}")
    if sb.max_queue_delay_us < 0:
        out.append(f"sequence max queue delay must be >= 0 us, got {sb.max_queue_delay_us}")
    if sb.strategy == "direct" and (sb.max_candidate_sequences or sb.preferred_batch_sizes):
        out.append(
            "max candidate sequences and preferred batch sizes belong to the oldest strategy; "
            "add --sequence-strategy oldest"
        )
    if sb.max_candidate_sequences < 0:
        out.append(f"max candidate sequences must be >= 1, got {sb.max_candidate_sequences}")
    for b in sb.preferred_batch_sizes:
        if b < 1 or b > max_batch_size:
            out.append(
                f"sequence batching preferred batch size {b} must be in 1..max_batch_size "
                f"({max_batch_size})"
            )
    out.extend(_control_problems(sb.controls, input_names))
    out.extend(_state_problems(sb, input_names))
    return out


def _control_problems(controls: tuple[SequenceControl, ...], input_names: set[str]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    names: set[str] = set()
    for c in controls:
        if c.kind not in CONTROL_KINDS.values():
            out.append(
                f"sequence control kind {c.kind!r} is not one of: {', '.join(CONTROL_KINDS)}"
            )
            continue
        short = c.kind.rsplit("_", 1)[-1]
        if c.kind in seen:
            out.append(f"sequence control {short} is given twice")
        seen.add(c.kind)
        if c.name in names:
            out.append(f"control tensor {c.name!r} is given for two controls")
        names.add(c.name)
        if c.name in input_names:
            out.append(
                f"control tensor {c.name!r} ({short}) is also a config input: the sequence "
                "batcher fills it, so leave it out of the inputs (clients do not send it)"
            )
        allowed = _FLAG_DTYPES if c.is_flag else _CORRID_DTYPES
        if c.wire not in allowed:
            out.append(
                f"control {short} ({c.name!r}) has dtype {c.wire}; Triton allows "
                f"{', '.join(allowed)}"
            )
    return out


def _state_problems(sb: SequenceBatching, input_names: set[str]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for s in sb.states:
        where = f"state {s.input_name!r} -> {s.output_name!r}"
        if s.input_name in seen or s.output_name in seen:
            out.append(f"{where}: a state tensor is named twice")
        seen |= {s.input_name, s.output_name}
        if s.input_name in input_names:
            out.append(
                f"{where}: {s.input_name!r} is also a config input; the server feeds an "
                "implicit state, so leave it out of the inputs"
            )
        if not s.dims or any(d == 0 or d < -1 for d in s.dims):
            out.append(f"{where}: dims must be positive (or -1), got {list(s.dims)}")
        elif -1 in s.dims:
            out.append(
                f"{where}: the initial state needs concrete dims, got {list(s.dims)}; name the "
                "state's shape"
            )
        if s.dtype.wire == "BYTES":
            out.append(f"{where}: an implicit state cannot be BYTES (strings)")
    return out


def rate_limiter_problems(rl: RateLimiter, where: str) -> list[str]:
    out: list[str] = []
    names = [r.name for r in rl.resources]
    if len(set(names)) != len(names):
        out.append(f"{where}: rate limit resources repeat: {', '.join(names)}")
    for r in rl.resources:
        if not r.name:
            out.append(f"{where}: a rate limit resource has no name")
        if r.count < 1:
            out.append(f"{where}: rate limit resource {r.name!r} needs a count >= 1")
    if rl.priority < 0:
        out.append(f"{where}: rate limiter priority must be >= 0, got {rl.priority}")
    return out


# ---------------------------------------------------------------------------------------------
# Build options and the stateful plan


DEFAULT_CANDIDATE_SEQUENCES = 16  # oldest strategy: sequences batched together (--stateful)


@dataclass(frozen=True)
class SchedulingOptions:
    """The build options of this module's features (a group of ``BuildOptions``)."""

    stateful: bool = False  # find state pairs and make them implicit state
    states: tuple[str, ...] = ()  # "INPUT:OUTPUT" state pairs named by the user
    sequence_batching: bool = False  # the sequence batcher without implicit state
    sequence_strategy: str = "oldest"  # direct | oldest
    max_candidate_sequences: int = 0  # oldest; 0: DEFAULT_CANDIDATE_SEQUENCES
    sequence_idle_us: int = DEFAULT_IDLE_US
    sequence_controls: tuple[str, ...] = ()  # "start=NAME[:DTYPE]" ...
    response_cache: bool = False
    rate_limit_resources: tuple[str, ...] = ()  # "NAME[:COUNT[:global]]"
    rate_limit_priority: int = 0

    def __post_init__(self) -> None:
        for name in ("states", "sequence_controls", "rate_limit_resources"):
            value = getattr(self, name) or ()
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))

    @property
    def wants_sequences(self) -> bool:
        return (
            self.stateful or bool(self.states or self.sequence_controls) or self.sequence_batching
        )

    def rate_limiter(self) -> RateLimiter | None:
        if not self.rate_limit_resources and not self.rate_limit_priority:
            return None
        return RateLimiter(
            tuple(RateLimitResource.parse(r) for r in self.rate_limit_resources),
            self.rate_limit_priority,
        )

    def controls(self) -> tuple[SequenceControl, ...]:
        out = []
        for text in self.sequence_controls:
            kind, sep, rest = text.partition("=")
            name, _, dtype = rest.partition(":")
            if not sep or kind.lower() not in CONTROL_KINDS or not name:
                from packager.errors import SpecError

                raise SpecError(
                    [
                        f"sequence control {text!r} is not KIND=NAME[:DTYPE] with KIND one of "
                        f"{', '.join(CONTROL_KINDS)} (e.g. start=START, corrid=CORRID:UINT64)"
                    ]
                )
            default = "INT32" if kind.lower() != "corrid" else "UINT64"
            out.append(SequenceControl(kind, name, dtype or default))
        return tuple(out)


class _Tensor(Protocol):  # what this module reads of a spec.TensorSpec
    @property
    def name(self) -> str: ...
    @property
    def dtype(self) -> DType: ...
    @property
    def dims(self) -> tuple[int, ...]: ...


@dataclass(frozen=True)
class SequencePlan:
    """What the builder does for a stateful model: the batcher, and the tensors it takes over
    (state inputs and outputs, control inputs: clients neither send nor get them)."""

    batching: SequenceBatching
    hidden_inputs: frozenset[str]
    hidden_outputs: frozenset[str]
    notes: tuple[str, ...]  # what was decided and why (explicit state kept, dims fixed)


def plan_sequences(
    o: SchedulingOptions,
    inputs: tuple[_Tensor, ...],
    outputs: tuple[_Tensor, ...],
    max_batch_size: int,
    implicit_ok: str | None = None,
) -> SequencePlan | None:
    """The sequence batcher for a model with these FULL-shape tensors, or None when not asked.

    ``implicit_ok`` is None when the runtime reads implicit state, else why it does not.
    """
    if not o.wants_sequences:
        return None
    from packager.errors import SpecError

    notes: list[str] = []
    controls = o.controls()
    in_names = {t.name for t in inputs}
    missing = [c.name for c in controls if c.name not in in_names]
    if missing:
        raise SpecError(
            [f"sequence control input(s) {', '.join(missing)} are not inputs of the model; "
             f"inputs are: {', '.join(sorted(in_names))}"]
        )  # fmt: skip
    pairs = _named_pairs(o.states, inputs, outputs) if o.states else []
    if o.stateful and not o.states:
        pairs, why = _found_pairs(inputs, outputs, {c.name for c in controls})
        if why:
            notes.append(why)
    states: list[SequenceState] = []
    hidden_in = {c.name for c in controls}
    hidden_out: set[str] = set()
    strip = 1 if max_batch_size > 0 else 0
    for i, out in pairs:
        dims = _merged(i.dims, out.dims)[strip:]
        if implicit_ok is not None:
            notes.append(f"state {i.name} -> {out.name} stays explicit: {implicit_ok}")
            continue
        if strip == 0 and dims.count(-1) == 1:
            # A non-batching model runs one sequence per execution: its one dynamic dim is the
            # batch the model itself has (silero VAD: state [2, batch, 128]).
            dims = tuple(1 if d == -1 else d for d in dims)
            notes.append(f"state {i.name} -> {out.name}: its dynamic dim set to 1 (one sequence)")
        if -1 in dims:
            notes.append(
                f"state {i.name} -> {out.name} stays explicit (the client sends it): its dims "
                f"{list(dims)} are not fixed, and an implicit state starts from zeros of a fixed shape"
            )
            continue
        states.append(SequenceState(i.name, out.name, i.dtype, dims))
        hidden_in.add(i.name)
        hidden_out.add(out.name)
    if o.stateful and not states and not any("stays explicit" in n for n in notes):
        names = ", ".join(f"{t.name} {list(t.dims)}" for t in (*inputs, *outputs))
        raise SpecError(
            [f"--stateful found no state pair (an input and an output of the same dtype and "
             f"shape) in: {names}; name them with --state INPUT:OUTPUT"]
        )  # fmt: skip
    if len(hidden_in) >= len(inputs):
        raise SpecError(
            ["every input would be a state or control tensor: clients would send nothing; "
             "name the state pairs with --state INPUT:OUTPUT"]
        )  # fmt: skip
    oldest = o.sequence_strategy == "oldest"
    batching = SequenceBatching(
        o.sequence_strategy,  # type: ignore[arg-type]  # checked by sequence_problems
        o.sequence_idle_us,
        controls,
        tuple(states),
        o.max_candidate_sequences or (DEFAULT_CANDIDATE_SEQUENCES if oldest else 0),
    )
    return SequencePlan(batching, frozenset(hidden_in), frozenset(hidden_out), tuple(notes))


def _named_pairs(
    texts: tuple[str, ...], inputs: tuple[_Tensor, ...], outputs: tuple[_Tensor, ...]
) -> list[tuple[_Tensor, _Tensor]]:
    from packager.errors import SpecError

    ins, outs = {t.name: t for t in inputs}, {t.name: t for t in outputs}
    pairs, problems = [], []
    for text in texts:
        a, sep, b = text.rpartition(":")
        if not sep or a not in ins or b not in outs:
            problems.append(
                f"state {text!r} is not INPUT:OUTPUT of the model; inputs: {', '.join(ins)}; "
                f"outputs: {', '.join(outs)}"
            )
            continue
        i, o = ins[a], outs[b]
        if i.dtype != o.dtype or not _compatible(i.dims, o.dims):
            problems.append(
                f"state {a} ({i.dtype.wire} {list(i.dims)}) and {b} ({o.dtype.wire} "
                f"{list(o.dims)}) differ in dtype or rank; a state output feeds its input back"
            )
            continue
        pairs.append((i, o))
    if problems:
        raise SpecError(problems)
    return pairs


_STATE_WORDS = ("state", "hidden", "cache", "memory", "carry", "acc")


def _found_pairs(
    inputs: tuple[_Tensor, ...], outputs: tuple[_Tensor, ...], controls: set[str]
) -> tuple[list[tuple[_Tensor, _Tensor]], str]:
    """State pairs: an input and an output of equal dtype and compatible shape whose names say
    state (state/hidden..., or one name the other's prefix), or else the one output of exactly
    the input's shape that no other input shares (TorchScript's OUTPUT__1)."""
    data = [i for i in inputs if i.name not in controls]

    def same(i: _Tensor, o: _Tensor) -> bool:
        return o.dtype == i.dtype and o.dims == i.dims

    pairs: list[tuple[_Tensor, _Tensor]] = []
    used: set[str] = set()
    ambiguous = []
    for i in data:
        loose = [
            o
            for o in outputs
            if o.name not in used and o.dtype == i.dtype and _compatible(i.dims, o.dims)
        ]
        statey = [o for o in loose if _statey(i.name, o.name)]
        strict = [o for o in loose if same(i, o)]
        if len(statey) == 1:
            chosen = statey[0]
        elif len(strict) == 1 and sum(same(j, strict[0]) for j in data) == 1 and len(data) > 1:
            chosen = strict[0]
        else:
            if loose:
                ambiguous.append(f"{i.name} -> {'/'.join(o.name for o in loose)}")
            continue
        pairs.append((i, chosen))
        used.add(chosen.name)
    why = ""
    if ambiguous:
        why = (
            f"not taken as state (the shapes fit, but the names do not say state): "
            f"{', '.join(ambiguous)}; name a pair with --state INPUT:OUTPUT"
        )
    return pairs, why


def _compatible(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Equal rank, and every dim equal or dynamic on one side (graphs often leave an output's
    dims unknown: silero's stateN is [-1, -1, -1] for a state input [2, -1, 128])."""
    return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a, b, strict=True))


def _merged(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(x if x != -1 else y for x, y in zip(a, b, strict=True))


def _statey(a: str, b: str) -> bool:
    """Names that say "state": a word like state/hidden in both, or one the other's prefix."""
    la, lb = a.lower(), b.lower()
    if any(w in la and w in lb for w in _STATE_WORDS):
        return True
    return bool(la) and (lb.startswith(la) or la.startswith(lb)) and la != lb


# ---------------------------------------------------------------------------------------------
# What the server needs for these features

DEFAULT_CACHE_BYTES = 64 << 20  # the local response cache's size when a model caches


def server_flags(configs: Iterable[Any], cache_bytes: int = DEFAULT_CACHE_BYTES) -> list[str]:
    """tritonserver flags the models of a repository (parsed ``ModelConfig``s) need: without
    ``--cache-config`` a model's response cache is silently off; without ``--rate-limit
    execution_count`` its rate limiter resources are ignored."""
    caching = limited = False
    for c in configs:
        caching |= bool(c.response_cache.enable)
        limited |= any(g.rate_limiter.resources for g in c.instance_group)
    out = []
    if caching:
        out.append(f"--cache-config=local,size={cache_bytes}")
    if limited:
        out.append("--rate-limit=execution_count")
    return out
