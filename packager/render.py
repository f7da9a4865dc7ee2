"""Spec -> config.pbtxt text, and config text -> Triton's own protobuf (and back to a spec).

Pure functions, no file I/O beyond reading templates. Every rendered config is parsed back with
Triton's schema (``tritonclient.grpc.model_config_pb2``): a config that does not parse is a bug
in the template and is never handed to the writer.
"""

from __future__ import annotations

import functools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jinja2

from packager import dtypes
from packager.errors import PackagerError, SpecError
from packager.formats import FORMATS, PYTHON_FILE
from packager.releases import TRITON_VERSION, package_version
from packager.scheduling import (
    RateLimiter,
    RateLimitResource,
    SequenceBatching,
    SequenceControl,
    SequenceState,
)
from packager.spec import (
    DynamicBatching,
    GpuOptimization,
    InstanceGroup,
    ModelSpec,
    QueuePolicy,
    TensorSpec,
    VersionPolicy,
    Warmup,
    WarmupInput,
)


def templates_dir() -> Path:
    """The templates folder: inside the installed package, else the source tree's top level."""
    packaged = Path(__file__).parent / "templates"
    if packaged.is_dir():
        return packaged
    source_tree = Path(__file__).resolve().parent.parent / "templates"
    if source_tree.is_dir():
        return source_tree
    raise PackagerError(
        "templates folder not found; reinstall triton-packager (the wheel ships packager/templates)"
    )


def _quote(value: object) -> str:
    """A protobuf text-format string literal (protobuf's own escaping: every control character)."""
    from google.protobuf import text_encoding

    return '"' + text_encoding.CEscape(str(value), as_utf8=True) + '"'


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The one jinja2 environment for every template (StrictUndefined: a typo is an error)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # config text and Python code, not HTML
    )
    env.filters["q"] = _quote
    env.globals["triton_version"] = TRITON_VERSION  # the release generated runtimes target
    env.globals["numpy_types"] = dtypes.numpy_attributes()  # config type -> numpy, from dtypes
    return env


def render_template(name: str, **context: Any) -> str:
    """Render any template under templates/ with StrictUndefined."""
    return environment().get_template(name).render(**context)


def render_config(spec: ModelSpec) -> str:
    """config.pbtxt for ``spec``; raises SpecError if the spec has problems."""
    spec.check()
    raw = render_template("config.pbtxt.j2", spec=spec)
    # Blank lines left by template conditionals carry no meaning; dropping them keeps output stable.
    # split("\n"), not splitlines(): the latter also splits at \x1c, \u2028... inside strings.
    text = "\n".join(line for line in raw.split("\n") if line.strip()) + "\n"
    parse_config(text)  # a template bug must never reach the disk
    return text


def parse_config(text: str) -> Any:
    """Parse config text with Triton's schema; returns a ``model_config_pb2.ModelConfig``."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise SpecError(
            [f"config does not parse with Triton's schema: {exc}"], "config.pbtxt"
        ) from exc
    return config


_KIND_NAMES = {0: "KIND_AUTO", 1: "KIND_GPU", 2: "KIND_CPU", 3: "KIND_MODEL"}


def version_policy_of(config: Any) -> VersionPolicy | None:
    """A parsed config's ``version_policy`` (None: Triton's default, latest:1)."""
    if not config.HasField("version_policy"):
        return None
    which = config.version_policy.WhichOneof("policy_choice")
    if which == "all":
        return VersionPolicy("all")
    if which == "specific":
        return VersionPolicy("specific", versions=tuple(config.version_policy.specific.versions))
    return VersionPolicy("latest", config.version_policy.latest.num_versions)


def spec_from_config(config: Any) -> ModelSpec:
    """Rebuild a ModelSpec from a parsed ``ModelConfig`` (the inverse of render for our fields)."""
    from tritonclient.grpc import model_config_pb2 as pb

    def tensor(t: Any, is_input: bool) -> TensorSpec:
        return TensorSpec(
            t.name,
            dtypes.from_config(pb.DataType.Name(t.data_type)),
            tuple(t.dims),
            optional=bool(t.optional) if is_input else False,
            label_filename=None if is_input else (t.label_filename or None),
            reshape=tuple(t.reshape.shape) if t.HasField("reshape") else None,
        )

    def queue_policy(q: Any) -> QueuePolicy:
        return QueuePolicy(
            pb.ModelQueuePolicy.TimeoutAction.Name(q.timeout_action),
            q.default_timeout_microseconds,
            q.allow_timeout_override,
            q.max_queue_size,
        )

    db = None
    if config.HasField("dynamic_batching"):
        d = config.dynamic_batching
        db = DynamicBatching(
            tuple(d.preferred_batch_size),
            d.max_queue_delay_microseconds,
            d.preserve_ordering,
            d.priority_levels,
            d.default_priority_level,
            queue_policy(d.default_queue_policy) if d.HasField("default_queue_policy") else None,
            tuple((k, queue_policy(v)) for k, v in d.priority_queue_policy.items()),
        )
    vp = version_policy_of(config)
    go = None
    if config.HasField("optimization"):
        accel = config.optimization.execution_accelerators.gpu_execution_accelerator
        trt = next((a for a in accel if a.name == "tensorrt"), None)
        go = GpuOptimization(
            tensorrt=trt is not None,
            tensorrt_precision=(trt.parameters.get("precision_mode", "FP16") if trt else "FP16"),
            tensorrt_max_workspace_bytes=int(
                trt.parameters.get("max_workspace_size_bytes", 1 << 30) if trt else 1 << 30
            ),
            cuda_graphs=config.optimization.cuda.graphs,
        )
    order = {t.name: i for i, t in enumerate(config.input)}
    warmups = tuple(
        Warmup(
            w.name,
            w.batch_size,
            tuple(
                WarmupInput(
                    key,
                    dtypes.from_config(pb.DataType.Name(v.data_type)),
                    tuple(v.dims),
                    data="zero" if v.zero_data else "random",
                    input_data_file=v.input_data_file or None,
                )
                # protobuf maps have no order; keep the model's input order for stable output
                for key, v in sorted(w.inputs.items(), key=lambda kv: order.get(kv[0], 1 << 30))
            ),
            max(w.count, 1),
        )
        for w in config.model_warmup
    )
    steps = tuple(
        SimpleNamespace(
            model_name=s.model_name,
            model_version=s.model_version,
            input_map=tuple(s.input_map.items()),
            output_map=tuple(s.output_map.items()),
        )
        for s in config.ensemble_scheduling.step
    )
    return ModelSpec(
        name=config.name,
        platform=config.platform or None,
        backend=config.backend or None,
        max_batch_size=config.max_batch_size,
        inputs=tuple(tensor(t, True) for t in config.input),
        outputs=tuple(tensor(t, False) for t in config.output),
        instance_groups=tuple(
            InstanceGroup(
                _KIND_NAMES[g.kind],
                g.count,
                tuple(g.gpus),
                g.name or None,
                _rate_limiter(g.rate_limiter) if g.HasField("rate_limiter") else None,
            )
            for g in config.instance_group
        ),
        dynamic_batching=db,
        sequence_batching=_sequence_batching(config)
        if config.HasField("sequence_batching")
        else None,
        response_cache=config.response_cache.enable,
        version_policy=vp,
        warmup=warmups,
        parameters=tuple(sorted((k, v.string_value) for k, v in config.parameters.items())),
        gpu_optimization=go,
        default_model_filename=config.default_model_filename or None,
        decoupled=config.model_transaction_policy.decoupled,
        ensemble_steps=steps,
    )


def _rate_limiter(rl: Any) -> RateLimiter:
    return RateLimiter(
        tuple(RateLimitResource(r.name, r.count, getattr(r, "global")) for r in rl.resources),
        rl.priority,
    )


def _sequence_batching(config: Any) -> SequenceBatching:
    from tritonclient.grpc import model_config_pb2 as pb

    sb = config.sequence_batching
    kind_name = pb.ModelSequenceBatching.Control.Kind.Name
    controls = []
    for ci in sb.control_input:
        for c in ci.control:
            if c.kind == pb.ModelSequenceBatching.Control.CONTROL_SEQUENCE_CORRID:
                dtype = dtypes.from_config(pb.DataType.Name(c.data_type))
            elif c.fp32_false_true:
                dtype = dtypes.parse("FP32")
            elif c.bool_false_true:
                dtype = dtypes.parse("BOOL")
            else:
                dtype = dtypes.parse("INT32")
            controls.append(SequenceControl(kind_name(c.kind), ci.name, dtype))
    states = tuple(
        SequenceState(
            s.input_name,
            s.output_name,
            dtypes.from_config(pb.DataType.Name(s.data_type)),
            tuple(s.dims),
        )
        for s in sb.state
    )
    oldest = sb.WhichOneof("strategy_choice") == "oldest"
    strategy = sb.oldest if oldest else sb.direct
    return SequenceBatching(
        "oldest" if oldest else "direct",
        sb.max_sequence_idle_microseconds,
        tuple(controls),
        states,
        sb.oldest.max_candidate_sequences if oldest else 0,
        tuple(sb.oldest.preferred_batch_size) if oldest else (),
        strategy.max_queue_delay_microseconds,
    )


PYTHON_RUNTIME_TEMPLATE = "python_model.py.j2"


def python_runtime_files(fmt: str) -> dict[str, str]:
    """Files for a Python-backend version folder that runs an ONNX or TorchScript artifact:
    ``{"model.py": text}``. ``build --backend python`` writes it beside the artifact and
    :mod:`packager.serve.shadow` serves native-backend repositories with it. The artifact is not
    included; the config names it with the parameter ``artifact`` (default: the format's file
    name in :data:`packager.formats.FORMATS`). The file is self-contained (numpy + onnxruntime or
    torch), so it also runs in NVIDIA's container without triton-packager.
    """
    if fmt not in FORMATS:
        raise PackagerError(
            f"the Python runtime runs {', '.join(FORMATS)} artifacts, not {fmt!r}; "
            "export the model to ONNX or TorchScript first"
        )
    f = FORMATS[fmt]
    text = render_template(
        PYTHON_RUNTIME_TEMPLATE,
        fmt=f.name,
        artifact=f.artifact,
        runtime=f.runtime,
        version=package_version(),
    )
    return {PYTHON_FILE: text}
