"""The scheduling parts of a model config beyond dynamic batching: the sequence batcher with its
control tensors and implicit state, and the rate limiter of an instance group.

Frozen dataclasses like those in :mod:`packager.spec` (which holds them on a ``ModelSpec``), and
the rules Triton 2.51 applies to them when it loads a model (``ValidateModelConfig`` in Triton's
core), so that a config Triton would refuse is refused at build time with what to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
