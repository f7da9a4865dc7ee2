"""``build``, ``inspect`` and ``validate``: parse options, call the library, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from packager import sources
from packager.commands._options import int_list
from packager.commands._scheduling import pop_scheduling, priority_policies, scheduling_options
from packager.sources.formats import FORMATS
from packager.sources.huggingface import TASKS as HF_TASKS
from packager.spec import QueuePolicy
from packager.textable import format_table


def _dynamic_axes(values: tuple[str, ...], hint: str = "--dynamic-axis") -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for v in values:
        name, _, axis = v.rpartition(":")
        if not name or not axis.isdigit():
            raise click.BadParameter(f"{v!r} is not NAME:AXIS", param_hint=hint)
        out.setdefault(name, []).append(int(axis))
    return out


def _parameters(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{v!r} is not KEY=VALUE", param_hint="--parameter")
        out[key] = val
    return out


@click.command()
@click.argument("model", required=False)
@click.option(
    "--file",
    "-f",
    "manifest",
    type=click.Path(dir_okay=False),
    default=None,
    help="Build every model, Python step and ensemble of a deploy manifest (YAML) instead of MODEL.",
)
@click.option("--name", "-n", help="Model name in the repository (folder and URL name).")
@click.option(
    "--output",
    "-o",
    default="model_repository",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Model repository to write into (created if missing).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", *FORMATS]),
    default="auto",
    show_default=True,
    help="Artifact format: auto (detect a file by content) or one of the formats "
    "(for a PyTorch module: the export target, default onnx).",
)
@click.option(
    "--backend",
    type=click.Choice(["native", "python", "vllm"]),
    default="native",
    show_default=True,
    help="native: Triton's onnxruntime/libtorch backend; python: run the artifact in "
    "Triton's Python backend (what the embedded server supports); vllm: a causal LM for "
    "Triton's vLLM backend on GPU hosts (model.json; docs/generate.md).",
)
@click.option(
    "--max-batch-size",
    type=int,
    default=None,
    help="Largest batch Triton may form; 0 = the model does not batch. "
    "Default: 32 when every tensor has a dynamic first dim, else 0.",
)
@click.option(
    "--kind",
    type=click.Choice(["auto", "gpu", "cpu", "model"]),
    default="auto",
    show_default=True,
    help="Instance group kind.",
)
@click.option(
    "--gpus", callback=int_list(), default=None, help="GPU ids for KIND_GPU instances, e.g. 0,1."
)
@click.option(
    "--instances",
    type=int,
    default=1,
    show_default=True,
    help="Instances per device (per GPU for --kind gpu).",
)
@click.option(
    "--dynamic-batching/--no-dynamic-batching",
    default=None,
    help="Server-side batching of concurrent requests. Default: on when max batch size > 0.",
)
@click.option(
    "--preferred-batch-size",
    type=int,
    multiple=True,
    help="Preferred batch size of the dynamic batcher (repeatable).",
)
@click.option(
    "--max-queue-delay-us",
    type=int,
    default=0,
    show_default=True,
    help="How long the batcher may hold a request to form a bigger batch.",
)
@click.option("--preserve-ordering", is_flag=True, help="Return responses in request order.")
@click.option(
    "--priority-levels",
    type=int,
    default=0,
    show_default=True,
    help="Number of request priority levels.",
)
@click.option(
    "--default-priority-level",
    type=int,
    default=0,
    show_default=True,
    help="Priority of requests that name none (1..priority levels).",
)
@click.option(
    "--queue-timeout-us",
    type=int,
    default=None,
    help="Default queue timeout per request; with --timeout-action.",
)
@click.option(
    "--timeout-action",
    type=click.Choice(["REJECT", "DELAY"]),
    default="REJECT",
    show_default=True,
    help="What happens to a request that times out in the queue.",
)
@click.option(
    "--max-queue-size", type=int, default=0, show_default=True, help="Queue bound (0 = unbounded)."
)
@click.option(
    "--version",
    "version",
    type=int,
    default=None,
    help="Version number to write. Default: the next free number.",
)
@click.option("--version-policy", default=None, help="latest[:N] | all | specific:V1,V2")
@click.option(
    "--warmup",
    type=int,
    default=0,
    show_default=True,
    help="Add a random-data warmup request of this batch size (0 = none).",
)
@click.option(
    "--parameter", "parameters", multiple=True, help="Free config parameter KEY=VALUE (repeatable)."
)
@click.option(
    "--tensorrt", is_flag=True, help="GPU: ONNX Runtime with the TensorRT execution accelerator."
)
@click.option(
    "--tensorrt-precision",
    type=click.Choice(["FP32", "FP16"]),
    default="FP16",
    show_default=True,
    help="TensorRT precision mode.",
)
@click.option("--cuda-graphs", is_flag=True, help="GPU: capture CUDA graphs (ONNX Runtime).")
@click.option(
    "--input",
    "input_specs",
    multiple=True,
    help="Input NAME:DTYPE:DIMS without the batch dim, e.g. x:FP32:3,224,224 (TorchScript/PyTorch); "
    "empty DIMS (t:FP32:) is a scalar per sample.",
)
@click.option(
    "--example-input",
    type=click.Path(dir_okay=False),
    multiple=True,
    help=".npz of example inputs (batch dim first) to run the model with. Repeat it with "
    "examples of other shapes (e.g. another sequence length): the axes that differ become "
    "dynamic, and the export is verified on each example.",
)
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    default=None,
    help="PyTorch: state_dict (.pt, loaded with weights_only=True) or .safetensors.",
)
@click.option(
    "--output-name", "output_names", multiple=True, help="Name an output (repeatable, in order)."
)
@click.option(
    "--dynamic-axis",
    "dynamic_axes",
    multiple=True,
    help="PyTorch: make input axis NAME:AXIS dynamic without probing it (repeatable). Axes "
    "nobody names are decided by running the model at other sizes (docs/pytorch.md).",
)
@click.option(
    "--fixed-axis",
    "fixed_axes",
    multiple=True,
    help="PyTorch: keep input axis NAME:AXIS at the example's size (repeatable), e.g. x:2.",
)
@click.option(
    "--opset",
    type=int,
    default=None,
    help="ONNX opset of an export (PyTorch) or conversion (Keras, SavedModel: 17); for an "
    "ONNX file, convert it with ONNX's version converter (checked against the file).",
)
@click.option(
    "--torchscript-mode",
    type=click.Choice(["trace", "script"]),
    default="trace",
    show_default=True,
    help="PyTorch->TorchScript: torch.jit.trace or torch.jit.script.",
)
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="PyTorch: compare the exported model with the source module.",
)
@click.option("--atol", type=float, default=None, help="Verification absolute tolerance.")
@click.option("--rtol", type=float, default=None, help="Verification relative tolerance.")
@click.option(
    "--quantize",
    type=click.Choice(["dynamic-int8", "static-int8"]),
    default=None,
    help="ONNX: int8 weights (dynamic) or int8 weights and activations (static, QDQ).",
)
@click.option(
    "--calibration-data",
    type=click.Path(dir_okay=False),
    default=None,
    help="static-int8: .npz of representative inputs (one array per input, samples first).",
)
@click.option("--per-channel", is_flag=True, help="Quantize weights per output channel.")
@click.option("--fp16", is_flag=True, help="ONNX: fp16 weights and compute; fp32 inputs/outputs.")
@click.option("--fp16-io", is_flag=True, help="With --fp16: make inputs and outputs FP16 too.")
@click.option(
    "--prune",
    type=float,
    default=None,
    help="PyTorch: zero this fraction (0-1) of each Linear/Conv layer's weights before export.",
)
@click.option(
    "--prune-structured",
    is_flag=True,
    help="With --prune: remove whole output channels (L2 norm) instead of single weights.",
)
@click.option(
    "--eval-data",
    type=click.Path(dir_okay=False),
    default=None,
    help="Labeled .npz (inputs + 'labels'): show the metric before/after compression.",
)
@click.option(
    "--eval-metric",
    default="accuracy",
    show_default=True,
    help="Metric for --eval-data: accuracy, topK (e.g. top5), mse, mae.",
)
@click.option(
    "--task",
    type=click.Choice([*HF_TASKS, "text-generation"]),
    default=None,
    help="Hugging Face folder: what to serve (default: from config.json's architectures; "
    "text-generation: a streaming decoupled model for a causal LM, docs/generate.md).",
)
@click.option(
    "--text",
    is_flag=True,
    help="Hugging Face folder: build a text-in ensemble NAME (tokenizer step -> NAME_model -> "
    "labels step for classifiers) that takes sentences as BYTES.",
)
@scheduling_options
@click.option(
    "--force",
    is_flag=True,
    help="Replace an existing version; with another signature than the model's config, replace "
    "every version of the model.",
)
@click.option("--dry-run", is_flag=True, help="Print config.pbtxt and write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def build(
    model: str | None,
    manifest: str | None,
    fmt: str,
    input_specs: tuple[str, ...],
    dynamic_axes: tuple[str, ...],
    fixed_axes: tuple[str, ...],
    parameters: tuple[str, ...],
    output_names: tuple[str, ...],
    as_json: bool,
    queue_timeout_us: int | None,
    timeout_action: str,
    max_queue_size: int,
    atol: float | None,
    rtol: float | None,
    **options: Any,
) -> None:
    """Package MODEL (an .onnx / TorchScript / Keras .keras file, a TensorFlow SavedModel or
    Hugging Face folder, or a PyTorch module:factory) into a Triton repository, or with -f every
    model of a deploy manifest."""
    if manifest is not None or model is None:
        from packager.commands.manifest import build_manifest_cmd

        build_manifest_cmd(click.get_current_context(), model, manifest)
        return
    if not options["name"]:
        raise click.UsageError(
            "Missing option '--name' / '-n' (the model's name in the repository)."
        )
    from packager.builder import BuildOptions, SourceOptions
    from packager.builder import build as build_model
    from packager.compress import CompressOptions
    from packager.spec import DynamicBatching, GpuOptimization

    o = options
    scheduling = pop_scheduling(o)
    queue_policy = None
    if queue_timeout_us is not None or max_queue_size:
        queue_policy = QueuePolicy(
            timeout_action, queue_timeout_us or 0, max_queue_size=max_queue_size
        )
    build_options = BuildOptions(
        name=o["name"],
        output=o["output"],
        format=fmt,
        backend=o["backend"],
        max_batch_size=o["max_batch_size"],
        kind=o["kind"],
        gpus=o["gpus"] or (),
        instances=o["instances"],
        dynamic_batching=o["dynamic_batching"],
        batching=DynamicBatching(
            o["preferred_batch_size"],
            o["max_queue_delay_us"],
            o["preserve_ordering"],
            o["priority_levels"],
            o["default_priority_level"],
            queue_policy,
            priority_policies(o["priority_queue_policies"]),
        ),
        version=o["version"],
        version_policy=o["version_policy"],
        warmup=o["warmup"],
        parameters=_parameters(parameters),
        gpu_optimization=GpuOptimization(
            o["tensorrt"], o["tensorrt_precision"], cuda_graphs=o["cuda_graphs"]
        ),
        scheduling=scheduling,
        force=o["force"],
        dry_run=o["dry_run"],
        compress=CompressOptions(
            o["quantize"],
            o["calibration_data"],
            o["per_channel"],
            o["fp16"],
            o["fp16_io"],
            o["prune"],
            o["prune_structured"],
            o["eval_data"],
            o["eval_metric"],
        ),
        source=SourceOptions(
            input_specs,
            o["example_input"][0] if o["example_input"] else None,
            o["weights"],
            output_names,
            _dynamic_axes(dynamic_axes) if dynamic_axes else None,
            o["opset"],
            o["torchscript_mode"],
            o["verify"],
            atol,
            rtol,
            o["task"],
            o["example_input"][1:],
            _dynamic_axes(fixed_axes, "--fixed-axis") if fixed_axes else None,
        ),
    )
    if o["text"]:
        from packager.sources.hf_text import build_text_pipeline

        built = build_text_pipeline(model, build_options)
        if as_json:  # the shape of `build -f --json` (docs/cli.md)
            models = [
                {"name": m.name, "kind": m.kind, "version": m.version, "runtime": m.spec.runtime}
                for m in built.models
            ]
            doc = {"model": build_options.name, "dry_run": options["dry_run"], "models": models}
            click.echo(json.dumps(doc, indent=2))
            return
        for m in built.models:
            where = f"version {m.version}" if m.written is not None else "(dry run)"
            click.echo(f"built {m.name} {where} ({m.kind}, {m.spec.runtime})")
        click.echo(f"send text: Client(URL).infer({build_options.name!r}, ['a sentence', ...])")
        return
    result = build_model(model, build_options)
    if as_json:  # one object, dry run or not (docs/cli.md)
        written = result.written
        doc = {
            "model": result.spec.name,
            "dry_run": written is None,
            "version": None if written is None else written.version,
            "model_dir": None if written is None else str(written.model_dir),
            "files": [] if written is None else list(written.files),
            "config": result.config,
            "record": result.record,
        }
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    if options["dry_run"]:
        click.echo(result.config, nl=False)
        return
    assert result.written is not None
    click.echo(
        f"built {result.spec.name} version {result.written.version} "
        f"({result.spec.runtime}, max_batch_size {result.spec.max_batch_size}) in {result.written.model_dir}"
    )
    for f in result.written.files:
        click.echo(f"  {f}")
    if "compression" in result.record:
        from packager.compress import CompressionReport

        click.echo(CompressionReport.from_dict(result.record["compression"]).table())
    for line in _axis_notes(result.record):
        click.echo(line)
    unused = (result.record.get("source") or {}).get("weights_unused")
    if unused:
        click.echo(
            f"weights: {len(unused)} checkpoint key(s) the model does not use, left out: "
            + ", ".join(unused[:5])
            + (" ..." if len(unused) > 5 else "")
        )
    for line in result.record.get("sequence", {}).get("notes", []):
        click.echo(f"stateful: {line}")


def _axis_notes(record: dict[str, Any]) -> list[str]:
    """What the export decided about non-batch axes nobody named (PyTorch modules), and why."""
    decisions = record.get("axis_decisions") or {}
    if decisions:
        lines = ["axes (--fixed-axis NAME:AXIS pins one, --dynamic-axis NAME:AXIS frees one):"]
        lines += [f"  {axis}: {why}" for axis, why in decisions.items()]
        return lines
    lines = []
    found = record.get("axes_found_dynamic") or {}
    if found:
        axes = ", ".join(f"{n}:{a}" for n, ax in found.items() for a in ax)
        lines.append(f"dynamic axes: {axes} (the module ran with other sizes there; verified)")
    fixed = record.get("axes_fixed") or {}
    if fixed:
        axes = ", ".join(f"{n}:{a}={size}" for n, ax in fixed.items() for a, size in ax.items())
        # Every ordinary model has some (a Linear layer's width): say what they are, not that
        # something failed.
        lines.append(
            f"fixed axes: {axes} (sizes the module requires there, like a layer's input width; "
            "--dynamic-axis NAME:AXIS frees one that should vary)"
        )
    return lines


@click.command("inspect")
@click.argument("model")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", *sources.names()]),
    default="auto",
    show_default=True,
    help="Source format: auto (detect by content) or one of the registered sources.",
)
@click.option(
    "--input", "input_specs", multiple=True, help="Input NAME:DTYPE:DIMS (TorchScript/PyTorch)."
)
@click.option(
    "--example-input", type=click.Path(dir_okay=False), default=None, help=".npz of example inputs."
)
@click.option("--weights", type=click.Path(dir_okay=False), default=None, help="PyTorch weights.")
@click.option(
    "--max-batch-size",
    type=click.IntRange(0, None),
    default=None,
    help="0: the model has no batch axis (--input dims are then the full shape), as in build.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def inspect_cmd(
    model: str,
    fmt: str,
    input_specs: tuple[str, ...],
    example_input: str | None,
    weights: str | None,
    max_batch_size: int | None,
    as_json: bool,
) -> None:
    """Show MODEL's inputs and outputs: names, dtypes, dims and whether it has a batch axis."""
    from packager.builder import inspect

    opts: dict[str, Any] = {"input_specs": list(input_specs)}
    if example_input:
        opts["example_inputs"] = example_input
    if weights:
        opts["weights"] = weights
    if max_batch_size is not None:
        opts["max_batch_size"] = max_batch_size
    result = inspect(model, format=fmt, **opts)
    data = result.to_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(
        f"{model}: {data['format']} ({data['platform']}), "
        f"batch axis: {'yes' if data['batch_axis'] else 'no'}"
    )
    rows = [
        (role, t["name"], t["dtype"], str(t["dims"]))
        for role in ("inputs", "outputs")
        for t in data[role]
    ]
    click.echo(
        format_table(
            ("tensor", "name", "dtype", "dims (-1 = dynamic)"), [(r[0][:-1], *r[1:]) for r in rows]
        )
    )


@click.command("validate")
@click.argument("repository", type=click.Path(file_okay=False))
@click.option("--no-checksums", is_flag=True, help="Skip checking SHA256SUMS of each version.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def validate_cmd(repository: str, no_checksums: bool, as_json: bool) -> None:
    """Check every model in REPOSITORY: schema, rules, files, checksums. Exit 1 on any problem."""
    from packager.validation import validate

    report = validate(Path(repository), checksums=not no_checksums)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        if not report.models:
            click.echo(f"{repository}: no models found (a model is a folder with config.pbtxt)")
        for m in report.models:
            mark = click.style("ok", fg="green") if m.ok else click.style("FAIL", fg="red")
            click.echo(
                f"{mark:>4} {m.name} ({m.runtime}, versions {', '.join(map(str, m.versions)) or '-'})"
            )
            for p in m.problems:
                click.echo(f"       - {p}")
            for n in m.notes:
                click.echo(f"       note: {n}")
    if not report.ok:
        raise SystemExit(1)
