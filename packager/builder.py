"""``packager.build`` and ``packager.inspect``: source -> ModelSpec -> config -> repository.

This module decides; :mod:`packager.sources` reads, :mod:`packager.render` renders,
:mod:`packager.repository` writes. Every check happens before the first byte is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from packager import sources
from packager.compress import compress_loaded
from packager.errors import PackagerError, SpecError
from packager.options import BuildOptions, refused
from packager.render import render_config
from packager.repository import WriteResult, write_model
from packager.sources import LoadedModel, Signature, SourceOptions
from packager.sources.formats import FORMATS
from packager.spec import (
    KIND_OPTIONS,
    DynamicBatching,
    InstanceGroup,
    ModelSpec,
    TensorSpec,
    default_warmup,
    name_problem,
)

__all__ = ["BuildOptions", "BuildResult", "InspectResult", "SourceOptions", "build", "inspect"]

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


def _check_file(model: Any) -> None:
    is_file_name = isinstance(model, (str, Path)) and str(model).endswith(
        (".onnx", ".pt", ".pth", ".ts")
    )
    if is_file_name and not Path(model).exists():
        raise PackagerError(f"model file {model} does not exist")


def load_source(model: Any, options: SourceOptions) -> LoadedModel:
    """Detect the source format (or check ``options.format``) and load ``model``; caller closes
    the result."""
    _check_file(model)
    source = sources.detect(model)
    fmt = options.format
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
    return source.load(model, options)


def inspect(model: Any, *, format: str = "auto", **options: Any) -> InspectResult:
    """Read a model's signature without writing anything (``options``: SourceOptions fields)."""
    loaded = load_source(model, SourceOptions(format=format, **options))
    try:
        return InspectResult(loaded.format, loaded.platform, loaded.signature, dict(loaded.record))
    finally:
        loaded.close()


def build_kind(model: Any, options: BuildOptions) -> str:
    """Which kind of build ``model`` with ``options`` is (a key of build_options.KINDS)."""
    from packager.generate.build import wants_generation

    if options.text:
        return "text"
    if wants_generation(model, options):
        return "generation"
    _check_file(model)
    return sources.detect(model).name


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
    kind = build_kind(model, o)
    early = refused(o, kind)
    if kind == "generation":  # a causal LM: a streaming model (packager/generate/)
        from packager.generate.build import build_generation

        if early:
            raise SpecError(early, subject=f"build of {o.name!r}")
        return build_generation(model, o)
    if kind == "text":
        raise PackagerError(
            "text=True builds several models: call packager.sources.hf_text.build_text_pipeline"
        )
    if (p := name_problem(o.name)) is not None:
        early.append(p)
    if o.backend not in ("native", "python"):
        early.append(f"backend must be 'native' or 'python', got {o.backend!r}")
    if o.kind not in KIND_OPTIONS:
        early.append(f"kind must be one of {', '.join(KIND_OPTIONS)}, got {o.kind!r}")
    if o.gpus and o.kind not in ("gpu", "auto"):
        early.append(f"--gpus needs --kind gpu (kind is {o.kind})")
    gpu = o.gpu_optimization
    if gpu is not None and not gpu.tensorrt and gpu.tensorrt_precision != "FP16":
        early.append("--tensorrt-precision applies to --tensorrt; add --tensorrt or leave it out")
    early += o.compress.problems()
    if early:
        raise SpecError(early, subject=f"build of {o.name!r}")

    source_options = replace(
        o.source,
        format=o.format,
        max_batch_size=o.max_batch_size,
        prune=o.compress.prune_request(),  # pruned before export
    )
    loaded = load_source(model, source_options)
    try:
        compress_loaded(loaded, o.compress)  # replaces the ONNX artifact; figures in the record
        sig = loaded.signature
        mbs = _max_batch_size(sig, o.max_batch_size)
        groups = (
            o.instance_groups
            if o.instance_groups is not None
            else (
                InstanceGroup("KIND_GPU" if o.gpus else KIND_OPTIONS[o.kind], o.instances, o.gpus),
            )
        )
        batching_asked = o.batching != DynamicBatching()
        use_db = (
            o.dynamic_batching if o.dynamic_batching is not None else (mbs > 0 or batching_asked)
        )
        strip = 1 if mbs > 0 else 0
        params = dict(o.parameters)
        if o.backend == "python":
            params.setdefault("artifact", FORMATS[loaded.format].artifact)
        spec = ModelSpec(
            name=o.name,
            inputs=tuple(TensorSpec.of_model(t.name, t.dtype, t.dims[strip:]) for t in sig.inputs),
            outputs=tuple(
                TensorSpec.of_model(t.name, t.dtype, t.dims[strip:]) for t in sig.outputs
            ),
            platform=loaded.platform if o.backend == "native" else None,
            backend="python" if o.backend == "python" else None,
            max_batch_size=mbs,
            instance_groups=groups,
            dynamic_batching=o.batching if use_db else None,
            version_policy=o.version_policy,
            parameters=params,
            gpu_optimization=o.gpu_optimization,
        )
        if o.warmup:
            spec = spec.replace(warmup=(default_warmup(spec, o.warmup),))
        if o.labels:
            spec = with_labels(spec, o.labels)
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
        }
        if len(loaded.files) > 1 and loaded.format == "onnx":  # weights beside the graph
            from packager.sources.onnx_external import data_record

            record["external_data"] = data_record(loaded.files, FORMATS["onnx"].artifact)
        written = None
        if not o.dry_run:
            written = write_model(
                o.output,
                spec,
                files,
                version=o.version,
                force=o.force,
                record=record,
                model_files={p.name: p for p in o.labels.values()},
            )
        return BuildResult(spec, config, sig, record, written)
    finally:
        loaded.close()


def with_labels(spec: ModelSpec, labels: Mapping[str, Path]) -> ModelSpec:
    """``spec`` with ``label_filename`` on the outputs ``labels`` names (files beside the config)."""
    unknown = sorted(set(labels) - {t.name for t in spec.outputs})
    if unknown:
        raise SpecError(
            [
                f"labels for {', '.join(unknown)}: no such output; outputs are: "
                f"{', '.join(t.name for t in spec.outputs)}"
            ]
        )
    outputs = tuple(
        TensorSpec(t.name, t.dtype, t.dims, label_filename=labels[t.name].name)
        if t.name in labels
        else t
        for t in spec.outputs
    )
    return spec.replace(outputs=outputs)


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
