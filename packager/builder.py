"""``packager.build`` and ``packager.inspect``: source -> ModelSpec -> config -> repository.

This module decides; :mod:`packager.sources` reads, :mod:`packager.render` renders,
:mod:`packager.repository` writes. Every check happens before the first byte is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from packager import sources
from packager.compress import CompressOptions, compress_loaded
from packager.errors import PackagerError, SpecError
from packager.render import render_config
from packager.repository import WriteResult, write_model
from packager.scheduling import SchedulingOptions, plan_sequences
from packager.sources import LoadedModel, Signature
from packager.sources.formats import FORMATS
from packager.spec import (
    KIND_OPTIONS,
    DynamicBatching,
    GpuOptimization,
    InstanceGroup,
    ModelSpec,
    TensorSpec,
    VersionPolicy,
    default_warmup,
    name_problem,
)

DEFAULT_MAX_BATCH_SIZE = 32


@dataclass(frozen=True)
class SourceOptions:
    """How a source reads or exports the model (PyTorch modules and TorchScript files)."""

    input_specs: tuple[Any, ...] = ()  # "NAME:DTYPE:DIMS" strings or TensorSpecs
    example_inputs: Any = None  # {name: array}, one array, or a .npz path
    weights: str | Path | None = None  # state_dict file for a module reference
    output_names: tuple[str, ...] = ()
    dynamic_axes: Mapping[str, Sequence[int]] | None = None  # beyond the batch axis
    opset: int | None = None
    torchscript_mode: str | None = None  # "trace" | "script"
    verify: bool = True  # compare the export with the module
    atol: float | None = None
    rtol: float | None = None
    # Hugging Face folders: feature-extraction | sequence-classification | text-generation
    task: str | None = None
    more_examples: tuple[Any, ...] = ()  # example sets of other shapes: their axes go dynamic
    # Input axes kept at the example's size without probing (PyTorch modules): name -> axes.
    fixed_axes: Mapping[str, Sequence[int]] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_specs", tuple(self.input_specs or ()))
        object.__setattr__(self, "output_names", tuple(self.output_names or ()))
        object.__setattr__(self, "more_examples", tuple(self.more_examples or ()))

    def to_mapping(self) -> dict[str, Any]:
        """The options a :class:`packager.sources.Source` reads; unset ones are left out."""
        out = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) not in (None, ()) and f.name != "verify"
        }
        if not self.verify:
            out["verify"] = False
        return out


@dataclass(frozen=True)
class BuildOptions:
    """Everything ``build`` takes besides the model: one typed, immutable object shared by the
    CLI, the Python API (:meth:`from_kwargs` reads the flat keywords) and deploy manifests."""

    name: str
    output: Path = Path("model_repository")
    format: str = "auto"  # auto | a source or artifact format (sources.formats.FORMATS)
    backend: str = "native"  # native | python | vllm (text generation)
    max_batch_size: int | None = None  # None: 32 when every tensor has a batch axis, else 0
    # Instances: explicit groups, or one group of `instances` of `kind` (on each of `gpus`).
    instance_groups: tuple[InstanceGroup, ...] | None = None
    kind: str = "auto"  # auto | gpu | cpu | model (spec.KIND_OPTIONS)
    gpus: tuple[int, ...] = ()
    instances: int = 1
    # Dynamic batching: None turns it on when the model batches or `batching` was set.
    dynamic_batching: bool | None = None
    batching: DynamicBatching = field(default_factory=DynamicBatching)
    version: int | None = None  # None: the next free version
    version_policy: VersionPolicy | None = None
    warmup: int = 0  # warm-up requests per instance at load
    parameters: Mapping[str, str] = field(default_factory=dict)
    gpu_optimization: GpuOptimization | None = None
    force: bool = False  # overwrite an existing version
    dry_run: bool = False
    compress: CompressOptions = field(default_factory=CompressOptions)
    source: SourceOptions = field(default_factory=SourceOptions)
    # Sequence batching / implicit state, response cache, rate limiter (packager.scheduling)
    scheduling: SchedulingOptions = field(default_factory=SchedulingOptions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "output", Path(self.output))
        object.__setattr__(self, "gpus", tuple(int(g) for g in self.gpus or ()))
        object.__setattr__(self, "parameters", MappingProxyType(dict(self.parameters or {})))
        if self.instance_groups is not None:
            object.__setattr__(self, "instance_groups", tuple(self.instance_groups))
        if isinstance(self.version_policy, str):
            object.__setattr__(self, "version_policy", VersionPolicy.parse(self.version_policy))
        gpu = self.gpu_optimization
        if gpu is not None and not (gpu.tensorrt or gpu.cuda_graphs):
            object.__setattr__(
                self, "gpu_optimization", None
            )  # nothing asked: no optimization block

    def replace(self, **changes: Any) -> BuildOptions:
        return replace(self, **changes)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> BuildOptions:
        """The flat keywords of ``packager.build(model, name=..., max_batch_size=...)``."""
        grouped: dict[str, tuple[type, dict[str, Any]]] = {
            "batching": (DynamicBatching, {}),
            "gpu_optimization": (GpuOptimization, {}),
            "compress": (CompressOptions, {}),
            "source": (SourceOptions, {}),
            "scheduling": (SchedulingOptions, {}),
        }
        top: dict[str, Any] = {}
        for key, value in kwargs.items():
            target = _FLAT_KEYWORDS.get(key)
            if target is not None:
                group, attr = target
                grouped[group][1][attr] = value
            elif key in _OWN_FIELDS:
                top[key] = value
            else:
                known = sorted({*_OWN_FIELDS, *_FLAT_KEYWORDS} - set(grouped))
                raise TypeError(
                    f"build() got an unknown option {key!r}; options: {', '.join(known)}"
                )
        for group, (kind, values) in grouped.items():
            if values:
                top[group] = kind(**values)
        return cls(**top)


# Flat keyword of the Python API -> (BuildOptions field holding it, attribute there).
_FLAT_KEYWORDS: dict[str, tuple[str, str]] = {
    "preferred_batch_sizes": ("batching", "preferred_batch_sizes"),
    "max_queue_delay_us": ("batching", "max_queue_delay_us"),
    "preserve_ordering": ("batching", "preserve_ordering"),
    "priority_levels": ("batching", "priority_levels"),
    "default_priority_level": ("batching", "default_priority_level"),
    "queue_policy": ("batching", "default_queue_policy"),
    "priority_queue_policies": ("batching", "priority_queue_policies"),
    "tensorrt": ("gpu_optimization", "tensorrt"),
    "tensorrt_precision": ("gpu_optimization", "tensorrt_precision"),
    "cuda_graphs": ("gpu_optimization", "cuda_graphs"),
    **{f.name: ("compress", f.name) for f in fields(CompressOptions)},
    **{f.name: ("source", f.name) for f in fields(SourceOptions)},
    **{f.name: ("scheduling", f.name) for f in fields(SchedulingOptions)},
}
_OWN_FIELDS = {f.name for f in fields(BuildOptions)}


@dataclass(frozen=True)
class BuildResult:
    """What ``build`` made (or, with ``dry_run``, would make)."""

    spec: ModelSpec
    config: str
    signature: Signature
    record: dict[str, Any]
    written: WriteResult | None = None  # None for a dry run

    @property
    def model_dir(self) -> Path | None:
        return self.written.model_dir if self.written else None

    @property
    def version(self) -> int | None:
        return self.written.version if self.written else None


@dataclass(frozen=True)
class InspectResult:
    """What ``inspect`` found in a model."""

    format: str
    platform: str
    signature: Signature
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def batchable(self) -> bool:
        return self.signature.batchable

    def to_dict(self) -> dict[str, Any]:
        def t(x: TensorSpec) -> dict[str, Any]:
            return {
                "name": x.name,
                "dtype": x.dtype.wire,
                "config_type": x.dtype.config,
                "dims": list(x.dims),
            }

        return {
            "format": self.format,
            "platform": self.platform,
            "batch_axis": self.batchable,
            "inputs": [t(x) for x in self.signature.inputs],
            "outputs": [t(x) for x in self.signature.outputs],
        }


def load_source(model: Any, fmt: str = "auto", **options: Any) -> LoadedModel:
    """Detect (or take) the source format and load ``model``; caller closes the result."""
    is_file_name = isinstance(model, (str, Path)) and str(model).endswith(
        (".onnx", ".pt", ".pth", ".ts")
    )
    if is_file_name and not Path(model).exists():
        raise PackagerError(f"model file {model} does not exist")
    source = sources.detect(model)
    if fmt not in ("auto", None):
        known = set(sources.names()) | set(FORMATS)
        if fmt not in known:
            raise PackagerError(
                f"unknown format {fmt!r}; choose from: auto, {', '.join(sorted(known))}"
            )
        if source.name in FORMATS and fmt != source.name:
            raise PackagerError(
                f"{model} is a {source.name} file but --format {fmt} was given; "
                f"use --format auto or {source.name} (converting between file formats is not supported)"
            )
        options["format"] = fmt
    return source.load(model, options)


def inspect(model: Any, *, format: str = "auto", **options: Any) -> InspectResult:
    """Read a model's signature without writing anything."""
    loaded = load_source(model, format, **options)
    try:
        return InspectResult(loaded.format, loaded.platform, loaded.signature, dict(loaded.record))
    finally:
        loaded.close()


def build(model: Any, options: BuildOptions | None = None, /, **kwargs: Any) -> BuildResult:
    """Package ``model`` (a file path, a ``module:factory`` reference or an ``nn.Module``) as
    ``<output>/<name>/<version>``. Nothing is written when anything is wrong or ``dry_run`` is set.

    Options come as one :class:`BuildOptions`, or as its flat keywords (``name=``,
    ``max_batch_size=``, ``preferred_batch_sizes=``, ``quantize=``, ``weights=``...; see
    :meth:`BuildOptions.from_kwargs`). Compression figures go to ``record["compression"]``.
    """
    if options is None:
        options = BuildOptions.from_kwargs(**kwargs)
    elif kwargs:
        raise TypeError("pass either a BuildOptions or keyword options to build(), not both")
    o = options
    from packager.generate.build import build_generation, wants_generation

    if wants_generation(model, o):  # a causal LM: a streaming model (packager/generate/)
        return build_generation(model, o)
    early = []
    if (p := name_problem(o.name)) is not None:
        early.append(p)
    if o.backend not in ("native", "python"):
        early.append(f"backend must be 'native' or 'python', got {o.backend!r}")
    if o.kind not in KIND_OPTIONS:
        early.append(f"kind must be one of {', '.join(KIND_OPTIONS)}, got {o.kind!r}")
    if o.gpus and o.kind not in ("gpu", "auto"):
        early.append(f"--gpus needs --kind gpu (kind is {o.kind})")
    early += o.compress.problems()
    if early:
        raise SpecError(early, subject=f"build of {o.name!r}")

    source_options = o.source.to_mapping()
    if o.max_batch_size is not None:
        source_options["max_batch_size"] = o.max_batch_size
    if o.compress.prune is not None:
        source_options["prune"] = o.compress.prune_request()  # pruned before export
    loaded = load_source(model, o.format, **source_options)
    try:
        compress_loaded(loaded, o.compress)  # replaces the ONNX artifact; figures in the record
        target = check_target(loaded, o.name)  # raises what the container would refuse
        sig = loaded.signature
        mbs = _max_batch_size(sig, o.max_batch_size)
        groups = (
            o.instance_groups
            if o.instance_groups is not None
            else (
                InstanceGroup("KIND_GPU" if o.gpus else KIND_OPTIONS[o.kind], o.instances, o.gpus),
            )
        )
        limiter = o.scheduling.rate_limiter()
        if limiter is not None:
            groups = tuple(replace(g, rate_limiter=limiter) for g in groups)
        seq = plan_sequences(
            o.scheduling,
            sig.inputs,
            sig.outputs,
            mbs,
            _implicit_state_refusal(o.backend, loaded.platform, sig),
        )
        batching_asked = o.batching != DynamicBatching()
        if seq is not None:
            # One scheduler per model: the batching options go to the sequence batcher, and
            # only an explicit --dynamic-batching asks for both (refused by the spec check).
            use_db = bool(o.dynamic_batching)
            seq = replace(
                seq,
                batching=replace(
                    seq.batching,
                    max_queue_delay_us=o.batching.max_queue_delay_us,
                    preferred_batch_sizes=o.batching.preferred_batch_sizes,  # oldest only
                ),
            )
        else:
            use_db = (
                o.dynamic_batching
                if o.dynamic_batching is not None
                else (mbs > 0 or batching_asked)
            )
        strip = 1 if mbs > 0 else 0
        hidden_in = seq.hidden_inputs if seq else frozenset()
        hidden_out = seq.hidden_outputs if seq else frozenset()
        params = dict(o.parameters)
        if o.backend == "python":
            params.setdefault("artifact", FORMATS[loaded.format].artifact)
        spec = ModelSpec(
            name=o.name,
            inputs=tuple(
                TensorSpec.of_model(t.name, t.dtype, t.dims[strip:])
                for t in sig.inputs
                if t.name not in hidden_in
            ),
            outputs=tuple(
                TensorSpec.of_model(t.name, t.dtype, t.dims[strip:])
                for t in sig.outputs
                if t.name not in hidden_out
            ),
            platform=loaded.platform if o.backend == "native" else None,
            backend="python" if o.backend == "python" else None,
            max_batch_size=mbs,
            instance_groups=groups,
            dynamic_batching=o.batching if use_db else None,
            sequence_batching=seq.batching if seq else None,
            response_cache=o.scheduling.response_cache,
            version_policy=o.version_policy,
            parameters=params,
            gpu_optimization=o.gpu_optimization,
        )
        if o.warmup:
            spec = spec.replace(warmup=(default_warmup(spec, o.warmup),))
        config = render_config(spec)  # SpecError lists every problem
        files: dict[str, Any] = dict(loaded.files)
        if o.backend == "python":
            from packager.serve.pyruntime import runtime_files

            files.update(runtime_files(loaded.format))
        record = {
            "packager": _version(),
            "format": loaded.format,
            "runtime": spec.runtime,
            **loaded.record,
            **({"target": target} if target else {}),
        }
        if seq is not None:
            record["sequence"] = {
                "states": [f"{st.input_name}:{st.output_name}" for st in seq.batching.states],
                "controls": [f"{c.kind}={c.name}" for c in seq.batching.controls],
                "notes": list(seq.notes),
            }
        if len(loaded.files) > 1 and loaded.format == "onnx":  # weights beside the graph
            from packager.sources.onnx_external import data_record

            record["external_data"] = data_record(loaded.files, FORMATS["onnx"].artifact)
        written = None
        if not o.dry_run:
            written = write_model(
                o.output, spec, files, version=o.version, force=o.force, record=record
            )
        return BuildResult(spec, config, sig, record, written)
    finally:
        loaded.close()


def check_target(loaded: LoadedModel, name: str) -> dict[str, Any]:
    """Check the artifact against the target container (``releases.TARGET``): ONNX with
    :mod:`packager.sources.onnx_target`, TorchScript with :mod:`packager.sources.torchscript_target`.
    Raises :class:`SpecError` naming every problem; returns what was checked, for build.json."""
    if loaded.format not in ("onnx", "torchscript"):
        return {}
    artifact = FORMATS[loaded.format].artifact
    if artifact not in loaded.files:
        return {}
    from packager.releases import TARGET
    from packager.sources import onnx_target, torchscript_target

    path = Path(loaded.files[artifact])
    if loaded.format == "onnx":
        beside = all(Path(p) == path.parent / rel for rel, p in loaded.files.items())
        found = onnx_target.check(path, artifact, session=beside)
        runtime = {"onnxruntime": TARGET.onnxruntime}
    else:
        found = torchscript_target.check(path, artifact)
        runtime = {"libtorch": TARGET.libtorch}
    if found.problems:
        raise SpecError(found.problems, subject=f"build of {name!r} for {TARGET.describe()}")
    # Only what the build was checked for: build.json stays the same on every machine (what
    # could not be checked on this one, `validate` says).
    return {"triton": TARGET.release, **runtime}


_INDEXED_NAME = re.compile(r".+__\d+$")


def _implicit_state_refusal(backend: str, platform: str, sig: Signature) -> str | None:
    """Why the runtime cannot read an implicit state, or None when it can."""
    if backend != "native":
        return "the Python runtime takes every tensor from the request (use --backend native)"
    names = [t.name for t in (*sig.inputs, *sig.outputs)]
    if platform == FORMATS["torchscript"].platform and not all(
        _INDEXED_NAME.match(n) for n in names
    ):
        # Triton's PyTorch backend refuses the model at load otherwise ("not all inputs and
        # outputs follow the <name>__<index> naming convention").
        return (
            "Triton's PyTorch backend reads implicit state only when every input and output is "
            "named NAME__INDEX (INDEX: the forward argument's position); build with "
            "--input NAME__0:DTYPE:DIMS --input NAME__1:... (outputs are OUTPUT__N already)"
        )
    return None


def _max_batch_size(sig: Signature, asked: int | None) -> int:
    if asked is None:
        return DEFAULT_MAX_BATCH_SIZE if sig.batchable else 0
    if asked < 0:
        raise SpecError([f"max_batch_size must be >= 0, got {asked}"])
    if asked > 0 and not sig.batchable:
        fixed = [
            f"{t.name} {list(t.dims)}"
            for t in sig.inputs + sig.outputs
            if not t.dims or t.dims[0] != -1
        ]
        raise SpecError(
            [
                f"--max-batch-size {asked} needs a dynamic first (batch) dim on every tensor, but these "
                f"have none: {', '.join(fixed)}; re-export with a dynamic batch axis or use --max-batch-size 0"
            ]
        )
    return asked


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("triton-packager")
    except PackageNotFoundError:  # running from a source tree without an install
        return "0+source"
