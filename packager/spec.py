"""Frozen dataclasses that describe one Triton model, and the checks on a whole spec.

A :class:`ModelSpec` is what every source produces and what :mod:`packager.render` turns into
config.pbtxt. ``problems(spec)`` lists *every* problem at once so a user fixes them in one go.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from packager import dtypes
from packager.dtypes import DType
from packager.errors import SpecError
from packager.scheduling import (
    RateLimiter,
    SequenceBatching,
    rate_limiter_problems,
    sequence_problems,
)

# Plain strings (checked by problems()): values arrive from CLI options, YAML and protobuf enums.
Kind = str
KINDS: tuple[str, ...] = ("KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL")
# --kind / manifest `kind:` values -> Triton instance kinds
KIND_OPTIONS: dict[str, str] = {
    "auto": "KIND_AUTO",
    "gpu": "KIND_GPU",
    "cpu": "KIND_CPU",
    "model": "KIND_MODEL",
}
TimeoutAction = str

# Limits of the int64/int32 fields in Triton's model_config.proto.
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
# Triton uses the model name as a directory name and in URLs (/v2/models/<name>).
# We accept what is safe in both: no separators, no "..", no leading dot or dash.
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")


def name_problem(name: str, what: str = "model name") -> str | None:
    """Why ``name`` cannot be a Triton model/tensor name, or None when it can."""
    if not name:
        return f"{what} is empty"
    if name in (".", "..") or "/" in name or "\\" in name:
        return (
            f"{what} {name!r} contains a path separator or is '.'/'..'; use letters, digits, _ . -"
        )
    if not _NAME_RE.match(name):
        return (
            f"{what} {name!r} has characters Triton rejects in names or URLs; "
            "use letters, digits, _ . - (max 128, not starting with . or -)"
        )
    return None


@dataclass(frozen=True)
class TensorSpec:
    """One input or output. ``dims`` exclude the batch dim when the model batches; -1 = dynamic."""

    name: str
    dtype: DType
    dims: tuple[int, ...]
    optional: bool = False  # inputs only: the request may omit it
    label_filename: str | None = None  # outputs only: classification labels file in the model dir
    # The shape the model itself has, when it differs from ``dims`` (Triton's ``reshape``): a
    # rank-0 model tensor is ``dims (1,)`` with ``reshape ()``, since Triton needs a dim.
    reshape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", dtypes.parse(self.dtype))
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))
        if self.reshape is not None:
            object.__setattr__(self, "reshape", tuple(int(d) for d in self.reshape))

    @classmethod
    def of_model(cls, name: str, dtype: Any, dims: tuple[int, ...]) -> TensorSpec:
        """The spec of a model tensor with these dims; rank 0 becomes ``[1]`` + ``reshape []``."""
        return cls(name, dtype, dims) if dims else cls(name, dtype, (1,), reshape=())


@dataclass(frozen=True)
class InstanceGroup:
    """``instance_group``: ``count`` instances of kind ``kind`` (on each of ``gpus`` for KIND_GPU)."""

    kind: Kind = "KIND_CPU"
    count: int = 1
    gpus: tuple[int, ...] = ()
    name: str | None = None
    rate_limiter: RateLimiter | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "gpus", tuple(int(g) for g in self.gpus))


@dataclass(frozen=True)
class QueuePolicy:
    """``default_queue_policy`` of the dynamic batcher."""

    timeout_action: TimeoutAction = "REJECT"
    default_timeout_us: int = 0  # 0 = never time out in the queue
    allow_timeout_override: bool = False
    max_queue_size: int = 0  # 0 = unbounded


@dataclass(frozen=True)
class DynamicBatching:
    """``dynamic_batching``: server-side batching of concurrent requests."""

    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    preserve_ordering: bool = False
    priority_levels: int = 0
    default_priority_level: int = 0
    default_queue_policy: QueuePolicy | None = None
    # priority_queue_policy: (priority level, its queue policy) pairs, levels 1..priority_levels
    priority_queue_policies: tuple[tuple[int, QueuePolicy], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "preferred_batch_sizes", tuple(int(b) for b in self.preferred_batch_sizes)
        )
        object.__setattr__(
            self,
            "priority_queue_policies",
            tuple(sorted((int(k), v) for k, v in dict(self.priority_queue_policies).items())),
        )


@dataclass(frozen=True)
class VersionPolicy:
    """``version_policy``: which version folders Triton serves."""

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1  # for "latest"
    versions: tuple[int, ...] = ()  # for "specific"

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        """``latest:N`` | ``latest`` | ``all`` | ``specific:1,3``."""
        kind, _, arg = text.strip().partition(":")
        try:
            if kind == "latest":
                return cls("latest", int(arg) if arg else 1)
            if kind == "all" and not arg:
                return cls("all")
            if kind == "specific" and arg:
                return cls("specific", versions=tuple(int(v) for v in arg.split(",")))
        except ValueError:
            pass
        raise SpecError([f"version policy {text!r} is not one of: latest[:N], all, specific:V1,V2"])

    def served(self, available: Sequence[int]) -> list[int]:
        """The versions Triton loads under this policy from the ``available`` version folders:
        the one rule that versions, validate, fit, tune and footprint use. ``latest:0`` serves
        none (Triton refuses such a config; :func:`problems` names it)."""
        have = sorted(available)
        if self.kind == "all":
            return have
        if self.kind == "specific":
            return [v for v in have if v in self.versions]
        return have[-self.num_versions :] if self.num_versions > 0 else []

    def __str__(self) -> str:
        if self.kind == "latest":
            return f"latest:{self.num_versions}"
        if self.kind == "specific":
            return "specific:" + ",".join(map(str, self.versions))
        return "all"


@dataclass(frozen=True)
class WarmupInput:
    """One input of a warmup sample: random or zero data of a given shape, or a file."""

    name: str
    dtype: DType
    dims: tuple[int, ...]
    data: Literal["random", "zero"] = "random"
    input_data_file: str | None = None  # relative to <model>/warmup/

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", dtypes.parse(self.dtype))
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))


@dataclass(frozen=True)
class Warmup:
    """``model_warmup``: requests Triton runs before it marks the model ready."""

    name: str
    batch_size: int
    inputs: tuple[WarmupInput, ...]
    count: int = 1


@dataclass(frozen=True)
class GpuOptimization:
    """ONNX Runtime accelerators for GPU deployments (``optimization.execution_accelerators``)."""

    tensorrt: bool = False
    tensorrt_precision: str = "FP16"  # FP32 | FP16
    tensorrt_max_workspace_bytes: int = 1 << 30
    cuda_graphs: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """Everything config.pbtxt says about one model, plus what the writer needs to know.

    ``platform`` is set for native runtimes (``onnxruntime_onnx``, ``pytorch_libtorch``,
    ``ensemble``); ``backend`` for ``python`` models. ``max_batch_size`` 0 means the model does
    not batch and ``dims`` are full shapes.
    """

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    platform: str | None = None
    backend: str | None = None
    max_batch_size: int = 0
    instance_groups: tuple[InstanceGroup, ...] = ()
    dynamic_batching: DynamicBatching | None = None
    sequence_batching: SequenceBatching | None = None
    # response_cache { enable: true }: identical requests answered from the server's cache
    response_cache: bool = False
    version_policy: VersionPolicy | None = None
    warmup: tuple[Warmup, ...] = ()
    parameters: tuple[tuple[str, str], ...] | Mapping[str, str] = ()
    gpu_optimization: GpuOptimization | None = None
    default_model_filename: str | None = None
    # model_transaction_policy { decoupled: true }: any number of responses per request (streaming).
    decoupled: bool = False
    # Ensemble wiring, rendered verbatim (see packager.manifest.ensemble); empty for ordinary models.
    ensemble_steps: tuple[Any, ...] = ()
    # Free metadata for the build record (source file, format, export figures); not rendered.
    extra: tuple[tuple[str, Any], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "instance_groups", tuple(self.instance_groups))
        object.__setattr__(self, "warmup", tuple(self.warmup))
        params = self.parameters
        if isinstance(params, Mapping):
            params = tuple(sorted((str(k), str(v)) for k, v in params.items()))
        object.__setattr__(self, "parameters", tuple(params))

    def replace(self, **changes: Any) -> ModelSpec:
        return replace(self, **changes)

    @property
    def runtime(self) -> str:
        """The platform or backend name, whichever is set."""
        return self.platform or self.backend or "?"

    def check(self) -> ModelSpec:
        """Raise :class:`SpecError` listing every problem; return self when there is none."""
        found = problems(self)
        if found:
            raise SpecError(found, subject=f"model {self.name!r}")
        return self


def problems(spec: ModelSpec) -> list[str]:
    """Every reason Triton would reject ``spec`` (or that we know would fail at run time)."""
    out: list[str] = []
    if (p := name_problem(spec.name)) is not None:
        out.append(p)
    if bool(spec.platform) == bool(spec.backend):
        out.append("set exactly one of platform (e.g. onnxruntime_onnx) or backend (e.g. python)")
    if spec.max_batch_size < 0:
        out.append(f"max_batch_size must be >= 0, got {spec.max_batch_size}")
    elif spec.max_batch_size > INT32_MAX:  # an int32 in Triton's schema
        out.append(f"max_batch_size {spec.max_batch_size} is larger than 2^31-1")
    if not spec.inputs and spec.platform != "ensemble":
        out.append("the model has no inputs")
    if not spec.outputs:
        out.append("the model has no outputs")
    seen: dict[str, str] = {}
    for role, tensors in (("input", spec.inputs), ("output", spec.outputs)):
        for t in tensors:
            if (p := name_problem(t.name, f"{role} name")) is not None and not _tensor_name_ok(
                t.name
            ):
                out.append(p)
            if t.name in seen:
                out.append(f"duplicate tensor name {t.name!r} ({seen[t.name]} and {role})")
            seen[t.name] = role
            if not t.dims:
                out.append(
                    f"{role} {t.name!r} has no dims (rank 0); Triton needs at least one dim: "
                    "use dims [1] with reshape [] (builds from a model file do this by themselves)"
                )
            for d in t.dims:
                if d == 0 or d < -1:
                    out.append(f"{role} {t.name!r} has dim {d}; dims are positive or -1 (dynamic)")
                    break
                if d > INT64_MAX:  # config dims are int64: such a config does not even parse
                    out.append(f"{role} {t.name!r} has dim {d}, larger than 2^63-1")
                    break
    out.extend(_instance_problems(spec))
    if spec.decoupled and spec.platform == "ensemble":
        out.append("an ensemble cannot be decoupled; its steps may be")
    out.extend(_batching_problems(spec))
    out.extend(_scheduling_problems(spec))
    out.extend(_version_problems(spec))
    out.extend(_warmup_problems(spec))
    if spec.gpu_optimization is not None and spec.platform not in ("onnxruntime_onnx", None):
        out.append(
            "GPU optimization options (TensorRT, CUDA graphs) apply to ONNX Runtime models only"
        )
    return out


def _tensor_name_ok(name: str) -> bool:
    # Tensor names are not paths; Triton allows e.g. "input:0" or "x/y" from TF graphs.
    return bool(name) and all(c.isprintable() and c not in '"\\' for c in name)


def _instance_problems(spec: ModelSpec) -> list[str]:
    out: list[str] = []
    for i, g in enumerate(spec.instance_groups):
        where = f"instance group {i}"
        if g.kind not in KINDS:
            out.append(f"{where}: kind {g.kind!r} is not one of {', '.join(KINDS)}")
        if g.count < 1:
            out.append(f"{where}: count must be >= 1, got {g.count}")
        if any(gpu < 0 for gpu in g.gpus):
            out.append(f"{where}: GPU ids must be >= 0, got {list(g.gpus)}")
        if len(set(g.gpus)) != len(g.gpus):
            out.append(f"{where}: GPU ids repeat: {list(g.gpus)}")
        if g.gpus and g.kind not in ("KIND_GPU",):
            out.append(f"{where}: gpus are only allowed with KIND_GPU (kind is {g.kind})")
        if g.rate_limiter is not None:
            out.extend(rate_limiter_problems(g.rate_limiter, where))
    return out


def _scheduling_problems(spec: ModelSpec) -> list[str]:
    """Sequence batching and the response cache: the combinations Triton refuses at load."""
    out: list[str] = []
    if spec.response_cache and spec.decoupled:
        out.append(
            "Triton's response cache does not support decoupled (streaming) models; "
            "drop --response-cache"
        )
    if spec.sequence_batching is not None:
        out.extend(
            sequence_problems(
                spec.sequence_batching,
                max_batch_size=spec.max_batch_size,
                input_names={t.name for t in spec.inputs},
                dynamic_batching=spec.dynamic_batching is not None,
                response_cache=spec.response_cache,
                ensemble=spec.platform == "ensemble",
            )
        )
    return out


def _batching_problems(spec: ModelSpec) -> list[str]:
    out: list[str] = []
    db = spec.dynamic_batching
    if db is None:
        return out
    if spec.max_batch_size == 0:
        out.append(
            "dynamic batching needs max_batch_size > 0 (the model does not batch); "
            "set --max-batch-size or drop the batching options"
        )
    for b in db.preferred_batch_sizes:
        if b < 1:
            out.append(f"preferred batch size {b} must be >= 1")
        elif spec.max_batch_size and b > spec.max_batch_size:
            out.append(f"preferred batch size {b} > max_batch_size {spec.max_batch_size}")
    if len(set(db.preferred_batch_sizes)) != len(db.preferred_batch_sizes):
        out.append(f"preferred batch sizes repeat: {list(db.preferred_batch_sizes)}")
    if db.max_queue_delay_us < 0:
        out.append(f"max queue delay must be >= 0 us, got {db.max_queue_delay_us}")
    if db.priority_levels < 0:
        out.append(f"priority levels must be >= 0, got {db.priority_levels}")
    if db.priority_levels and not 1 <= db.default_priority_level <= db.priority_levels:
        out.append(
            f"default priority level {db.default_priority_level} must be in "
            f"1..{db.priority_levels} when priority levels are used"
        )
    if not db.priority_levels and db.default_priority_level:
        out.append("default priority level is set but priority levels is 0")
    policies = [("default queue policy", db.default_queue_policy)] + [
        (f"queue policy of priority {level}", qp) for level, qp in db.priority_queue_policies
    ]
    for what, qp in policies:
        if qp is None:
            continue
        if qp.timeout_action not in ("REJECT", "DELAY"):
            out.append(f"{what}: timeout action must be REJECT or DELAY, got {qp.timeout_action!r}")
        if qp.default_timeout_us < 0 or qp.max_queue_size < 0:
            out.append(f"{what}: timeout and max queue size must be >= 0")
        if db.preserve_ordering and qp.timeout_action == "DELAY" and qp.default_timeout_us:
            out.append(
                f"{what}: a DELAY timeout action cannot be used with preserve ordering "
                "(Triton refuses it); use REJECT or drop --preserve-ordering"
            )
    for level, _ in db.priority_queue_policies:
        if not 1 <= level <= db.priority_levels:
            out.append(
                f"a queue policy for priority {level} needs priority levels >= {max(level, 1)} "
                f"(priority levels is {db.priority_levels}); levels run 1..priority levels"
            )
    if db.preserve_ordering and db.priority_levels > 1:
        out.append(
            "preserve ordering allows one priority level only (Triton refuses more); drop "
            "--preserve-ordering or --priority-levels"
        )
    return out


def _version_problems(spec: ModelSpec) -> list[str]:
    vp = spec.version_policy
    if vp is None:
        return []
    if vp.kind == "latest" and vp.num_versions < 1:
        return [f"version policy latest:{vp.num_versions} must keep at least 1 version"]
    if vp.kind == "specific" and (not vp.versions or any(v < 1 for v in vp.versions)):
        return ["version policy specific needs positive version numbers"]
    return []


def _warmup_problems(spec: ModelSpec) -> list[str]:
    out: list[str] = []
    inputs = {t.name: t for t in spec.inputs}
    for w in spec.warmup:
        if w.batch_size < 1 or (spec.max_batch_size and w.batch_size > spec.max_batch_size):
            out.append(f"warmup {w.name!r}: batch size {w.batch_size} is outside 1..max_batch_size")
        if spec.max_batch_size == 0 and w.batch_size != 1:
            out.append(f"warmup {w.name!r}: a non-batching model warms up with batch size 1")
        for wi in w.inputs:
            if wi.name not in inputs:
                out.append(
                    f"warmup {w.name!r}: no input {wi.name!r}; inputs are: {', '.join(inputs)}"
                )
            elif any(d < 1 for d in wi.dims):
                out.append(
                    f"warmup {w.name!r}: input {wi.name!r} needs concrete dims, got {list(wi.dims)}"
                )
        if {wi.name for wi in w.inputs} != set(inputs) and all(
            wi.name in inputs for wi in w.inputs
        ):
            missing = sorted(set(inputs) - {wi.name for wi in w.inputs})
            out.append(f"warmup {w.name!r}: missing inputs {', '.join(missing)}")
    return out


def default_warmup(spec: ModelSpec, batch_size: int = 1) -> Warmup:
    """A random-data warmup sample for every input, dynamic dims set to 1."""
    return Warmup(
        name=f"random_batch_{batch_size}",
        batch_size=batch_size if spec.max_batch_size else 1,
        inputs=tuple(
            WarmupInput(
                t.name,
                t.dtype,
                tuple(1 if d < 0 else d for d in t.dims),
                data="zero" if t.dtype.wire == "BYTES" else "random",
            )
            for t in spec.inputs
        ),
    )
