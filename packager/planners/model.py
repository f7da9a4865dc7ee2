"""The planner of one model from a source (a model file, a PyTorch module, a Hugging Face task):
load (export, verify), compress, spec, config (rendered once), build record. No repository I/O:
:func:`packager.repository.write_models` writes the plan."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from packager import sources
from packager.compress import compress_loaded
from packager.errors import PackagerError, SpecError
from packager.formats import FORMATS
from packager.options import BuildOptions
from packager.planners import PlannedModel
from packager.releases import package_version
from packager.render import python_runtime_files, render_config
from packager.repository import ModelWrite
from packager.scheduling import SequencePlan, plan_sequences
from packager.sources import LoadedModel, Signature, SourceOptions
from packager.spec import (
    KIND_OPTIONS,
    DynamicBatching,
    ModelSpec,
    TensorSpec,
    default_warmup,
    name_problem,
)

DEFAULT_MAX_BATCH_SIZE = 32


def check_file(model: Any) -> None:
    """A model file name that does not exist is named as such (not as an unknown format)."""
    is_file_name = isinstance(model, (str, Path)) and str(model).endswith(
        (".onnx", ".pt", ".pth", ".ts")
    )
    if is_file_name and not Path(model).exists():
        raise PackagerError(f"model file {model} does not exist")


def load_source(model: Any, options: SourceOptions) -> LoadedModel:
    """Detect the source format (or check ``options.format``) and load ``model``; caller closes
    the result."""
    check_file(model)
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


def option_problems(o: BuildOptions) -> list[str]:
    """Problems of the options themselves, found before anything is loaded."""
    out = []
    if (p := name_problem(o.name)) is not None:
        out.append(p)
    if o.backend not in ("native", "python"):
        out.append(f"backend must be 'native' or 'python', got {o.backend!r}")
    if o.kind not in KIND_OPTIONS:
        out.append(f"kind must be one of {', '.join(KIND_OPTIONS)}, got {o.kind!r}")
    if o.gpus and o.kind not in ("gpu", "auto"):
        out.append(f"--gpus needs --kind gpu (kind is {o.kind})")
    gpu = o.gpu_optimization
    if gpu is not None and not gpu.tensorrt and gpu.tensorrt_precision != "FP16":
        out.append("--tensorrt-precision applies to --tensorrt; add --tensorrt or leave it out")
    return out + o.compress.problems()


def plan_model(model: Any, o: BuildOptions) -> PlannedModel:
    """Load ``model`` and plan its version folder; the result owns the loaded temporary files."""
    if early := option_problems(o):
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
        target = check_target(loaded, o.name)  # raises what the container would refuse
        spec, seq = model_spec(o, loaded)
        config = render_config(spec)  # SpecError lists every problem
        files: dict[str, Any] = dict(loaded.files)
        if o.backend == "python":
            files.update(python_runtime_files(loaded.format))
        record = {
            "packager": package_version(),
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
        model_files = {p.name: p for p in o.labels.values()}
        write = ModelWrite(spec, files, o.version, record, model_files, config)
        return PlannedModel(write, "model", loaded.signature, loaded)
    except BaseException:
        loaded.close()
        raise


def model_spec(o: BuildOptions, loaded: LoadedModel) -> tuple[ModelSpec, SequencePlan | None]:
    """The config of a loaded model under the build options (and its sequence batcher plan)."""
    sig = loaded.signature
    mbs = max_batch_size(sig, o.max_batch_size)
    groups = o.groups()
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
            o.dynamic_batching if o.dynamic_batching is not None else (mbs > 0 or batching_asked)
        )
    strip = 1 if mbs > 0 else 0  # Triton owns the batch dim
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
    if o.labels:
        spec = with_labels(spec, o.labels)
    return spec, seq


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


def max_batch_size(sig: Signature, asked: int | None) -> int:
    """The max batch size: ``asked``, or by default 32 when every tensor can batch, else 0."""
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
