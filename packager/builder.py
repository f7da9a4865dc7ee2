"""``packager.build`` and ``packager.inspect``: source -> ModelSpec -> config -> repository.

This module decides; :mod:`packager.sources` reads, :mod:`packager.render` renders,
:mod:`packager.repository` writes. Every check happens before the first byte is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packager import sources
from packager.compress import CompressOptions, compress_loaded
from packager.errors import PackagerError, SpecError
from packager.render import render_config
from packager.repository import WriteResult, write_model
from packager.sources import LoadedModel, Signature
from packager.sources.formats import FORMATS
from packager.spec import (
    KIND_OPTIONS,
    DynamicBatching,
    GpuOptimization,
    InstanceGroup,
    ModelSpec,
    QueuePolicy,
    TensorSpec,
    VersionPolicy,
    default_warmup,
    name_problem,
)

DEFAULT_MAX_BATCH_SIZE = 32


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


def build(
    model: Any,
    *,
    name: str,
    output: str | Path = "model_repository",
    format: str = "auto",
    backend: str = "native",
    max_batch_size: int | None = None,
    kind: str = "auto",
    gpus: Sequence[int] = (),
    instances: int = 1,
    instance_groups: Sequence[InstanceGroup] | None = None,
    dynamic_batching: bool | None = None,
    preferred_batch_sizes: Sequence[int] = (),
    max_queue_delay_us: int = 0,
    preserve_ordering: bool = False,
    priority_levels: int = 0,
    default_priority_level: int = 0,
    queue_policy: QueuePolicy | None = None,
    version: int | None = None,
    version_policy: VersionPolicy | str | None = None,
    warmup: int = 0,
    parameters: Mapping[str, str] | None = None,
    tensorrt: bool = False,
    tensorrt_precision: str = "FP16",
    cuda_graphs: bool = False,
    force: bool = False,
    dry_run: bool = False,
    quantize: str | None = None,
    calibration_data: Any = None,
    per_channel: bool = False,
    fp16: bool = False,
    fp16_io: bool = False,
    prune: float | None = None,
    prune_structured: bool = False,
    eval_data: str | Path | None = None,
    eval_metric: str = "accuracy",
    **source_options: Any,
) -> BuildResult:
    """Package ``model`` (a file path, a ``module:factory`` reference or an ``nn.Module``) as
    ``<output>/<name>/<version>``. Nothing is written when anything is wrong or ``dry_run`` is set.

    ``source_options`` go to the source: ``input_specs``, ``example_inputs``, ``weights``,
    ``output_names``, ``dynamic_axes``, ``opset``, ``torchscript_mode``, ``verify``, ``atol``, ``rtol``.
    Compression (``quantize``, ``fp16``, ``prune``...) is :class:`packager.compress.CompressOptions`;
    its before/after figures go to ``record["compression"]``.
    """
    early = []
    if (p := name_problem(name)) is not None:
        early.append(p)
    if backend not in ("native", "python"):
        early.append(f"backend must be 'native' or 'python', got {backend!r}")
    if kind not in KIND_OPTIONS:
        early.append(f"kind must be one of {', '.join(KIND_OPTIONS)}, got {kind!r}")
    if gpus and kind not in ("gpu", "auto"):
        early.append(f"--gpus needs --kind gpu (kind is {kind})")
    if isinstance(version_policy, str):
        version_policy = VersionPolicy.parse(version_policy)
    compress = CompressOptions(
        quantize, calibration_data, per_channel, fp16, fp16_io, prune, prune_structured,
        eval_data, eval_metric,
    )  # fmt: skip
    early += compress.problems()
    if early:
        raise SpecError(early, subject=f"build of {name!r}")

    if max_batch_size is not None:
        source_options.setdefault("max_batch_size", max_batch_size)
    if compress.prune is not None:
        source_options["prune"] = compress.prune_request()  # pruned before export
    loaded = load_source(model, format, **source_options)
    try:
        compress_loaded(loaded, compress)  # replaces model.onnx; figures in the record
        sig = loaded.signature
        mbs = _max_batch_size(sig, max_batch_size)
        groups = (
            tuple(instance_groups)
            if instance_groups is not None
            else (
                InstanceGroup("KIND_GPU" if gpus else KIND_OPTIONS[kind], instances, tuple(gpus)),
            )
        )
        batching_asked = bool(
            preferred_batch_sizes
            or max_queue_delay_us
            or preserve_ordering
            or priority_levels
            or queue_policy
        )
        use_db = dynamic_batching if dynamic_batching is not None else (mbs > 0 or batching_asked)
        db = (
            DynamicBatching(
                tuple(preferred_batch_sizes),
                max_queue_delay_us,
                preserve_ordering,
                priority_levels,
                default_priority_level,
                queue_policy,
            )
            if use_db
            else None
        )
        strip = 1 if mbs > 0 else 0
        params = dict(parameters or {})
        if backend == "python":
            params.setdefault("artifact", FORMATS[loaded.format].artifact)
        spec = ModelSpec(
            name=name,
            inputs=tuple(TensorSpec(t.name, t.dtype, t.dims[strip:]) for t in sig.inputs),
            outputs=tuple(TensorSpec(t.name, t.dtype, t.dims[strip:]) for t in sig.outputs),
            platform=loaded.platform if backend == "native" else None,
            backend="python" if backend == "python" else None,
            max_batch_size=mbs,
            instance_groups=groups,
            dynamic_batching=db,
            version_policy=version_policy,
            parameters=params,
            gpu_optimization=GpuOptimization(tensorrt, tensorrt_precision, cuda_graphs=cuda_graphs)
            if (tensorrt or cuda_graphs)
            else None,
        )
        if warmup:
            spec = spec.replace(warmup=(default_warmup(spec, warmup),))
        config = render_config(spec)  # SpecError lists every problem
        files: dict[str, Any] = dict(loaded.files)
        if backend == "python":
            from packager.serve.pyruntime import runtime_files

            files.update(runtime_files(loaded.format))
        record = {
            "packager": _version(),
            "format": loaded.format,
            "runtime": spec.runtime,
            **loaded.record,
        }
        written = None
        if not dry_run:
            written = write_model(output, spec, files, version=version, force=force, record=record)
        return BuildResult(spec, config, sig, record, written)
    finally:
        loaded.close()


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
